"""``image-updater run [-c FILE] [--once] [--dry-run]``: the daemon, or one pass over every source.

Without ``--once`` the daemon runs until SIGTERM or SIGINT and exits 0 after a graceful stop. With
``--once`` every source gets one pass; exit 1 when any error entry exists, else 0. Config errors exit 2.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", metavar="FILE", default=None,
        help="config file (YAML); every setting can also come from IMAGE_UPDATER_* environment variables",
    )
    parser.add_argument("--once", action="store_true", help="one pass over every source, then exit")
    parser.add_argument(
        "--format", choices=["table", "json", "markdown"], default="table",
        help="with --once: how to print each source's report (json: one object, pull requests included)",
    )
    parser.add_argument(
        "--dry-run", action="store_true",
        help="plan and log the updates but never commit or push",
    )
    parser.add_argument(
        "--grace-period", type=float, default=30.0, metavar="SECONDS",
        help="on SIGTERM/SIGINT, how long a running pass may take to finish before it is abandoned "
             "(default: 30)",
    )


def run(args: argparse.Namespace) -> int:
    from image_updater.logs import configure_logging
    from image_updater.settings import load_settings

    settings = load_settings(args.config)
    # The command line wins over the config file; cli.main already configured the flags' values.
    configure_logging(args.log_level or settings.log.level, args.log_format or settings.log.format)
    if args.once:
        from image_updater.writeback import run_once_cli

        return run_once_cli(settings, args.dry_run, args.format)
    if args.grace_period < 0:
        from image_updater.errors import ConfigError

        raise ConfigError("--grace-period must not be negative")
    from image_updater.daemon import serve

    return serve(settings, dry_run=args.dry_run, grace_period=args.grace_period)
