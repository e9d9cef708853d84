"""``image-updater plan [-c FILE] [PATH] [--format table|json|markdown|diff|html] [--detailed-exitcode]``.

Dry run: discover the targets under PATH (default ``.``), ask the registries, and print the updates a pass
would make (``html``: one self-contained page, as the daemon's status page shows it). Works on a directory
without any config; ``-c`` adds registries, credentials and policy_dirs.
File paths in the output are relative to PATH.

Exit codes: 0, or 1 when any error entry exists (after reporting everything else); with
``--detailed-exitcode``: 1 errors, else 2 updates pending, else 0. Usage and config errors: 2.
"""

from __future__ import annotations

import argparse
import sys

from image_updater.commands._planning import (
    check_directory,
    configured_settings,
    log_errors,
    plan_path,
    progress_indicator,
)

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="config file (registries, policy_dirs, cache_dir)")
    parser.add_argument("path", nargs="?", default=".", metavar="PATH",
                        help="directory to scan (default: the current directory)")
    parser.add_argument("--format", choices=["table", "json", "markdown", "diff", "html"], default="table",
                        help="output format (default: table)")
    parser.add_argument("--detailed-exitcode", action="store_true",
                        help="exit 2 when updates are pending (1 still means errors)")


def run(args: argparse.Namespace) -> int:
    from image_updater.checkout import edited_texts
    from image_updater.report import render
    settings = configured_settings(args.config)
    root = check_directory(args.path)
    with progress_indicator() as progress:
        planned = plan_path(root, settings, progress, explain=args.format == "html")
    result = planned.result
    log_errors(result, args.format)
    texts = edited_texts(planned) if args.format == "diff" else None
    sys.stdout.write(render(result, args.format, texts=texts))
    sys.stdout.flush()
    if result.errors:
        return 1
    if args.detailed_exitcode and result.updates:
        return 2
    return 0
