"""The plain values discovery reports and planning passes on: ``ErrorEntry``, ``Skipped``, ``Origin`` and
``ResolveKey``.

They sit below both ``discover`` (which emits them) and ``plan`` (which carries them into the ``Result``), so
neither of those two needs the other for its vocabulary. Pure values, no logic beyond ``to_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from image_updater.policies import Policy

__all__ = ["ErrorEntry", "Origin", "ResolveKey", "Skipped"]

Origin = Literal["annotation", "marker", "policy-file", "aiu-annotation", "aiu-imageupdater", "keel", "fleet"]
"""Where a target's policy came from (DESIGN "Where policies come from")."""


@dataclass(frozen=True, slots=True)
class ResolveKey:
    """What the registry layer must answer once per pass: which tag ``policy`` picks for ``image``.

    ``current_tag`` is part of the key because flavour matching and the spelling tie-break depend on it.
    """

    image: str  # normalised "registry/repository", e.g. "docker.io/library/nginx"
    policy: Policy
    current_tag: str | None


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
