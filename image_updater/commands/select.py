"""``image-updater select POLICY [--current TAG]``: choose a tag from tags given on stdin.

stdin holds one tag per line, optionally followed by white space and an RFC 3339 build time
(``1.2.3 2024-05-01T12:00:00Z``). The chosen tag goes to stdout (for ``digest``, the tag itself). Exit codes:
0 chosen, 1 no tag qualifies (message on stderr, nothing on stdout), 2 invalid policy, flags or input.

Scripts call this in loops, so it imports only the pure core: no pydantic, httpx, GitPython or ruamel.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone

from image_updater.commands._policyargs import add_modifier_arguments, modifiers_from_args
from image_updater.errors import ConfigError
from image_updater.policies import Policy, Status, TagInfo, parse_policy

__all__ = ["add_arguments", "parse_rfc3339", "read_tags", "run"]

log = logging.getLogger("image_updater")

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z",
    re.ASCII,
)


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 date-time (the offset is required); raise ``ValueError`` otherwise.

    ``datetime.fromisoformat`` is not used: it also takes times without an offset and ISO basic forms.
    """
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 date-time: {text!r}")
    if m.group(6) != "60":
        # the pattern has vetted the shape; the C parser is several times faster than building it by hand
        try:
            return datetime.fromisoformat(text.upper())
        except ValueError as exc:  # e.g. February 30th
            raise ValueError(f"not an RFC 3339 date-time: {text!r} ({exc})") from exc
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = m.groups()
    tz = UTC
    if not zulu:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        if offset >= timedelta(hours=24):
            raise ValueError(f"not an RFC 3339 date-time: {text!r} (offset out of range)")
        tz = timezone(-offset if sign == "-" else offset)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    # RFC 3339 allows a leap second (:60); Python cannot hold one, so it becomes the last microsecond
    leap = second == "60"
    try:
        parsed = datetime(
            int(year), int(month), int(day), int(hour), int(minute), 59 if leap else int(second),
            999999 if leap else micro, tzinfo=tz,
        )
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 date-time: {text!r} ({exc})") from exc
    return parsed


def read_tags(lines: Iterable[str]) -> list[TagInfo]:
    """``TagInfo`` per non-blank line; ``ConfigError`` naming the line for a malformed build time."""
    infos: list[TagInfo] = []
    for number, line in enumerate(lines, start=1):
        fields = line.split(None, 1)
        if not fields:
            continue
        created = None
        if len(fields) == 2:
            text = fields[1].strip()
            try:
                created = parse_rfc3339(text)
            except ValueError as exc:
                raise ConfigError(
                    f"stdin line {number}: malformed build time {text!r} after tag {fields[0]!r} "
                    "(expected RFC 3339, e.g. 2024-05-01T12:00:00Z)"
                ) from exc
        infos.append(TagInfo(tag=fields[0], created=created))
    return infos


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s POLICY [--current TAG] [modifiers] < tags"
    parser.epilog = (
        "stdin: one tag per line, optionally followed by an RFC 3339 build time. "
        "Prints the chosen tag; exit 1 when no tag qualifies, 2 for an invalid policy or input."
    )
    parser.add_argument("policy", metavar="POLICY", help="e.g. 'semver:~1.2', 'glob:main-*', 'numerical:asc'")
    parser.add_argument("--current", metavar="TAG", help="the tag in use now (its flavour and spelling)")
    add_modifier_arguments(parser, registry=False)



def _summary(policy: Policy, infos: list[TagInfo], current: str | None) -> str:
    counts = Counter(v.status for v in policy.explain(infos, current=current))
    order = [s for s in Status if s not in (Status.CHOSEN, Status.LOWER)]
    detail = ", ".join(f"{counts[s]} {s.value}" for s in order if counts[s])
    message = f"no tag qualifies for {policy} among {len(infos)} read from stdin"
    return f"{message} ({detail})" if detail else message


def run(args: argparse.Namespace) -> int:
    policy = parse_policy(args.policy, modifiers_from_args(args))
    infos = read_tags(sys.stdin)
    chosen = policy.choose(infos, current=args.current)
    if chosen is None:
        log.error("%s", _summary(policy, infos, args.current))
        return 1
    sys.stdout.write(chosen.tag + "\n")
    return 0
