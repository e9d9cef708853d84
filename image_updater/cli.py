"""The command line: parse flags, configure logging, hand over to one command module.

Each command lives in ``image_updater.commands.<name>`` with ``add_arguments(parser)`` and
``run(args) -> int``.
Command modules import heavy libraries (httpx, GitPython, apscheduler) inside ``run`` only, so that
``--help``, ``version`` and ``select`` stay fast for scripts that call the CLI in a loop.

Exit codes: 0 success, 1 the command's own failure (see each command), 2 usage or configuration errors.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from image_updater import __version__
from image_updater.commands import HelpFormatter
from image_updater.commands._oneshot import one_shot, settle
from image_updater.errors import ConfigError, ImageUpdaterError

__all__ = ["COMMANDS", "build_parser", "main"]

# name -> one-line help; the module is image_updater.commands.<name with - replaced by _>
COMMANDS: dict[str, str] = {
    "run": "run the daemon, or one pass over every source with --once",
    "plan": "show the updates a pass would make (dry run)",
    "apply": "edit a local checkout; optionally commit and push",
    "check": "query a registry and show which tag an image's policy picks",
    "select": "choose a tag from tags given on stdin",
    "validate": "lint the config, policy files, annotations and markers",
    "demo": "run one end-to-end pass on an embedded example (local registry and git repository)",
    "version": "print the version",
}

log = logging.getLogger("image_updater")

# The cyclic collector's first threshold for the one-shot commands (every command but the daemon's `run`).
# Start-up allocates tens of thousands of container objects that live until exit (modules, classes,
# functions, pydantic's validators). At CPython's default of 700 the collector runs ~130 times in a `plan` of
# 20 images, ~45 ms of its ~0.37 s CPU, and frees ~1,500 objects; at 50,000 it runs a few times, and the
# garbage it leaves for later costs ~0.5 MB of peak RSS. The daemon keeps the interpreter's defaults.
ONE_SHOT_GC_THRESHOLD = 50_000


def _command_module(name: str) -> ModuleType:
    return importlib.import_module(f"image_updater.commands.{name.replace('-', '_')}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the parser; only the named command's module is imported (none for the top-level help)."""
    common = argparse.ArgumentParser(add_help=False, formatter_class=HelpFormatter)
    common.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default=None,
        help="log verbosity (default: info; `run` defaults to the config file's log.level)",
    )
    common.add_argument(
        "--log-format", choices=["text", "json"], default=None,
        help="log line format on stderr (default: text; `run` defaults to the config file's log.format)",
    )
    parser = argparse.ArgumentParser(
        prog="image-updater", formatter_class=HelpFormatter,
        description="Image automation for GitOps: registries -> tag policies -> byte-exact YAML edits -> git",
    )
    parser.add_argument("--version", action="version", version=f"image-updater {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, summary in COMMANDS.items():
        cmd = sub.add_parser(
            name, help=summary, description=summary, parents=[common], formatter_class=HelpFormatter
        )
        if only == name:
            _command_module(name).add_arguments(cmd)
    return parser


def _first_command(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if arg in COMMANDS:
            return arg
        if not arg.startswith("-"):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command of ``argv`` (default ``sys.argv[1:]``) and return its exit code. A one-shot command
    runs inside ``commands._oneshot.one_shot``: called as the program (no ``argv``) what it froze stays
    frozen, since the process ends next; a caller in the same process passing ``argv`` gets it back."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    first = _first_command(args_list)
    thresholds = gc.get_threshold()
    if first == "run":
        return _main(args_list, first)
    gc.set_threshold(ONE_SHOT_GC_THRESHOLD, *thresholds[1:])
    try:
        with one_shot(program=argv is None):
            return _main(args_list, first)
    finally:
        gc.set_threshold(*thresholds)  # for callers in the same process (tests, scripts)


def _main(args_list: list[str], first: str | None) -> int:
    parser = build_parser(only=first)
    args = parser.parse_args(args_list)
    from image_updater.logs import configure_logging

    configure_logging(args.log_level or "info", args.log_format or "text")
    module = _command_module(args.command)
    settle()  # a one-shot command's imports so far live until exit (commands._oneshot)
    try:
        return int(module.run(args))
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    except ImageUpdaterError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
