"""Tag policies: one string form (``semver:~1.2``, ``glob:develop-*``, ...) plus modifiers.

INTERFACE SKELETON — the pure implementation is being written (issue 2). The names, fields and signatures
below are the contract the rest of the package codes against; keep them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

__all__ = [
    "DEFAULT_EXCLUDE",
    "Policy",
    "PolicyKind",
    "Status",
    "TagInfo",
    "Verdict",
    "parse_duration",
    "parse_policy",
]

PolicyKind = Literal["semver", "glob", "regex", "alphabetical", "numerical", "newest", "digest"]

# cosign signatures, attestations and SBOMs are tags too; they are never images to deploy
DEFAULT_EXCLUDE: tuple[str, ...] = ("sha256-*.sig", "sha256-*.att", "sha256-*.sbom")


@dataclass(frozen=True, slots=True)
class TagInfo:
    """One tag of a repository, with whatever metadata is known (``None`` = not known / not fetched)."""

    tag: str
    created: datetime | None = None  # timezone-aware build time
    digest: str | None = None  # manifest (or index) digest
    platforms: frozenset[str] | None = None  # "linux/amd64", "linux/arm64/v8"; None = unknown


class Status(StrEnum):
    CHOSEN = "chosen"
    LOWER = "lower"
    FILTERED = "filtered"
    EXCLUDED = "excluded"
    PRERELEASE = "prerelease"
    TOO_YOUNG = "too-young"
    PLATFORM = "platform"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why one tag won or lost under a policy (``check --explain``)."""

    tag: str
    created: datetime | None
    status: Status
    reason: str


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed, validated, hashable policy. ``str(policy)`` gives back the canonical string form."""

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

    @property
    def needs_build_time(self) -> bool:
        raise NotImplementedError

    @property
    def needs_platforms(self) -> bool:
        raise NotImplementedError

    @property
    def needs_digest(self) -> bool:
        raise NotImplementedError

    def choose(
        self, tags: Iterable[TagInfo], current: str | None = None, now: datetime | None = None
    ) -> TagInfo | None:
        raise NotImplementedError

    def explain(
        self, tags: Iterable[TagInfo], current: str | None = None, now: datetime | None = None
    ) -> list[Verdict]:
        raise NotImplementedError


def parse_policy(text: str, modifiers: Mapping[str, Any] | None = None) -> Policy:
    raise NotImplementedError


def parse_duration(text: str) -> timedelta:
    raise NotImplementedError
