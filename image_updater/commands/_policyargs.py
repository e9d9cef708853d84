"""The policy modifier flags shared by ``select`` and ``check`` (pure: imported on ``select``'s fast path)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_modifier_arguments", "modifiers_from_args"]

_BASE = ("exclude", "filter", "extract", "prerelease", "flavour", "min_age")
_REGISTRY_ONLY = ("platforms", "pin_digest")  # need image metadata, which only a registry has


def add_modifier_arguments(parser: argparse.ArgumentParser, *, registry: bool) -> None:
    """Add the modifier flags; ``registry`` adds those that need image metadata (``--platform``, ...)."""
    group = parser.add_argument_group("policy modifiers")
    group.add_argument(
        "--exclude", metavar="GLOB", action="append", help="drop tags matching GLOB (repeatable)"
    )
    group.add_argument("--filter", metavar="RE", help="only tags matching this regex (search)")
    group.add_argument("--extract", metavar="TPL", help="rank by this expansion of --filter's groups ($1)")
    group.add_argument(
        "--prerelease", action=argparse.BooleanOptionalAction, default=None,
        help="admit prereleases under semver (default: only when the range names one)",
    )
    group.add_argument(
        "--flavour", "--flavor", dest="flavour", metavar="SUFFIX",
        help="semver: the tag suffix candidates must carry: SUFFIX, 'none' or 'any' (default: the current's)",
    )
    group.add_argument("--min-age", metavar="DUR", help="only tags built at least DUR ago (e.g. 1h, 7d)")
    if registry:
        group.add_argument(
            "--platform", dest="platforms", metavar="OS/ARCH", action="append",
            help="only tags whose image covers this platform (repeatable)",
        )
        group.add_argument("--pin-digest", action="store_true", default=None, help="also report the digest")


def modifiers_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The modifiers given on the command line, as ``parse_policy`` takes them."""
    return {
        name: getattr(args, name)
        for name in (*_BASE, *_REGISTRY_ONLY)
        if getattr(args, name, None) is not None
    }
