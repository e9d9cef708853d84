"""Lenient versions of image tags and the semver range grammar (node-semver / Masterminds meaning).

A tag is a version when it reads ``[v]MAJOR[.MINOR[.PATCH]][-SUFFIX][+BUILD]``: one to three numeric parts
(missing parts are 0, leading zeros are allowed), then an optional suffix and build metadata. The suffix is
a *prerelease* when it starts with a prerelease word (``alpha``, ``beta``, ``rc``, ``pre``, ``preview``,
``dev``, ``snapshot``, ``canary``, ``nightly``, ``next``, ``m<digits>``, or a digit) and a *flavour* otherwise
(``alpine``, ``slim-bookworm``, ``perl``, ``alpine3.19``, ``jdk17``). Order and ranges see only the version:
the flavour and the build metadata never take part.

Order keys are plain tuples so that ranking 100,000 tags stays a matter of tuple comparisons:
``(major, minor, patch, pre)`` where ``pre`` is ``(1,)`` for a release and ``(0, identifiers)`` for a
prerelease, so that every prerelease sorts below its release. Prerelease identifiers compare per SemVer
(numeric ones as numbers and below alphanumeric ones, a longer list above its prefix); inside an alphanumeric
identifier, digit runs compare as numbers too, so ``rc10`` follows ``rc9``.

Ranges: ``=`` ``!=`` ``>`` ``>=`` ``<`` ``<=`` ``~`` (``~>``) ``^``, wildcards ``x`` ``X`` ``*``, partial
versions (``1.2`` means ``1.2.x``), hyphen ranges ``1.2 - 1.4``, AND by space or comma, OR by ``||``. An
exclusive upper bound without a prerelease of its own (``<3.0.0``, ``<3``, ``^2``, ``2.x``) stops below the
prereleases of that version: with prereleases admitted, ``>=2.0.0-0 <3.0.0`` takes ``2.1.0-rc.1``, never
``3.0.0-rc.1``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from image_updater.errors import InvalidRange, InvalidVersion

__all__ = [
    "PRERELEASE_START_RE",
    "RELEASE",
    "VERSION_RE",
    "InvalidRange",
    "InvalidVersion",
    "Range",
    "Version",
    "natural_key",
    "parse_range",
    "parse_version",
    "prerelease_key",
    "scan_version",
]

# A key's last element: a release sorts above every prerelease of the same numbers.
RELEASE: tuple[int] = (1,)
# The lowest prerelease of a version ("-0"): ranges use it for bounds that must exclude every prerelease.
_MIN_PRE: tuple[int, tuple[tuple[int, int], ...]] = (0, ((0, 0),))

VersionKey = tuple[Any, ...]

_IDENT = r"[0-9A-Za-z-]"
_IDENTS = rf"{_IDENT}+(?:\.{_IDENT}+)*"
# No possessive quantifiers or atomic groups: Python 3.11's first releases (Debian 12 ships 3.11.2) match
# them wrongly ("1..2" would read as a version). Dots separate the parts, so plain quantifiers cannot
# backtrack much either.
VERSION_RE = _VERSION = re.compile(
    rf"(v)?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-({_IDENTS}))?(?:\+({_IDENTS}))?\Z",
    re.ASCII,  # "\d" would also take other scripts' digits
)
# A prerelease word ends where the letters end: "rc1", "rc.1" and "rc-1" are prereleases, "release" is not.
PRERELEASE_START_RE = _PRERELEASE_START = re.compile(
    r"(?:alpha|beta|rc|pre|preview|dev|snapshot|canary|nightly|next|m\d+)(?![a-z])|\d",
    re.IGNORECASE | re.ASCII,
)
_DIGIT_RUN = re.compile(r"(\d+)", re.ASCII)


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key comparing digit runs as numbers: ``dev-9`` < ``dev-10``; strings alternate with ints."""
    parts: list[Any] = _DIGIT_RUN.split(text)
    parts[1::2] = [int(p) for p in parts[1::2]]
    return tuple(parts)


def prerelease_key(pre: str) -> tuple[int, tuple[tuple[Any, ...], ...]]:
    """The last element of a prerelease's key: ``(0, identifiers)``, below ``RELEASE``."""
    idents: list[tuple[Any, ...]] = []
    for ident in pre.split("."):
        if ident.isdigit():
            idents.append((0, int(ident)))
        else:
            idents.append((1, natural_key(ident)))
    return (0, tuple(idents))


def scan_version(text: str) -> tuple[VersionKey, str | None, bool, int] | None:
    """The hot-path parser: ``(key, flavour, v_prefix, parts)`` or ``None`` when ``text`` is no version.

    A prerelease shows in the key (``key[3] != RELEASE``); a flavour does not.
    """
    m = _VERSION.match(text)
    if m is None:
        return None
    v, major, minor, patch, suffix, _build = m.groups()
    parts = 1 if minor is None else 2 if patch is None else 3
    if suffix is None:
        return (int(major), int(minor or 0), int(patch or 0), RELEASE), None, v is not None, parts
    if _PRERELEASE_START.match(suffix):
        key = (int(major), int(minor or 0), int(patch or 0), prerelease_key(suffix))
        return key, None, v is not None, parts
    return (int(major), int(minor or 0), int(patch or 0), RELEASE), suffix, v is not None, parts


@dataclass(frozen=True, slots=True)
class Version:
    """A parsed lenient version; ``key`` orders versions (flavour and build metadata play no part)."""

    text: str
    major: int
    minor: int
    patch: int
    prerelease: str | None
    flavour: str | None
    build: str | None
    v_prefix: bool
    parts: int

    @property
    def key(self) -> VersionKey:
        pre = RELEASE if self.prerelease is None else prerelease_key(self.prerelease)
        return (self.major, self.minor, self.patch, pre)

    @property
    def is_prerelease(self) -> bool:
        return self.prerelease is not None

    def __str__(self) -> str:
        return self.text


def parse_version(text: str) -> Version:
    """Parse a lenient version; raise ``InvalidVersion`` naming the input when it is none."""
    m = _VERSION.match(text)
    if m is None:
        raise InvalidVersion(f"not a version: {text!r}")
    v, major, minor, patch, suffix, build = m.groups()
    prerelease = flavour = None
    if suffix is not None:
        if _PRERELEASE_START.match(suffix):
            prerelease = suffix
        else:
            flavour = suffix
    return Version(
        text=text,
        major=int(major),
        minor=int(minor or 0),
        patch=int(patch or 0),
        prerelease=prerelease,
        flavour=flavour,
        build=build,
        v_prefix=v is not None,
        parts=1 if minor is None else 2 if patch is None else 3,
    )


# ---------------------------------------------------------------------------------------------------- ranges

_OPERATOR_ONLY = re.compile(r"(?:<=|>=|!=|~>|~|\^|<|>|=)\Z")
_X = r"\d+|[xX*]"
_PARTIAL = re.compile(
    rf"(?P<op><=|>=|!=|~>|~|\^|<|>|=)?v?(?P<major>{_X})(?:\.(?P<minor>{_X})(?:\.(?P<patch>{_X}))?)?"
    rf"(?:-(?P<pre>{_IDENTS}))?(?:\+{_IDENTS})?\Z",
    re.ASCII,
)

_LOWEST: VersionKey = (-1,)
_HIGHEST: VersionKey = (float("inf"),)


@dataclass(frozen=True, slots=True)
class _Partial:
    """A version as written in a range; ``None`` parts are wildcards (``1.2`` = ``1.2.x``)."""

    major: int | None
    minor: int | None
    patch: int | None
    pre: str | None

    @property
    def full(self) -> bool:
        return self.patch is not None

    def exact(self) -> VersionKey:
        assert self.major is not None and self.minor is not None and self.patch is not None
        pre = RELEASE if self.pre is None else prerelease_key(self.pre)
        return (self.major, self.minor, self.patch, pre)

    def low(self) -> VersionKey:
        """Lowest key the partial covers; prereleases of ``x.y.0`` count as part of ``x.y``."""
        if self.full:
            return self.exact()
        if self.major is None:
            return _LOWEST
        return (self.major, self.minor or 0, 0, _MIN_PRE)

    def after(self) -> VersionKey:
        """The first key above everything the partial covers (exclusive), below the next one's prereleases."""
        if self.major is None:
            return _HIGHEST
        if self.minor is None:
            return (self.major + 1, 0, 0, _MIN_PRE)
        if self.patch is None:
            return (self.major, self.minor + 1, 0, _MIN_PRE)
        return (self.major, self.minor, self.patch + 1, _MIN_PRE)


@dataclass(frozen=True, slots=True)
class _Interval:
    """``low <(=) key <(=) high``; ``negate`` turns it into "outside" (for ``!=``)."""

    low: VersionKey = _LOWEST
    low_inclusive: bool = True
    high: VersionKey = _HIGHEST
    high_inclusive: bool = True
    negate: bool = False

    def contains(self, key: VersionKey) -> bool:
        inside = (key >= self.low if self.low_inclusive else key > self.low) and (
            key <= self.high if self.high_inclusive else key < self.high
        )
        return inside != self.negate


_NOTHING = _Interval(high=_LOWEST, high_inclusive=False)


def _half_open(low: VersionKey, high: VersionKey) -> _Interval:
    return _Interval(low=low, high=high, high_inclusive=False)


def _comparator(op: str, p: _Partial) -> _Interval:
    """One comparator as an interval of keys, with node-semver's expansion of partial versions."""
    wildcard = p.major is None
    if op == "=":
        return _Interval(low=p.exact(), high=p.exact()) if p.full else _half_open(p.low(), p.after())
    if op == "!=":
        if wildcard:
            return _NOTHING
        if p.full:
            return _Interval(low=p.exact(), high=p.exact(), negate=True)
        return _Interval(low=p.low(), high=p.after(), high_inclusive=False, negate=True)
    if op == ">":
        if wildcard:
            return _NOTHING
        return _Interval(low=p.exact(), low_inclusive=False) if p.full else _Interval(low=p.after())
    if op == ">=":
        return _Interval(low=p.low())
    if op == "<":
        if wildcard:
            return _NOTHING
        if p.full and p.pre is None:
            # "<3.0.0" is "below the 3.0.0 line", as "<3", "^2" and "2.x" are: 3.0.0's own prereleases stay
            # out when prereleases are admitted; "<3.0.0-rc.2" names one and admits 3.0.0-rc.1
            return _Interval(high=(p.major, p.minor, p.patch, _MIN_PRE), high_inclusive=False)
        return _Interval(high=p.low(), high_inclusive=False)
    if op == "<=":
        if p.full:
            return _Interval(high=p.exact())
        return _Interval(high=p.after(), high_inclusive=False)
    if wildcard:
        return _Interval()
    assert p.major is not None
    if op in ("~", "~>"):
        if p.minor is None:
            return _half_open(p.low(), (p.major + 1, 0, 0, _MIN_PRE))
        return _half_open(p.low(), (p.major, p.minor + 1, 0, _MIN_PRE))
    # "^": the leftmost non-zero part of major.minor.patch may not change; x parts count as zero
    if p.major > 0 or p.minor is None:
        return _half_open(p.low(), (p.major + 1, 0, 0, _MIN_PRE))
    if p.minor > 0 or p.patch is None:
        return _half_open(p.low(), (0, p.minor + 1, 0, _MIN_PRE))
    return _half_open(p.low(), (0, 0, p.patch + 1, _MIN_PRE))


def _intersect(intervals: list[_Interval]) -> tuple[_Interval, tuple[_Interval, ...]]:
    """Fold the AND of comparators into one interval plus the ``!=`` holes (each true outside its hole)."""
    low, low_inc, high, high_inc = _LOWEST, True, _HIGHEST, True
    holes: list[_Interval] = []
    for iv in intervals:
        if iv.negate:
            holes.append(iv)
            continue
        if iv.low > low or (iv.low == low and not iv.low_inclusive):
            low, low_inc = iv.low, iv.low_inclusive
        if iv.high < high or (iv.high == high and not iv.high_inclusive):
            high, high_inc = iv.high, iv.high_inclusive
    return _Interval(low, low_inc, high, high_inc), tuple(holes)


@dataclass(frozen=True, slots=True)
class Range:
    """A parsed range: OR of ANDs, each AND folded into one interval with ``!=`` holes.

    ``text`` is the canonical spelling (single spaces, ``||`` between alternatives); ``has_prerelease`` tells
    whether any comparator names a prerelease, which lets prereleases take part for the whole range.
    """

    text: str
    alternatives: tuple[tuple[_Interval, tuple[_Interval, ...]], ...]
    has_prerelease: bool

    def contains(self, key: VersionKey) -> bool:
        """True when a version key satisfies the range (prerelease admission is the caller's business)."""
        for span, holes in self.alternatives:
            if span.contains(key) and all(hole.contains(key) for hole in holes):
                return True
        return False

    def matcher(self) -> Callable[[VersionKey], bool]:
        """``contains`` as one specialised closure: the common one-interval range costs two comparisons."""
        if len(self.alternatives) != 1 or self.alternatives[0][1]:
            return self.contains
        span = self.alternatives[0][0]
        low, high = span.low, span.high
        if span.low_inclusive and not span.high_inclusive:
            return lambda key: low <= key < high
        if span.low_inclusive and span.high_inclusive:
            return lambda key: low <= key <= high
        if span.high_inclusive:
            return lambda key: low < key <= high
        return lambda key: low < key < high

    def __str__(self) -> str:
        return self.text


def _parse_partial(token: str, text: str) -> tuple[str, _Partial]:
    m = _PARTIAL.match(token)
    if m is None:
        raise InvalidRange(text, f"cannot parse {token!r}")
    parts: list[int | None] = []
    wild = False
    for name in ("major", "minor", "patch"):
        value = m.group(name)
        wild = wild or value is None or value in ("x", "X", "*")
        parts.append(None if wild else int(value))
    pre = m.group("pre")
    if pre is not None:
        if any(m.group(n) in ("x", "X", "*") for n in ("major", "minor", "patch")):
            raise InvalidRange(text, f"a wildcard cannot carry a prerelease: {token!r}")
        # a prerelease pins the version, so missing parts are zeros ("1.2-rc.1" is 1.2.0-rc.1)
        parts = [parts[0], parts[1] if parts[1] is not None else 0, parts[2] if parts[2] is not None else 0]
    return m.group("op") or "=", _Partial(parts[0], parts[1], parts[2], pre)


def _join_operators(tokens: list[str], text: str) -> list[str]:
    """``>= 1.2`` is one comparator: glue a bare operator to the version after it."""
    joined: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if _OPERATOR_ONLY.match(token):
            if i + 1 >= len(tokens) or tokens[i + 1][0] in "<>=!~^" or tokens[i + 1] == "-":
                raise InvalidRange(text, f"dangling operator {token!r}")
            joined.append(token + tokens[i + 1])
            i += 2
        else:
            joined.append(token)
            i += 1
    return joined


def _parse_alternative(alt: str, text: str) -> tuple[list[_Interval], list[str], bool]:
    tokens = _join_operators(alt.replace(",", " ").split(), text)
    if not tokens:
        raise InvalidRange(text, "empty alternative next to '||'")
    intervals: list[_Interval] = []
    canonical: list[str] = []
    has_pre = False
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "-":
            raise InvalidRange(text, "hyphen range without a lower version")
        if i + 2 < len(tokens) and tokens[i + 1] == "-":
            upper_token = tokens[i + 2]
            _, low = _parse_partial(token, text)
            _, high = _parse_partial(upper_token, text)
            if token[0] in "<>=!~^" or upper_token[0] in "<>=!~^":
                raise InvalidRange(text, f"a hyphen range takes plain versions: {token} - {upper_token}")
            intervals.append(_Interval(low=low.low()))
            if high.full:
                intervals.append(_Interval(high=high.exact()))
            else:
                intervals.append(_Interval(high=high.after(), high_inclusive=False))
            has_pre = has_pre or low.pre is not None or high.pre is not None
            canonical.append(f"{token} - {upper_token}")
            i += 3
            continue
        if i + 1 < len(tokens) and tokens[i + 1] == "-":
            raise InvalidRange(text, "hyphen range without an upper version")
        op, partial = _parse_partial(token, text)
        intervals.append(_comparator(op, partial))
        has_pre = has_pre or partial.pre is not None
        canonical.append(token)
        i += 1
    return intervals, canonical, has_pre


def parse_range(text: str) -> Range:
    """Parse a range; raise ``InvalidRange`` (an ``InvalidPolicy``) naming the range and its bad part."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidRange(text, "empty range")
    alternatives = []
    canonical_alts = []
    has_pre = False
    for alt in text.split("||"):
        intervals, canonical, alt_pre = _parse_alternative(alt, text)
        alternatives.append(_intersect(intervals))
        canonical_alts.append(" ".join(canonical))
        has_pre = has_pre or alt_pre
    return Range(text=" || ".join(canonical_alts), alternatives=tuple(alternatives), has_prerelease=has_pre)
