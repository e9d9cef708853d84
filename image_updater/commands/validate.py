"""``image-updater validate [-c FILE] [PATH] [--format text|json]``: lint without asking any registry.

Reports every invalid policy, annotation, setter marker and policy file under PATH (default ``.``), and
the files that could hold targets but do not parse, each with file:line. With ``-c`` the config file is
validated too (its policy_dirs are then linted as well). Exit 0 when all is well, 1 when anything is
reported, 2 when the config itself is invalid (everything else is still reported).
"""

from __future__ import annotations

import argparse
import json
import sys

from image_updater.commands.plan import check_directory
from image_updater.errors import ConfigError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="config file to validate (and its policy_dirs)")
    parser.add_argument("path", nargs="?", default=".", metavar="PATH",
                        help="directory to lint (default: the current directory)")
    parser.add_argument("--format", choices=["text", "json"], default="text", help="output format")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from image_updater.pipeline import discover_directory
    from image_updater.settings import load_settings

    config_error: str | None = None
    policy_dirs: list[Path] = []
    if args.config:
        try:
            policy_dirs = list(load_settings(args.config).policy_dirs)
        except ConfigError as exc:
            config_error = str(exc)
    root = check_directory(args.path)
    discovery, _texts = discover_directory(root, policy_dirs=policy_dirs)
    errors = discovery.errors
    if args.format == "json":
        sys.stdout.write(json.dumps({
            "config": {"file": args.config, "error": config_error} if args.config else None,
            "errors": [e.to_dict() for e in errors],
            "files": discovery.files_scanned, "policies": discovery.policies,
            "targets": len(discovery.targets), "skipped": len(discovery.skipped),
        }, indent=2) + "\n")
    else:
        lines: list[str] = []
        if config_error is not None:
            lines.append(f"{args.config}: {config_error}")
        for e in errors:
            where = f"{e.file}:{e.line}" if e.file and e.line else (e.file or "-")
            lines.append(f"{where}: {e.image + ': ' if e.image else ''}{e.message}")
        problems = len(errors) + (config_error is not None)
        lines.append(
            f"{discovery.files_scanned} files, {discovery.policies} policies, "
            f"{len(discovery.targets)} targets, {len(discovery.skipped)} skipped: "
            + ("ok" if not problems else f"{problems} problem{'s' if problems != 1 else ''}")
        )
        sys.stdout.write("\n".join(lines) + "\n")
    if config_error is not None:
        return 2
    return 1 if errors else 0
