"""Manifest, index and image-config parsing (pure: bytes in, values out).

Handles the four manifest media types a registry may answer with (OCI index, Docker manifest list, OCI
manifest, Docker schema 2) plus the legacy schema 1, whose ``v1Compatibility`` history carries the build time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ACCEPT_MANIFESTS",
    "CREATED_ANNOTATION",
    "INDEX_TYPES",
    "Manifest",
    "config_metadata",
    "parse_manifest",
    "parse_timestamp",
    "platform_of",
    "sha256_digest",
]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_V1 = "application/vnd.docker.distribution.manifest.v1+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
# Without all four, some registries convert a multi-arch tag down to one platform (or to schema 1).
ACCEPT_MANIFESTS = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_V2))
CREATED_ANNOTATION = "org.opencontainers.image.created"
# Reproducible builds write 1970-01-01 (SOURCE_DATE_EPOCH=0) or 0001-01-01 (ko, bazel): no build time at all.
_NO_REAL_BUILD_TIME = datetime(1980, 1, 1, tzinfo=UTC)


def sha256_digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def parse_timestamp(value: object) -> datetime | None:
    """An RFC 3339 time as a timezone-aware datetime; None when absent, unparsable or a placeholder."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    # Go writes up to nine fractional digits; fromisoformat takes at most six before Python 3.12.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = head + "." + rest[: min(digits, 6)] + rest[digits:] if digits else head + rest
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return None if parsed < _NO_REAL_BUILD_TIME else parsed


def platform_of(entry: object) -> str | None:
    """``os/architecture[/variant]`` of a descriptor's platform or a config; None when unknown."""
    if not isinstance(entry, dict):
        return None
    os_name, arch = entry.get("os"), entry.get("architecture")
    if not isinstance(os_name, str) or not isinstance(arch, str) or not os_name or not arch:
        return None
    if os_name == "unknown" or arch == "unknown":  # buildx attestation manifests
        return None
    variant = entry.get("variant")
    return f"{os_name}/{arch}/{variant}" if isinstance(variant, str) and variant else f"{os_name}/{arch}"


@dataclass(frozen=True, slots=True)
class Manifest:
    """What we need from one manifest or index."""

    digest: str
    media_type: str
    is_index: bool
    platforms: frozenset[str] | None  # an index's platforms; None for a single image (read its config)
    created: datetime | None  # from the annotation (or schema 1 history), when present
    config_digest: str | None  # single images: the config blob to read
    children: tuple[tuple[str, str | None], ...] = ()  # index: (digest, platform) of each image manifest


def parse_manifest(body: bytes, content_type: str | None, digest: str | None) -> Manifest:
    """Parse a manifest body; ``digest`` is Docker-Content-Digest (the body's sha256 when None).

    Raises ValueError when the body is not a manifest we understand.
    """
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("manifest is not a JSON object")
    media_type = data.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        media_type = (content_type or "").split(";", 1)[0].strip()
    digest = digest or sha256_digest(body)
    annotations = data.get("annotations")
    created = parse_timestamp(annotations.get(CREATED_ANNOTATION)) if isinstance(annotations, dict) else None
    manifests = data.get("manifests")
    if media_type in INDEX_TYPES or isinstance(manifests, list):
        if not isinstance(manifests, list):
            raise ValueError("index has no manifests list")
        children: list[tuple[str, str | None]] = []
        platforms: set[str] = set()
        for entry in manifests:
            if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
                raise ValueError("index entry without a digest")
            platform = platform_of(entry.get("platform"))
            if platform is not None:
                platforms.add(platform)
            children.append((entry["digest"], platform))
        return Manifest(
            digest, media_type or OCI_INDEX, True, frozenset(platforms), created, None, tuple(children)
        )
    if data.get("schemaVersion") == 1:
        return _schema1(data, digest, media_type or DOCKER_V1)
    config = data.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
        raise ValueError("manifest has no config descriptor")
    return Manifest(digest, media_type or OCI_MANIFEST, False, None, created, config["digest"])


def _schema1(data: dict[str, Any], digest: str, media_type: str) -> Manifest:
    created: datetime | None = None
    platforms: frozenset[str] | None = None
    history = data.get("history")
    if isinstance(history, list) and history and isinstance(history[0], dict):
        try:
            v1 = json.loads(history[0].get("v1Compatibility", ""))
        except ValueError:
            v1 = None
        if isinstance(v1, dict):
            created = parse_timestamp(v1.get("created"))
            platform = platform_of(v1)
            platforms = frozenset({platform}) if platform else None
    if platforms is None and isinstance(data.get("architecture"), str):
        platforms = frozenset({f"linux/{data['architecture']}"})
    return Manifest(digest, media_type, False, platforms, created, None)


def config_metadata(body: bytes) -> tuple[datetime | None, frozenset[str] | None]:
    """Build time and platform from an image config blob. Raises ValueError on garbage."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("image config is not a JSON object")
    created = parse_timestamp(data.get("created"))
    if created is None:
        labels = (data.get("config") or {}).get("Labels") if isinstance(data.get("config"), dict) else None
        if isinstance(labels, dict):
            created = parse_timestamp(labels.get(CREATED_ANNOTATION))
    platform = platform_of(data)
    return created, frozenset({platform}) if platform else None
