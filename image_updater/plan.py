"""Planning: targets + resolved tags -> one ``Result``.

The ``Result`` is the one value that renders the dry-run report, the commit message, the logs and the
metrics. This module is pure: no I/O.

INTERFACE SKELETON — the planner itself is being written (issue 4). Keep the names and the JSON-facing
fields below; add fields (with defaults) where the implementation needs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from image_updater.policies import Policy

__all__ = ["Change", "ErrorEntry", "Origin", "Resolution", "ResolveKey", "Result", "Skipped", "Unchanged"]

Origin = Literal["annotation", "marker", "policy-file"]


@dataclass(frozen=True, slots=True)
class ResolveKey:
    """What the registry layer must answer once per pass: which tag ``policy`` picks for ``image``.

    ``current_tag`` is part of the key because flavour matching and the spelling tie-break depend on it.
    """

    image: str  # normalised "registry/repository", e.g. "docker.io/library/nginx"
    policy: Policy
    current_tag: str | None


@dataclass(frozen=True, slots=True)
class Resolution:
    """The registry layer's answer for one ``ResolveKey``.

    ``error`` set: the registry failed for this image (the message names registry and image, no secrets).
    ``tag`` None and ``error`` None: the registry answered but no tag satisfies the policy.
    """

    tag: str | None = None
    digest: str | None = None
    created: datetime | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """One scalar to rewrite. JSON keys as in DESIGN "CLI contract" (``plan --format json``)."""

    file: str  # relative to the scanned root, POSIX separators
    line: int  # 1-based line of the scalar
    resource: str | None  # "Kind/namespace/name" or "Kind/name"
    container: str | None
    image: str  # repository as written, no tag or digest
    old: str  # the scalar's value before (unquoted)
    new: str  # the scalar's value after (unquoted)
    old_tag: str | None
    new_tag: str
    policy: str
    origin: Origin
    start: int = 0  # character span of the scalar in the file's text, quotes included
    end: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "line": self.line, "resource": self.resource, "container": self.container,
            "image": self.image, "old": self.old, "new": self.new, "old_tag": self.old_tag,
            "new_tag": self.new_tag, "policy": self.policy, "origin": self.origin,
        }


@dataclass(frozen=True, slots=True)
class Unchanged:
    """A target already at the tag its policy picks."""

    file: str
    line: int
    resource: str | None
    container: str | None
    image: str
    old: str
    old_tag: str | None
    policy: str
    origin: Origin

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "line": self.line, "resource": self.resource, "container": self.container,
            "image": self.image, "old": self.old, "old_tag": self.old_tag, "policy": self.policy,
            "origin": self.origin,
        }


@dataclass(frozen=True, slots=True)
class Skipped:
    """A field deliberately left alone: locked or ignored workload, container without a policy."""

    file: str
    line: int | None
    image: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "image": self.image, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    """Something that went wrong for one file, image or source; the rest of the pass went on."""

    file: str | None
    line: int | None
    image: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "image": self.image, "message": self.message}


@dataclass(frozen=True, slots=True)
class Result:
    updates: tuple[Change, ...] = ()
    unchanged: tuple[Unchanged, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    errors: tuple[ErrorEntry, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "updates": [c.to_dict() for c in self.updates],
            "unchanged": [u.to_dict() for u in self.unchanged],
            "skipped": [s.to_dict() for s in self.skipped],
            "errors": [e.to_dict() for e in self.errors],
        }
