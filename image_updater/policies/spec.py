"""The policy spec: the ``Policy`` value, its one string form (``semver:~1.2``, ``glob:develop-*``, ...)
and its modifiers, and ``parse_policy``, which reads both as annotations and policy files carry them.

A ``Policy`` is validated when it is built (``compiled._compile``); ranking lives in ``ranking``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from image_updater.durations import parse_duration
from image_updater.errors import ConfigError, InvalidPolicy
from image_updater.references import is_valid_tag
from image_updater.versions import InvalidRange, parse_range

from . import ranking
from .compiled import _compile
from .patterns import _compile_glob
from .platforms import normalise_platform
from .ranking import _TIME_ORDERED, TagInfo, Verdict

__all__ = ["DEFAULT_EXCLUDE", "MODIFIERS", "Policy", "PolicyKind", "parse_policy"]

PolicyKind = Literal["semver", "glob", "regex", "alphabetical", "numerical", "newest", "digest"]

# cosign signatures, attestations and SBOMs are tags too; they are never images to deploy
DEFAULT_EXCLUDE: tuple[str, ...] = ("sha256-*.sig", "sha256-*.att", "sha256-*.sbom")

_KINDS: dict[str, PolicyKind] = {
    "semver": "semver",
    "glob": "glob",
    "regex": "regex",
    "regexp": "regex",  # Flux v1 spelling
    "alphabetical": "alphabetical",
    "numerical": "numerical",
    "newest": "newest",
    "digest": "digest",
}

# modifier name -> accepted spellings (annotations use "min-age", policy files "min_age")
MODIFIERS: tuple[str, ...] = (
    "exclude", "filter", "extract", "prerelease", "flavour", "min_age", "platforms", "pin_digest",
)
_MODIFIER_ALIASES = {"flavor": "flavour", "platform": "platforms"}


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed, validated, hashable policy. ``str(policy)`` gives back the canonical string form.

    Build one with ``parse_policy``; direct construction is validated too (``InvalidPolicy``), but only
    ``parse_policy`` canonicalises spellings (``regexp:`` -> ``regex:``, range spacing, ``exclude`` defaults).
    """

    kind: PolicyKind
    argument: str = ""  # the range, pattern, "asc"/"desc", or the digest policy's tag ("" = current tag)
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    filter: str | None = None
    extract: str | None = None
    prerelease: bool | None = None  # None: only when the range mentions one
    flavour: str | None = None  # None: same as the current tag's; "none", "any" or a literal suffix
    min_age: timedelta | None = None
    platforms: tuple[str, ...] = ()
    pin_digest: bool = False
    # Flux ImageRepository exclusionList: tags any of these regexes finds are excluded. Set by discovery
    # from Flux objects only, never a modifier of the string form.
    exclude_regex: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in _KINDS.values():
            known = ", ".join(sorted(set(_KINDS.values())))
            raise InvalidPolicy(f"unknown policy kind {self.kind!r} (expected one of {known})")
        _compile(self)  # fail at construction, not at the first choose()

    def __str__(self) -> str:
        return f"{self.kind}:{self.argument}" if self.argument else self.kind

    @property
    def needs_build_time(self) -> bool:
        return self.kind in _TIME_ORDERED or self.min_age is not None

    @property
    def needs_platforms(self) -> bool:
        return bool(self.platforms)

    @property
    def needs_digest(self) -> bool:
        return self.kind == "digest" or self.pin_digest

    def choose(
        self, tags: Iterable[TagInfo], current: str | None = None, now: datetime | None = None
    ) -> TagInfo | None:
        """The tag this policy picks among ``tags`` (``current`` is the tag now in use), or ``None``."""
        return ranking.choose(self, tags, current, now)

    def choose_tag(
        self, tags: Iterable[str], current: str | None = None, now: datetime | None = None
    ) -> str | None:
        """``choose`` over bare tag names (nothing known of them), without a ``TagInfo`` per tag where the
        policy reads names only."""
        return ranking.choose_tag(self, tags, current, now)

    def explain(
        self, tags: Iterable[TagInfo], current: str | None = None, now: datetime | None = None
    ) -> list[Verdict]:
        """One verdict per tag: the chosen tag first, then the other candidates best-first, then the rest."""
        return ranking.explain(self, tags, current, now)


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidPolicy(f"invalid {name} {value!r}: expected true or false")


def _parse_list(name: str, value: Any) -> list[str]:
    """A list modifier: a YAML list, or one string with comma-separated items (as annotations carry them)."""
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise InvalidPolicy(f"invalid {name} {value!r}: expected a list or a comma-separated string")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidPolicy(f"invalid {name} {value!r}: {item!r} is not a string")
        item = item.strip()
        if item and item not in out:
            out.append(item)
    return out


def _parse_min_age(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            result = timedelta(seconds=value)
        except (OverflowError, ValueError) as exc:  # inf, nan, or more days than a timedelta holds
            raise InvalidPolicy(f"invalid min_age {value!r}: not a usable number of seconds") from exc
    elif isinstance(value, str):
        try:
            result = parse_duration(value)
        except ConfigError as exc:
            raise InvalidPolicy(f"invalid min_age {value!r}: {exc}") from exc
    else:
        raise InvalidPolicy(f"invalid min_age {value!r}: expected a duration such as 1h30m or 7d")
    if result < timedelta(0):
        raise InvalidPolicy(f"invalid min_age {value!r}: negative")
    return result


def _modifier_kwargs(modifiers: Mapping[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for raw_key, value in modifiers.items():
        if not isinstance(raw_key, str):
            raise InvalidPolicy(f"invalid policy modifier {raw_key!r}")
        key = raw_key.strip().lower().replace("-", "_")
        key = _MODIFIER_ALIASES.get(key, key)
        if key not in MODIFIERS:
            raise InvalidPolicy(
                f"unknown policy modifier {raw_key!r} (expected one of {', '.join(MODIFIERS)})"
            )
        if key in kwargs:
            raise InvalidPolicy(f"policy modifier {key!r} given twice")
        if value is None:
            continue
        if key == "exclude":
            user = _parse_list("exclude", value)
            for glob in user:
                _compile_glob(glob, "exclude glob")
            kwargs[key] = DEFAULT_EXCLUDE + tuple(g for g in user if g not in DEFAULT_EXCLUDE)
        elif key in ("filter", "extract"):
            if not isinstance(value, str) or not value:
                raise InvalidPolicy(f"invalid {key} {value!r}: expected a non-empty string")
            kwargs[key] = value
        elif key in ("prerelease", "pin_digest"):
            kwargs[key] = _parse_bool(key.replace("_", "-"), value)
        elif key == "flavour":
            if not isinstance(value, str):
                raise InvalidPolicy(f"invalid flavour {value!r}: expected 'none', 'any' or a tag suffix")
            flavour = value.strip().removeprefix("-")
            lowered = flavour.lower()
            kwargs[key] = "none" if lowered in ("", "none") else "any" if lowered == "any" else flavour
        elif key == "min_age":
            kwargs[key] = _parse_min_age(value)
        else:  # platforms
            try:
                kwargs[key] = tuple(sorted({normalise_platform(p) for p in _parse_list(key, value)}))
            except ValueError as exc:
                raise InvalidPolicy(f"invalid platforms: {exc}") from exc
    return kwargs


def parse_policy(text: str, modifiers: Mapping[str, Any] | None = None) -> Policy:
    """Parse ``kind[:argument]`` plus modifiers into a canonical ``Policy``; raise ``InvalidPolicy``.

    Modifier keys may use ``_`` or ``-`` (``min-age``); values may be strings as annotations carry them
    (``"true"``, ``"1h"``, ``"a,b"``) or typed values from a policy file.
    """
    if not isinstance(text, str):
        raise InvalidPolicy(f"invalid policy {text!r}: expected a string such as 'semver:~1.2'")
    stripped = text.strip()
    if not stripped:
        raise InvalidPolicy("empty policy (expected e.g. 'semver:^1.0', 'glob:main-*', 'alphabetical')")
    head, _, argument = stripped.partition(":")
    kind = _KINDS.get(head.strip().lower())
    if kind is None:
        raise InvalidPolicy(
            f"invalid policy {text!r}: unknown kind {head!r} "
            f"(expected semver, glob, regex, regexp, alphabetical, numerical, newest or digest)"
        )
    argument = argument.strip()
    if kind == "semver":
        if not argument:
            raise InvalidPolicy(f"invalid policy {text!r}: semver needs a range, e.g. 'semver:^1.2'")
        try:
            argument = parse_range(argument).text
        except InvalidRange as exc:
            raise InvalidPolicy(f"invalid policy {text!r}: {exc.detail}") from exc
    elif kind in ("glob", "regex") and not argument:
        example = "glob:*" if kind == "glob" else "regex:^v\\d+"
        raise InvalidPolicy(f"invalid policy {text!r}: {head.strip()} needs a pattern, e.g. {example!r}")
    elif kind in ("alphabetical", "numerical"):
        argument = argument.lower() or "asc"
        if argument not in ("asc", "desc"):
            raise InvalidPolicy(f"invalid policy {text!r}: the order must be 'asc' or 'desc'")
    elif kind == "newest" and argument:
        raise InvalidPolicy(f"invalid policy {text!r}: newest takes no argument")
    elif kind == "digest" and argument and not is_valid_tag(argument):
        raise InvalidPolicy(f"invalid policy {text!r}: {argument!r} is not a valid tag")
    kwargs = _modifier_kwargs(modifiers or {})
    return Policy(kind=kind, argument=argument, **kwargs)
