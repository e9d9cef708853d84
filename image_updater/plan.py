"""Planning: targets + resolved tags -> one ``Result``.

The ``Result`` is the one value that renders the dry-run report, the commit message, the logs and the
metrics. This module is pure: no I/O.

``build_plan`` turns discovery's targets and the registry layer's answers into that Result: a ``Change`` for
every scalar whose new value differs (written per DESIGN "Image references": the user's spelling kept, a
tagless reference gets ``:<tag>``, a digest kept or added when the reference had one or the policy pins it,
only the tag for ``:tag`` markers and ``newTag``), ``Unchanged`` for scalars already right, and an
``ErrorEntry`` per target whose registry failed or whose policy admits no tag. The order is deterministic:
file, then position in the file.

``ErrorEntry``, ``Skipped``, ``Origin`` and ``ResolveKey`` are defined in ``image_updater.findings`` and
re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from image_updater.errors import _NoValue
from image_updater.findings import ErrorEntry, Origin, ResolveKey, Skipped
from image_updater.references import is_valid_tag
from image_updater.yamledit import Insertion

if TYPE_CHECKING:
    from image_updater.discover import Discovery, Target

__all__ = [
    "CANDIDATES_KEPT",
    "Candidate",
    "Change",
    "ErrorEntry",
    "Explained",
    "Origin",
    "Resolution",
    "ResolveKey",
    "Result",
    "Skipped",
    "Unchanged",
    "build_plan",
    "render_value",
]
# ErrorEntry, Origin, ResolveKey and Skipped live in image_updater.findings (below discover and plan); they
# are re-exported here because a Result carries them and tests and benchmarks import them from this module.


# How many tags' verdicts a Resolution (and so a Result) keeps per image for the status page: the chosen tag
# and the best-ranked losers first, then the ruled-out tags; a repository with 10,000 tags costs 10 rows.
CANDIDATES_KEPT = 10


@dataclass(frozen=True, slots=True)
class Candidate:
    """One tag's verdict under a policy, as ``check --explain`` shows it: ``status`` is a
    ``policies.Status`` value (``chosen``, ``lower``, ``filtered``, ...)."""

    tag: str
    status: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "status": self.status, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Explained:
    """The verdicts kept for one image under one policy and current tag (``Result.explained``)."""

    image: str  # as written (``Change.image``)
    policy: str
    current_tag: str | None
    candidates: tuple[Candidate, ...]
    considered: int  # how many tags the registry listed (``candidates`` holds at most CANDIDATES_KEPT)
    origin: Origin | None = None
    error: str | None = None  # the registry's error for this image (then no candidates)


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
    # the best CANDIDATES_KEPT verdicts, computed by the resolve step from what it already fetched (no extra
    # request); empty when not asked for. ``considered``: how many tags were listed.
    candidates: tuple[Candidate, ...] = ()
    considered: int = 0


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
    digest: str | None = None  # the new tag's digest when one is written
    policy_source: str | None = None  # "file:line" of the annotation, policy file or ImagePolicy
    insert: Insertion | None = None  # the value is inserted (``old`` is ""), or a new file is written

    @property
    def created(self) -> bool:
        """True when the change writes a file that does not exist yet."""
        return self.insert is not None and self.insert.parent < 0

    def to_dict(self) -> dict[str, Any]:
        out = {
            "file": self.file, "line": self.line, "resource": self.resource, "container": self.container,
            "image": self.image, "old": self.old, "new": self.new, "old_tag": self.old_tag,
            "new_tag": self.new_tag, "policy": self.policy, "origin": self.origin,
        }
        if self.insert is not None:
            out["action"] = "create" if self.created else "insert"
        return out


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
class Result:
    updates: tuple[Change, ...] = ()
    unchanged: tuple[Unchanged, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    errors: tuple[ErrorEntry, ...] = field(default=())
    # per (image, policy, current tag) the verdicts the resolve step kept, or its error, for the status page
    # and ``plan --format html``; not part of DESIGN's JSON report (to_dict leaves it out)
    explained: tuple[Explained, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "updates": [c.to_dict() for c in self.updates],
            "unchanged": [u.to_dict() for u in self.unchanged],
            "skipped": [s.to_dict() for s in self.skipped],
            "errors": [e.to_dict() for e in self.errors],
        }

    @property
    def files(self) -> tuple[str, ...]:
        """The files with updates, sorted."""
        return tuple(sorted({c.file for c in self.updates}))


def _writes_digest(target: Target) -> bool:
    return target.part in ("tag-digest", "digest", "digest-hex") or (
        target.part == "reference" and target.needs_digest
    )


def render_value(target: Target, resolution: Resolution) -> str:
    """The new value of ``target``'s scalar (unquoted) for the tag (and digest) in ``resolution``."""
    tag, digest = resolution.tag, resolution.digest
    if tag is None or not is_valid_tag(tag):
        raise _NoValue(f"the registry answered an invalid tag {tag!r}")
    part = target.part
    if _writes_digest(target) and not digest:
        raise _NoValue(f"the registry reported no digest for {target.image.name}:{tag}")
    if part == "reference":
        name = target.write_name or target.image.written_name
        return f"{name}:{tag}@{digest}" if target.needs_digest else f"{name}:{tag}"
    if part == "tag":
        return tag
    if part == "tag-digest":
        return f"{tag}@{digest}"
    if part == "digest":
        return str(digest)
    if part == "digest-hex":
        algorithm, _, hex_digest = str(digest).partition(":")
        if algorithm != "sha256":
            raise _NoValue(f"the field holds a sha256 hex digest, but the registry answered {digest}")
        return hex_digest
    return target.write_name or target.image.written_name  # "name"


def build_plan(discovery: Discovery, resolutions: Mapping[ResolveKey, Resolution]) -> Result:
    """Decide every target of ``discovery`` with the registry layer's ``resolutions``. Pure."""
    updates: list[Change] = []
    unchanged: list[Unchanged] = []
    errors: list[ErrorEntry] = list(discovery.errors)
    explained: dict[tuple[str, str, str | None], Explained] = {}
    for target in discovery.targets:
        image = target.image.written_name
        policy = str(target.policy)
        resolution = resolutions.get(target.resolve_key)
        if resolution is not None and (resolution.candidates or resolution.error is not None):
            explained.setdefault((image, policy, target.image.tag), Explained(
                image=image, policy=policy, current_tag=target.image.tag,
                candidates=resolution.candidates, considered=resolution.considered, origin=target.origin,
                error=resolution.error,
            ))

        def fail(message: str, target: Target = target, image: str = image) -> None:
            errors.append(ErrorEntry(file=target.file, line=target.line, image=image, message=message))

        if resolution is None:
            fail(f"{target.image.name} was not resolved for policy {policy}")
            continue
        if resolution.error is not None:
            fail(resolution.error)
            continue
        if resolution.tag is None:
            fail(f"no tag of {target.image.name} satisfies policy {policy}"
                 + (f" (current tag {target.image.tag})" if target.image.tag else ""))
            continue
        try:
            new = render_value(target, resolution)
        except _NoValue as exc:
            fail(str(exc))
            continue
        if new == target.value and target.insert is None:
            unchanged.append(Unchanged(
                file=target.file, line=target.line, resource=target.resource, container=target.container,
                image=image, old=target.value, old_tag=target.image.tag, policy=policy, origin=target.origin,
            ))
            continue
        updates.append(Change(
            file=target.file, line=target.line, resource=target.resource, container=target.container,
            image=image, old=target.value, new=new, old_tag=target.image.tag, new_tag=resolution.tag,
            policy=policy, origin=target.origin, start=target.start, end=target.end,
            digest=resolution.digest if _writes_digest(target) else None,
            policy_source=target.policy_source, insert=target.insert,
        ))
    updates.sort(key=lambda c: (c.file, c.start))
    unchanged.sort(key=lambda u: (u.file, u.line))
    errors.sort(key=lambda e: (e.file or "", e.line or 0, e.message))
    return Result(updates=tuple(updates), unchanged=tuple(unchanged), skipped=discovery.skipped,
                  errors=tuple(errors), explained=tuple(explained[k] for k in sorted(explained, key=str)))
