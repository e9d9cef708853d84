"""``image-updater version``."""

from __future__ import annotations

import argparse
import platform

from image_updater import __version__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def run(args: argparse.Namespace) -> int:
    del args
    print(f"image-updater {__version__} (Python {platform.python_version()})")
    return 0
