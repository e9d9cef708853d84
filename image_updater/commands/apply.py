"""``image-updater apply [-c FILE] PATH [--format table|json|markdown]``: edit a local checkout in place.

Plans PATH exactly like ``plan`` and writes every update (only the characters of each changed scalar, one
verified atomic write per file). A file that cannot be written is reported and its updates dropped; the
other files are still written. Prints what was applied. Exit 0, or 1 when any error entry exists; 2 for
usage and config errors.
"""

from __future__ import annotations

import argparse
import sys

from image_updater.commands.plan import check_directory, log_errors, plan_path, progress_indicator

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="config file (registries, policy_dirs, cache_dir)")
    parser.add_argument("path", metavar="PATH", help="the checkout to edit")
    parser.add_argument("--format", choices=["table", "json", "markdown"], default="table",
                        help="how to print the applied updates (default: table)")
    # --commit / --push arrive with the git write-back (they hand the applied Result to the git workflow);
    # add them here, next to the edit step in run().


def run(args: argparse.Namespace) -> int:
    from image_updater.pipeline import apply_result
    from image_updater.report import render
    from image_updater.settings import load_settings

    settings = load_settings(args.config)
    root = check_directory(args.path)
    with progress_indicator() as progress:
        planned = plan_path(root, settings, progress)
        if progress:
            progress("writing")
        result = apply_result(root, planned)
    # -- git write-back (--commit / --push) goes here: commit `result` for `root`, then push. --
    log_errors(result, args.format)
    sys.stdout.write(render(result, args.format))
    sys.stdout.flush()
    return 1 if result.errors else 0
