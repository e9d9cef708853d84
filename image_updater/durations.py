"""Durations: the one grammar for every duration image-updater reads (``interval``, ``min_age``, ...).

Pure: text (or a number of seconds) in, ``timedelta`` out, no I/O::

    duration = part { [whitespace] part }     each unit at most once, in any order: 1h30m, 30m1h, 1h 30m
             | number                         plain seconds: 30, 1.5 (refused where a unit is required)
    part     = number unit                    no space inside a part: "1 h" is no duration
    number   = digits [ "." digits ]          ASCII digits only
    unit     = "w" | "d" | "h" | "m" | "s" | "ms"

Units are case-insensitive (``10M`` is ten minutes, ``500MS`` half a second); surrounding whitespace is
ignored. A number given as a number (YAML ``min_age: 30``) counts as seconds like a bare number in text.
Negative durations, infinity, NaN and durations longer than a ``timedelta`` holds are refused. Every
refusal is an ``InvalidDuration`` whose message shows the input with ``!r``.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

from image_updater.errors import InvalidDuration

__all__ = ["InvalidDuration", "format_duration", "parse_duration"]

_PART = re.compile(r"\s*(\d+(?:\.\d+)?)(ms|[wdhms])", re.ASCII)
_NUMBER = re.compile(r"\d+(?:\.\d+)?", re.ASCII)
_UNIT = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds", "ms": "milliseconds"}


def parse_duration(value: object, *, unit_required: bool = False) -> timedelta:
    """``90s``, ``5m``, ``1h30m``, ``1h 30m``, ``1.5h``, ``500ms``, ``2d``, ``1w`` or plain seconds ``30``.

    ``value`` may also be an ``int`` or ``float`` (seconds). With ``unit_required`` a bare number, in text
    or as a number, is refused with a hint (``write 30s or 30m``): where minutes are as likely as seconds.
    Raises ``InvalidDuration`` for anything else.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidDuration("expected a duration such as 90s, 5m or 1h30m")
    if isinstance(value, str):
        text = value.strip().lower()
        if not _NUMBER.fullmatch(text):
            return _from_parts(value, text, unit_required=unit_required)
        number: float = float(text)
        if not math.isfinite(number):  # digits enough to overflow a float
            raise InvalidDuration(f"{value!r} is too long a duration")
    else:
        text = str(value)
        number = value
    if unit_required:
        raise InvalidDuration(f"a duration needs a unit: write {text}s or {text}m")
    if not math.isfinite(number):
        raise InvalidDuration(f"{value!r} is not a usable number of seconds")
    if number < 0:
        raise InvalidDuration(f"{value!r} is negative; a duration is at least 0s")
    return _timedelta(value, seconds=number)


def _from_parts(value: str, text: str, *, unit_required: bool) -> timedelta:
    amounts: dict[str, float] = {}
    pos = 0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            break
        number, unit = match.groups()
        if _UNIT[unit] in amounts:
            raise InvalidDuration(f"{value!r} is not a duration: unit {unit!r} given twice")
        amounts[_UNIT[unit]] = float(number)
        pos = match.end()
    if not amounts or pos != len(text):
        also = "" if unit_required else ", or plain seconds"
        raise InvalidDuration(f"{value!r} is not a duration; write e.g. 90s, 5m, 1h30m or 7d{also}")
    return _timedelta(value, **amounts)


def _timedelta(value: object, **amounts: float) -> timedelta:
    try:
        return timedelta(**amounts)
    except (OverflowError, ValueError):  # "99999999999d", or digits enough to make a float infinite
        raise InvalidDuration(f"{value!r} is too long a duration") from None


def format_duration(delta: timedelta) -> str:
    """The short form ``parse_duration`` reads: ``1d``, ``2h``, ``1h30m``, ``45s`` (the largest two units,
    whole seconds; ``0s`` for zero or less)."""
    total = int(delta.total_seconds())
    if total <= 0:
        return "0s"
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts[:2])
