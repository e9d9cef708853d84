"""Container image references: parse, normalise, compare and format.

A reference is ``[registry[:port]/]path[:tag][@algorithm:digest]``. Normalisation follows the Docker CLI: the
first path segment names a registry only when it contains ``.`` or ``:`` or is ``localhost``; otherwise the
registry is ``docker.io``. ``index.docker.io`` and ``registry-1.docker.io`` mean ``docker.io``, and a
one-segment Docker Hub path gets ``library/`` (Docker Hub only). Registry host names compare
case-insensitively; paths are lower case by grammar.

The user's spelling survives: ``with_tag`` rewrites only the tag (and digest) of the reference exactly as it
was written, so ``nginx:1.25`` becomes ``nginx:1.27`` and never ``docker.io/library/nginx:1.27``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from image_updater.errors import InvalidReference

__all__ = [
    "DOCKER_HUB",
    "ImageReference",
    "is_valid_tag",
    "normalise_registry",
    "parse_reference",
]

DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

# The OCI distribution grammar, anchored with \Z so that a trailing newline never sneaks through.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_DOMAIN_COMPONENT = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?\Z"
)
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}\Z")
_SHA256 = re.compile(r"sha256:[a-f0-9]{64}\Z")
_MAX_NAME = 255


def is_valid_tag(tag: str) -> bool:
    """True when ``tag`` matches the OCI tag grammar ``[A-Za-z0-9_][A-Za-z0-9._-]{0,127}``."""
    return _TAG.match(tag) is not None


def normalise_registry(host: str) -> str:
    """Lower-case a registry host and fold Docker Hub's aliases into ``docker.io``."""
    lowered = host.lower()
    return DOCKER_HUB if lowered in _DOCKER_HUB_ALIASES else lowered


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed image reference.

    ``registry`` and ``repository`` are normalised (``docker.io``, ``library/nginx``); ``written_name`` is the
    registry and path exactly as the user wrote them, without tag or digest.
    """

    registry: str
    repository: str
    tag: str | None
    digest: str | None
    written_name: str

    @property
    def name(self) -> str:
        """The normalised repository with its registry: ``docker.io/library/nginx``."""
        return f"{self.registry}/{self.repository}"

    @property
    def effective_tag(self) -> str:
        """The tag a pull would use: the written tag, or ``latest`` when none is written."""
        return self.tag if self.tag is not None else "latest"

    def same_repository(self, other: ImageReference) -> bool:
        """True when both references name the same repository after normalisation."""
        return self.registry == other.registry and self.repository == other.repository

    def with_tag(self, tag: str, digest: str | None = None) -> str:
        """Format this reference, as the user spelled it, with a new tag (and digest, if given)."""
        if not is_valid_tag(tag):
            raise InvalidReference(f"invalid tag {tag!r} for image {self.written_name!r}")
        if digest is not None and _DIGEST.match(digest) is None:
            raise InvalidReference(f"invalid digest {digest!r} for image {self.written_name!r}")
        text = f"{self.written_name}:{tag}"
        return f"{text}@{digest}" if digest else text

    def __str__(self) -> str:
        text = self.written_name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> ImageReference:
    """Parse ``[registry[:port]/]path[:tag][@digest]``; raise ``InvalidReference`` naming the input."""
    if not isinstance(text, str) or not text:
        raise InvalidReference(f"empty image reference {text!r}")
    if text != text.strip() or any(c.isspace() for c in text):
        raise InvalidReference(f"image reference {text!r} contains white space")
    remainder, digest = text, None
    if "@" in remainder:
        remainder, digest = remainder.split("@", 1)
        if _DIGEST.match(digest) is None or (digest.startswith("sha256:") and not _SHA256.match(digest)):
            raise InvalidReference(f"invalid digest {digest!r} in image reference {text!r}")
    tag = None
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > last_slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not is_valid_tag(tag):
            raise InvalidReference(f"invalid tag {tag!r} in image reference {text!r}")
    if not remainder:
        raise InvalidReference(f"image reference {text!r} has no repository")
    if len(remainder) > _MAX_NAME:
        raise InvalidReference(f"image reference {text!r} is longer than {_MAX_NAME} characters")

    first, sep, rest = remainder.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if _HOST.match(first) is None:
            raise InvalidReference(f"invalid registry host {first!r} in image reference {text!r}")
        registry, path = normalise_registry(first), rest
    else:
        registry, path = DOCKER_HUB, remainder
    components = path.split("/")
    for component in components:
        if _PATH_COMPONENT.match(component) is None:
            raise InvalidReference(f"invalid repository path {path!r} in image reference {text!r}")
    if registry == DOCKER_HUB and len(components) == 1:
        path = f"library/{path}"
    return ImageReference(registry=registry, repository=path, tag=tag, digest=digest, written_name=remainder)
