"""Helpers for planning tests without a registry: tags from a JSON table, chosen by the real policies.

``tags.json`` maps a normalised image name (``docker.io/library/nginx``) to its tags, each a string or
``{"tag", "created"?, "digest"?}``. A tag without a digest gets a deterministic one (sha256 of
``image:tag``), so expected files can spell it. ``stub_resolve`` answers like the registry layer does: the
policy chooses, a digest is reported only when the policy needs one, and an image missing from the table is
a registry error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from image_updater.plan import Resolution, ResolveKey
from image_updater.policies import TagInfo

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def fake_digest(image: str, tag: str) -> str:
    return "sha256:" + hashlib.sha256(f"{image}:{tag}".encode()).hexdigest()


def tag_table(data: Mapping[str, list[str | dict[str, str]]]) -> dict[str, list[TagInfo]]:
    table: dict[str, list[TagInfo]] = {}
    for image, entries in data.items():
        infos = []
        for entry in entries:
            if isinstance(entry, str):
                entry = {"tag": entry}
            created = entry.get("created")
            infos.append(TagInfo(
                tag=entry["tag"],
                created=datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None,
                digest=entry.get("digest") or fake_digest(image, entry["tag"]),
            ))
        table[image] = infos
    return table


def load_tags(path: Path) -> dict[str, list[TagInfo]]:
    return tag_table(json.loads(path.read_text()))


def stub_resolve(
    keys: Iterable[ResolveKey], tags: Mapping[str, list[TagInfo]], now: datetime = NOW
) -> dict[ResolveKey, Resolution]:
    out: dict[ResolveKey, Resolution] = {}
    for key in keys:
        infos = tags.get(key.image)
        if infos is None:
            registry, _, repository = key.image.partition("/")
            out[key] = Resolution(error=f"registry {registry}: repository {repository} not found")
            continue
        chosen = key.policy.choose(infos, current=key.current_tag, now=now)
        if chosen is None:
            out[key] = Resolution()
            continue
        out[key] = Resolution(
            tag=chosen.tag, digest=chosen.digest if key.policy.needs_digest else None, created=chosen.created
        )
    return out
