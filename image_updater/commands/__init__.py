"""One module per CLI command: ``add_arguments(parser)`` and ``run(args) -> int``.

Import httpx, GitPython and apscheduler inside ``run`` only (see ``image_updater.cli``).

The parsers' help formatters (``HelpFormatter``, ``RawDescriptionHelpFormatter``) are argparse's, with the
terminal's width read the way ``shutil.get_terminal_size`` reads it (``COLUMNS``, then the terminal of
stdout, else 80) but without importing shutil: argparse builds a formatter for every ``add_argument``, and
shutil imports bz2 and lzma, ~3 ms of each command's start.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["HelpFormatter", "RawDescriptionHelpFormatter", "terminal_columns"]


def terminal_columns() -> int:
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class HelpFormatter(argparse.HelpFormatter):
    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ) -> None:
        if width is None:
            width = terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


class RawDescriptionHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass
