"""``resolve``: one pass's (image, policy, current tag) questions answered with as few requests as possible.

Each image's tag list is fetched once per call, however many keys name it. Metadata is fetched only when the
policy needs it, and only for candidates, which the policy itself names: the policy without its ``min_age``
and ``platforms`` filters ranks the bare tag names, and every tag it does not reject by name is a candidate.

- Policies ordered by build time (``glob``, ``regex``, ``newest``) need the build time of every candidate.
- Policies ordered by name (``semver``, ``alphabetical``, ``numerical``) with ``min_age`` or ``platforms``
  walk the candidates best-first, a batch at a time, and stop at the first that passes the full policy; a
  ``semver`` policy with ``platforms`` usually costs the metadata of one tag, not of all of them.
- ``digest`` and ``pin_digest`` ask the registry for the chosen tag's digest on every pass (one ``HEAD``).
- Policies that read names only reuse the cached decision when the tag list has not changed since: ranking a
  hundred tags costs more CPU than the request that listed them.

A failing registry fails only its own images: each key gets a ``Resolution`` with ``error`` set.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from image_updater import __version__, policies, regexes, versions
from image_updater.errors import ImageUpdaterError
from image_updater.plan import CANDIDATES_KEPT, Candidate, Resolution, ResolveKey
from image_updater.policies import Policy, Status, TagInfo
from image_updater.registry.client import RegistryClient
from image_updater.registry.options import split_image

__all__ = ["Inspection", "inspect", "resolve"]

log = logging.getLogger(__name__)

_TIME_ORDERED = frozenset({"glob", "regex", "newest"})
_CANDIDATE = frozenset({Status.CHOSEN, Status.LOWER})
_BATCH = 8


@dataclass(frozen=True, slots=True)
class Inspection:
    """Everything ``check --explain`` shows: the tags with what is known of them, and the answer."""

    tags: tuple[TagInfo, ...]
    chosen: TagInfo | None
    resolution: Resolution


async def resolve(
    client: RegistryClient, keys: Iterable[ResolveKey], *, now: datetime | None = None,
    candidates: bool = False,
) -> dict[ResolveKey, Resolution]:
    """Answer every key concurrently; errors are per key (message names registry and image, no secret).

    ``candidates``: also keep the best ``CANDIDATES_KEPT`` verdicts per key (``Resolution.candidates``),
    ranked from what was fetched anyway: no extra request, one more ranking of the tag names in CPU.
    """
    unique = list(dict.fromkeys(keys))
    by_image: dict[str, list[ResolveKey]] = {}
    for key in unique:
        by_image.setdefault(key.image, []).append(key)

    # the answers of names-only keys: a pass gives most images one of a few answers, each a frozen value
    by_name: dict[str | None, Resolution] = {}

    def as_error(key: ResolveKey, exc: Exception) -> Resolution:
        if isinstance(exc, ImageUpdaterError):
            return Resolution(error=str(exc))
        # a bug must cost one image, not the pass; details at debug level only
        log.debug("resolving %s failed", key.image, exc_info=exc)
        return Resolution(error=f"{_describe(key.image)}: internal error ({type(exc).__name__})")

    def named(key: ResolveKey, tags: list[str]) -> Resolution:
        try:
            return _answer(by_name, _decide(client, key, tags, now))
        except Exception as exc:
            return as_error(key, exc)

    async def one(key: ResolveKey, tags: list[str]) -> Resolution:
        if not candidates and _by_name(key.policy):
            return named(key, tags)
        try:
            inspection = await _inspect(client, key, tags, now, detail=False, verdicts=candidates)
            return inspection.resolution
        except Exception as exc:
            return as_error(key, exc)

    async def image(name: str, image_keys: list[ResolveKey]) -> list[Resolution]:
        # one task per image, not one per key plus one per tag list: the image's keys share its tag list
        try:
            tags = await client.list_tags(name)
        except ImageUpdaterError as exc:
            return [Resolution(error=str(exc))] * len(image_keys)
        except Exception as exc:
            log.debug("listing the tags of %s failed", name, exc_info=True)
            failed = Resolution(error=f"{_describe(name)}: internal error ({type(exc).__name__})")
            return [failed] * len(image_keys)
        if len(image_keys) == 1:
            key = image_keys[0]
            if not candidates and _by_name(key.policy):  # no await, no coroutine: most images of a pass
                return [named(key, tags)]
            return [await one(key, tags)]
        return list(await asyncio.gather(*(one(key, tags) for key in image_keys)))

    with client.cache.batch():
        # a warm pass reuses most decisions: read them with one statement, not one per image
        client.cache.read_decisions(by_image)
        per_image = await asyncio.gather(*(image(name, group) for name, group in by_image.items()))
    found = {key: resolution for group, answers in zip(by_image.values(), per_image, strict=True)
             for key, resolution in zip(group, answers, strict=True)}
    return {key: found[key] for key in unique}


async def inspect(client: RegistryClient, key: ResolveKey, *, now: datetime | None = None) -> Inspection:
    """Resolve one key and keep the tags, with the chosen tag's build time and digest filled in.

    Raises ``RegistryError`` instead of folding it into the ``Resolution``.
    """
    tags = await client.list_tags(key.image)
    return await _inspect(client, key, tags, now, detail=True)


@functools.cache
def _code_fingerprint() -> str:
    """A hash of the code that decides, so that decisions cached by another version are not reused."""
    digest = hashlib.blake2b(__version__.encode(), digest_size=8)
    for module in (policies, regexes, versions):
        source = Path(module.__file__ or "")
        # a package (policies/) decides in all of its modules, not only in its __init__
        files = sorted(source.parent.glob("*.py")) if source.name == "__init__.py" else [source]
        for file in files:
            try:
                digest.update(file.read_bytes())
            except OSError:
                digest.update(f"{module.__name__} {file.name}".encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=4096)
def _fingerprint(policy: Policy) -> str:
    return f"{_code_fingerprint()} {policy!r}"


def _by_name(policy: Policy) -> bool:
    """The policy's answer is a tag chosen from the names alone: no metadata, no digest to ask for."""
    if policy.kind in _TIME_ORDERED or policy.needs_build_time or policy.needs_platforms:
        return False
    return not policy.needs_digest


def _answer(answers: dict[str | None, Resolution], tag: str | None) -> Resolution:
    resolution = answers.get(tag)
    if resolution is None:
        resolution = answers[tag] = Resolution(tag=tag)
    return resolution


def _decide(client: RegistryClient, key: ResolveKey, tags: list[str], now: datetime | None) -> str | None:
    """The tag a policy that reads names only chooses, from the cached decision when the tags are unchanged:
    an unchanged tag list gives the same answer as last time."""
    split_image(key.image)  # a malformed name fails here, for this key only
    policy, current = key.policy, key.current_tag
    tags_hash = _tags_hash(tags)
    fingerprint = _fingerprint(policy)
    known, tag = client.cache.decision(key.image, fingerprint, current, tags_hash)
    if not known:
        # ranked on the names themselves: no TagInfo per tag
        tag = policy.choose_tag(tags, current, now)
        client.cache.put_decision(key.image, fingerprint, current, tags_hash, tag)
    return tag


def _tags_hash(tags: list[str]) -> str:
    # the list as the registry gives it, not sorted (a sort costs more than the hash): registries list in a
    # stable order (distribution sorts), and one that reorders costs a ranking, never a wrong answer, since
    # the answer does not depend on the order (the tie rule is a total order)
    return hashlib.blake2b("\n".join(tags).encode(), digest_size=16).hexdigest()


def _describe(image: str) -> str:
    registry, _, repository = image.partition("/")
    return f"registry {registry}, image {repository}"


def _name_candidates(
    policy: Policy, infos: list[TagInfo], current: str | None, now: datetime | None
) -> list[str]:
    """Tags the policy does not reject by name, best-first by what the name alone says."""
    bare = dataclasses.replace(policy, min_age=None, platforms=())
    return [v.tag for v in bare.explain(infos, current, now) if v.status in _CANDIDATE]


def _kept_verdicts(
    policy: Policy, infos: dict[str, TagInfo], tags: list[str], chosen: TagInfo | None,
    current: str | None, now: datetime | None,
) -> tuple[Candidate, ...]:
    """The best CANDIDATES_KEPT verdicts; tags whose metadata was never fetched are judged by name only."""
    known = dict.fromkeys(tags)
    pool = [infos.get(tag) or TagInfo(tag) for tag in known]
    if chosen is not None:
        pool = [chosen if info.tag == chosen.tag else info for info in pool]
    verdicts = policy.explain(pool, current, now)  # names-only policies need nothing but the names
    out = []
    for verdict in verdicts[:CANDIDATES_KEPT]:
        status, reason = verdict.status.value, verdict.reason
        unfetched = infos.get(verdict.tag) is None or infos[verdict.tag].created is None
        if chosen is not None and unfetched and verdict.status in (Status.TOO_YOUNG, Status.PLATFORM):
            status, reason = Status.LOWER.value, f"ranks below {chosen.tag}; not inspected further"
        out.append(Candidate(verdict.tag, status, reason))
    return tuple(out)


async def _inspect(
    client: RegistryClient, key: ResolveKey, tags: list[str], now: datetime | None, *, detail: bool,
    verdicts: bool = False,
) -> Inspection:
    split_image(key.image)  # a malformed name fails here, for this key only
    policy, current = key.policy, key.current_tag
    chosen: TagInfo | None
    needs_metadata = policy.kind in _TIME_ORDERED or policy.needs_build_time or policy.needs_platforms
    infos: dict[str, TagInfo] = {} if not (needs_metadata or detail) else {tag: TagInfo(tag) for tag in tags}
    if not infos:
        # the common case, names alone decide (resolve() calls _decide itself unless a digest is wanted too)
        tag = _decide(client, key, tags, now)
        chosen = TagInfo(tag) if tag is not None else None
    elif policy.kind in _TIME_ORDERED:
        candidates = _name_candidates(policy, list(infos.values()), current, now)
        infos.update(await client.tag_infos(key.image, candidates))
        chosen = policy.choose(infos.values(), current, now)
    elif policy.needs_build_time or policy.needs_platforms:
        candidates = _name_candidates(policy, list(infos.values()), current, now)
        chosen = None
        for start in range(0, len(candidates), _BATCH):
            batch = candidates[start : start + _BATCH]
            infos.update(await client.tag_infos(key.image, batch))
            for tag in batch:
                info = infos[tag]
                if policy.choose([info], current, now) is not None:
                    chosen = info
                    break
            if chosen is not None:
                break
    else:
        chosen = policy.choose(infos.values(), current, now)
    digest = chosen.digest if chosen is not None else None
    if chosen is not None and (policy.needs_digest or detail):
        if detail and chosen.created is None and policy.kind != "digest":
            infos.update(await client.tag_infos(key.image, [chosen.tag]))
            chosen = infos[chosen.tag]
        # a digest written into a file must be the tag's digest now, not a cached one
        digest = await client.tag_digest(key.image, chosen.tag)
        chosen = dataclasses.replace(chosen, digest=digest)
        if infos:
            infos[chosen.tag] = chosen
    resolution = Resolution(
        tag=chosen.tag if chosen else None,
        digest=digest if policy.needs_digest or detail else None,
        created=chosen.created if chosen else None,
        candidates=_kept_verdicts(policy, infos, tags, chosen, current, now) if verdicts else (),
        considered=len(tags) if verdicts else 0,
    )
    return Inspection(tuple(infos.values()), chosen, resolution)

