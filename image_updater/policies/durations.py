"""Durations as policies write them: ``min_age: 1h30m``, ``7d``, ``1.5h`` or plain seconds.

This is today's policy grammar, moved here unchanged from the old ``policies.py``. It will be replaced by the
one grammar that settings and policies share (``image_updater/durations.py``); until then ``parse_duration``
and ``format_duration`` are re-exported by ``image_updater.policies`` as before.
"""

from __future__ import annotations

import re
from datetime import timedelta

from image_updater.errors import ConfigError

__all__ = ["format_duration", "parse_duration"]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])", re.ASCII)
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[wdhms])+\Z", re.ASCII)
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``5m``, ``1h30m``, ``7d``, ``1w``, ``1.5h`` or plain seconds ``30``; else ``ConfigError``."""
    if not isinstance(text, str):
        raise ConfigError(f"invalid duration {text!r}: expected e.g. '90s', '1h30m', '7d'")
    cleaned = text.strip().lower()
    if cleaned.isascii() and cleaned.isdigit():
        return _seconds(int(cleaned), text)
    if not _DURATION.match(cleaned):
        raise ConfigError(f"invalid duration {text!r}: expected e.g. '90s', '1h30m', '7d' or plain seconds")
    seen: set[str] = set()
    seconds = 0.0
    for number, unit in _DURATION_PART.findall(cleaned):
        if unit in seen:
            raise ConfigError(f"invalid duration {text!r}: unit {unit!r} given twice")
        seen.add(unit)
        seconds += float(number) * _UNIT_SECONDS[unit]
    return _seconds(seconds, text)


def _seconds(seconds: float, text: str) -> timedelta:
    try:
        return timedelta(seconds=seconds)
    except OverflowError:  # "99999999999d": a typo must be a config error, not a crash
        raise ConfigError(f"invalid duration {text!r}: too long") from None


def format_duration(delta: timedelta) -> str:
    """The short form ``parse_duration`` reads: ``1d``, ``2h``, ``1h30m``, ``45s`` (largest two units)."""
    total = int(delta.total_seconds())
    if total <= 0:
        return "0s"
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts[:2])
