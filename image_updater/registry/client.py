"""``RegistryClient``: the Docker Registry HTTP API v2 / OCI distribution client of image-updater.

One client serves a whole pass (or a daemon's lifetime): it shares one set of connection pools per TLS setting
across all registries, keeps per-registry pacing (``max_concurrency``, ``rate_limit``, 429 pauses, Docker
Hub's pull budget), authentication state and tokens, and reads and fills the persistent metadata cache.

Every error it raises is a ``RegistryError`` whose message starts with ``registry <host>, image <path>``
and never contains a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlencode

from image_updater.errors import RegistryAuthError, RegistryError, RepositoryNotFound
from image_updater.policies import TagInfo
from image_updater.references import DOCKER_HUB, is_valid_tag
from image_updater.registry.cache import DigestMeta, MetadataCache, TagDigest
from image_updater.registry.manifests import (
    ACCEPT_MANIFESTS,
    Manifest,
    config_metadata,
    parse_manifest,
    parse_timestamp,
    platform_of,
    sha256_digest,
)
from image_updater.registry.options import RegistryOptions, split_image
from image_updater.registry.pacing import RetryPolicy
from image_updater.registry.session import DOCKER_HUB_API, Session, context_of
from image_updater.registry.transport import Answer, BodyLimits, Endpoint, Observer
from image_updater.registry.wire import InvalidUrl, Transport, Url

__all__ = ["RegistryClient"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_PAGES = 1000
# set by fresh_tags() in the task of a webhook-triggered pass: bypass the tags_max_age reuse
_FRESH_TAGS: contextvars.ContextVar[bool] = contextvars.ContextVar("image_updater_fresh_tags", default=False)
_TTL_SPREAD = 0.25  # tag -> digest deadlines are stretched by up to this share, spreading revalidations
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}\Z")
_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"


def next_link(header: str | None) -> str | None:
    """The target of the ``rel="next"`` entry of an RFC 8288 ``Link`` header, if any.

    One pass over the text (``_link_values``): a long header of repeated ``rel=`` parameters costs linear
    time, not the quadratic backtracking of a regular expression.

    Not httpx's ``Response.links``: that parser is linear too (``str.split`` and one simple ``re.split``), but
    it keys each link by its whole ``rel`` value, so ``rel="prev next"`` (a list of relations, RFC 8288)
    has no ``"next"``; it splits inside quoted strings (``title="a, <b>"``), compares parameter names
    case-sensitively (``REL=next``), and stops reading a link's parameters at one whose value holds ``=``.
    """
    if not header:
        return None
    for target, params in _link_values(header):
        for name, value in params:
            if name.lower() == "rel" and "next" in value.lower().split():
                return target.strip()
    return None


def _link_values(header: str) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """``<a>; rel="next", <b>; x=y`` -> ``("a", [("rel", "next")]), ("b", [("x", "y")])``, in linear time.

    Commas and semicolons inside quoted strings do not separate; text outside ``<...>`` before a target
    is skipped, as is a parameter without ``=``.
    """
    size = len(header)
    pos = 0
    while True:
        start = header.find("<", pos)
        if start < 0:
            return
        end = header.find(">", start + 1)
        if end < 0:
            return
        target = header[start + 1 : end]
        params: list[tuple[str, str]] = []
        pos = end + 1
        # parameters up to the next comma outside quotes: ;name=value;name="quoted, value"
        while pos < size and header[pos] != ",":
            if header[pos] != ";":
                pos += 1
                continue
            pos += 1
            stop = pos
            while stop < size and header[stop] not in ";,=":
                stop += 1
            name = header[pos:stop].strip()
            value = ""
            if stop < size and header[stop] == "=":
                pos = stop + 1
                while pos < size and header[pos] in " \t":
                    pos += 1
                if pos < size and header[pos] == '"':
                    close = header.find('"', pos + 1)
                    close = size if close < 0 else close
                    value = header[pos + 1 : close]
                    pos = close + 1
                else:
                    stop = pos
                    while stop < size and header[stop] not in ";,":
                        stop += 1
                    value = header[pos:stop].strip()
                    pos = stop
                if name:
                    params.append((name, value))
            else:
                pos = stop
        pos += 1
        yield target, params


async def _gather(coroutines: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run concurrently; on the first failure cancel the rest and raise that failure itself."""
    tasks: list[asyncio.Task[T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in coroutines:
                tasks.append(group.create_task(coroutine))
    except BaseExceptionGroup as group_error:
        first = group_error.exceptions[0]
        for exc in group_error.exceptions:
            if not isinstance(exc, asyncio.CancelledError):
                first = exc
                break
        raise first from None
    return [task.result() for task in tasks]


class RegistryClient:
    """Async client for every registry a pass talks to; use as ``async with RegistryClient(...) as c``.

    - ``options``: the config's ``registries`` entries (an image none covers gets secure defaults).
    - ``cache``: the persistent ``MetadataCache`` (default: an in-memory one for this client only).
    - ``docker_config``: the Docker config file (default ``$DOCKER_CONFIG/config.json`` or
      ``~/.docker/config.json``).
    - ``retry``/``limits``: retry schedule and response size caps.
    - ``on_request(registry, status)``: called once per HTTP exchange, ``status`` an int or a failure kind
      (``"timeout"``, ``"connect_error"``, ``"network_error"``, ``"tls_error"``), for metrics and tests.
    - ``tag_ttl``: seconds a cached tag -> digest mapping is trusted before one ``HEAD`` re-checks it.
    - ``tags_max_age``: seconds a cached tag list may be reused instead of asking (0: always ask).
    - ``docker_hub_api``: read Docker Hub metadata from hub.docker.com's tags API (manifest GETs are pulls).
    """

    def __init__(
        self,
        options: Sequence[RegistryOptions] = (),
        *,
        cache: MetadataCache | None = None,
        docker_config: str | os.PathLike[str] | None = None,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen value
        limits: BodyLimits = BodyLimits(),  # noqa: B008 - frozen value
        on_request: Observer | None = None,
        transport: Transport | None = None,
        tag_ttl: float = 3600.0,
        tags_max_age: float = 0.0,
        docker_hub_api: bool = True,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._own_cache = cache is None
        self.cache = cache if cache is not None else MetadataCache(None)
        self._session = Session(
            options, docker_config=docker_config, retry=retry, limits=limits, on_request=on_request,
            transport=transport, sleep=sleep,
        )
        self._tag_ttl = tag_ttl
        self._tags_max_age = tags_max_age
        self._pass_tags: dict[str, list[str]] | None = None  # tag lists of the pass under way (one_pass)
        self._docker_hub_api = docker_hub_api
        self._clock = clock
        self._inflight: dict[tuple[str, ...], asyncio.Future[Any]] = {}
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._session.aclose()
        if self._own_cache:
            self.cache.close()

    # -- public API ------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def fresh_tags(self) -> Iterator[None]:
        """Within this block (in this task only) tag lists are asked for even when ``tags_max_age`` would
        reuse a cached one: a webhook-triggered pass must see the tag that was just pushed."""
        token = _FRESH_TAGS.set(True)
        try:
            yield
        finally:
            _FRESH_TAGS.reset(token)

    @contextlib.contextmanager
    def one_pass(self) -> Iterator[None]:
        """Within this block each image's tag list is asked for once, however many sources (and retries
        after a rejected push) resolve it: one pass, one answer per image. Blocks may nest."""
        outer = self._pass_tags
        if outer is None:
            self._pass_tags = {}
        try:
            yield
        finally:
            if outer is None:
                self._pass_tags = None

    async def list_tags(self, image: str) -> list[str]:
        """All tags of ``image`` (``registry/repository``), following ``Link`` pages on the same origin."""
        if self._pass_tags is not None and image in self._pass_tags:
            return list(self._pass_tags[image])
        registry, repository = split_image(image)
        context = context_of(registry, repository)
        if self._tags_max_age > 0 and not _FRESH_TAGS.get():
            cached = self.cache.tags(image)
            if cached is not None and self._clock() - cached[1] < self._tags_max_age:
                return cached[0]
        # sources resolving the same image at the same moment share one tags/list (a webhook's pass its own:
        # one started before the push might not list the pushed tag)
        key = ("tags", image, "fresh" if _FRESH_TAGS.get() else "")
        shared = await self._single_flight(key, lambda: self._fetch_tags(image, repository, context))
        # every caller gets its own copy; the list the single flight shares is never handed out, so the pass
        # may keep it as it is
        if self._pass_tags is not None:
            self._pass_tags[image] = shared
        return list(shared)

    async def _fetch_tags(self, image: str, repository: str, context: str) -> list[str]:
        endpoint = self._session.endpoint(image, context)
        target: str | None = f"/v2/{repository}/tags/list?n=1000"
        seen: set[str] = set()
        tags: dict[str, None] = {}
        limits = self._session.limits
        total = 0
        while target is not None:
            if target in seen or len(seen) >= _MAX_PAGES:
                raise RegistryError(f"{context}: tags/list paging loops or exceeds {_MAX_PAGES} pages")
            seen.add(target)
            page, link, url, size = await self._session.call(
                endpoint, "GET", target, repository=repository, context=context, what="tags/list",
                max_bytes=limits.tags, parse=_parse_tags_page,
            )
            # the page cap bounds one answer; these bound the repository, before anything is kept or cached
            total += size
            if total > limits.tags_total:
                raise RegistryError(
                    f"{context}: tags/list is larger than the {limits.tags_total} bytes we accept for one "
                    f"repository ({len(seen)} pages read); not using it"
                )
            tags.update(dict.fromkeys(page))
            if len(tags) > limits.tag_count:
                raise RegistryError(
                    f"{context}: tags/list has more than the {limits.tag_count} tags we accept for one "
                    f"repository ({len(seen)} pages read); not using it"
                )
            target = None
            if link:
                try:
                    following = url.join(link)
                except InvalidUrl:
                    raise RegistryError(f"{context}: tags/list Link names an invalid URL") from None
                if not endpoint.same_origin(following):
                    raise RegistryError(
                        f"{context}: tags/list Link leads to another origin ({following.host}); not following"
                    )
                target = str(following)
        result = list(tags)
        self.cache.put_tags(image, result, self._clock())
        return result

    async def manifest_digest(self, image: str, reference: str) -> str:
        """The digest ``reference`` (a tag or digest) points to, by ``HEAD`` (not a pull on Docker Hub)."""
        registry, repository = split_image(image)
        context = context_of(registry, repository)
        endpoint = self._session.endpoint(image, context)
        digest = await self._session.call(
            endpoint, "HEAD", f"/v2/{repository}/manifests/{reference}", repository=repository,
            context=context, what=f"manifest {reference}", max_bytes=self._session.limits.manifest,
            accept=ACCEPT_MANIFESTS, parse=lambda answer: answer.headers.get("docker-content-digest"),
        )
        if isinstance(digest, str) and digest:
            return digest
        # Some registries omit the header on HEAD; the digest is then the sha256 of the manifest itself.
        return (await self.get_manifest(image, reference)).digest

    async def get_manifest(self, image: str, reference: str) -> Manifest:
        """The manifest or index ``reference`` names, parsed (platforms, annotation build time, config)."""
        registry, repository = split_image(image)
        context = context_of(registry, repository)
        return await self._manifest(self._session.endpoint(image, context), repository, reference, context)

    async def tag_digest(self, image: str, tag: str) -> str:
        """The digest ``tag`` points to *now* (always asks the registry) and remember it in the cache."""
        digest = await self.manifest_digest(image, tag)
        now = self._clock()
        self.cache.put_tag_digests(image, {tag: TagDigest(digest, now, self._deadline(now))})
        return digest

    async def tag_infos(self, image: str, tags: Iterable[str]) -> dict[str, TagInfo]:
        """Build time, digest and platforms of ``tags``, from the cache where it is still valid.

        Unknown tags cost a manifest and a config read (a third read for an index without a build time
        annotation); cached tags whose deadline passed cost one ``HEAD``. On Docker Hub the Hub tags API
        answers for 100 tags per request instead. A tag that vanished meanwhile gets no metadata.
        """
        registry, repository = split_image(image)
        context = context_of(registry, repository)
        wanted = [t for t in dict.fromkeys(tags) if is_valid_tag(t)]
        now = self._clock()
        known = self.cache.tag_digests(image)
        fresh: dict[str, str] = {}
        stale: list[str] = []
        missing: list[str] = []
        for tag in wanted:
            entry = known.get(tag)
            if entry is None:
                missing.append(tag)
            elif entry.expires_at <= now:
                stale.append(tag)
            else:
                fresh[tag] = entry.digest
        metas = self.cache.digest_meta(image, fresh.values())
        for tag in [t for t, d in fresh.items() if d not in metas]:
            del fresh[tag]
            missing.append(tag)
        found: dict[str, tuple[str | None, DigestMeta]] = {}
        if missing or stale:
            endpoint = self._session.endpoint(image, context)
            todo = missing + stale
            if self._uses_hub_api(registry, endpoint):
                try:
                    found = await self._hub_metadata(image, repository, set(todo), context)
                except (RegistryAuthError, RepositoryNotFound) as exc:
                    # private repositories are not in the public Hub API; the registry itself still answers
                    log.debug("Docker Hub tags API unusable for %s (%s); asking the registry", image, exc)
                    found = await self._registry_metadata(endpoint, image, missing, stale, known, context)
            else:
                found = await self._registry_metadata(endpoint, image, missing, stale, known, context)
            now = self._clock()
            self.cache.put_tag_digests(
                image,
                {t: TagDigest(d, now, self._deadline(now)) for t, (d, _) in found.items() if d is not None},
            )
            self.cache.put_digest_meta(image, {d: m for d, m in found.values() if d is not None})
        result: dict[str, TagInfo] = {}
        for tag in wanted:
            if tag in fresh:
                digest: str | None = fresh[tag]
                meta: DigestMeta | None = metas[fresh[tag]]
            elif tag in found:
                digest, meta = found[tag]
            else:
                continue
            assert meta is not None
            result[tag] = TagInfo(tag, created=meta.created, digest=digest, platforms=meta.platforms)
        return result

    # -- metadata --------------------------------------------------------------------------------------------

    def _deadline(self, now: float) -> float:
        return now + self._tag_ttl * (1.0 + random.random() * _TTL_SPREAD)

    def _uses_hub_api(self, registry: str, endpoint: Endpoint) -> bool:
        return self._docker_hub_api and registry == DOCKER_HUB and endpoint.options.api_url is None

    async def _registry_metadata(
        self,
        endpoint: Endpoint,
        image: str,
        missing: list[str],
        stale: list[str],
        known: dict[str, TagDigest],
        context: str,
    ) -> dict[str, tuple[str | None, DigestMeta]]:
        async def fetch(tag: str) -> tuple[str, str, DigestMeta] | None:
            repository = split_image(image)[1]
            try:
                manifest = await self._manifest(endpoint, repository, tag, context)
            except RepositoryNotFound:
                return None  # deleted since the tag list was read
            meta = await self._digest_meta(endpoint, image, repository, manifest, context)
            return tag, manifest.digest, meta

        async def revalidate(tag: str) -> tuple[str, str, DigestMeta] | None:
            try:
                digest = await self.manifest_digest(image, tag)
            except RepositoryNotFound:
                return None
            cached = self.cache.digest_meta(image, [digest]).get(digest)
            if cached is not None:
                return tag, digest, cached
            if digest != known[tag].digest:
                log.info("tag moved", extra={"image": image, "old": known[tag].digest, "new": digest})
            return await fetch(tag)

        async def shared(kind: str, tag: str) -> tuple[str, str, DigestMeta] | None:
            # two policies on one image ask for the same tags at the same time: one request serves both
            start = fetch if kind == "fetch" else revalidate
            return await self._single_flight((kind, image, tag), lambda: start(tag))

        jobs = [*(shared("fetch", t) for t in missing), *(shared("check", t) for t in stale)]
        results = await _gather(jobs)
        return {r[0]: (r[1], r[2]) for r in results if r is not None}

    async def _digest_meta(
        self, endpoint: Endpoint, image: str, repository: str, manifest: Manifest, context: str
    ) -> DigestMeta:
        cached = self.cache.digest_meta(image, [manifest.digest]).get(manifest.digest)
        if cached is not None:
            return cached
        return await self._single_flight(
            ("meta", image, manifest.digest),
            lambda: self._read_digest_meta(endpoint, repository, manifest, context),
        )

    async def _read_digest_meta(
        self, endpoint: Endpoint, repository: str, manifest: Manifest, context: str
    ) -> DigestMeta:
        if manifest.is_index:
            created = manifest.created
            if created is None and manifest.children:
                child_digest = _pick_child(manifest.children)
                child = await self._manifest(endpoint, repository, child_digest, context)
                created = child.created
                if child.config_digest is not None:
                    config_created, _ = await self._config(endpoint, repository, child.config_digest, context)
                    created = config_created or created
            return DigestMeta(created, manifest.platforms)
        if manifest.config_digest is not None:
            created, platforms = await self._config(endpoint, repository, manifest.config_digest, context)
            return DigestMeta(created or manifest.created, platforms)
        return DigestMeta(manifest.created, manifest.platforms)

    async def _single_flight(self, key: tuple[str, ...], start: Callable[[], Awaitable[T]]) -> T:
        """Concurrent callers asking for the same thing share one request."""
        pending = self._inflight.get(key)
        if pending is not None:
            result: T = await asyncio.shield(pending)
            return result
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await start()
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            self._inflight.pop(key, None)
        future.set_result(value)
        return value

    async def _manifest(self, endpoint: Endpoint, repository: str, reference: str, context: str) -> Manifest:
        def parse(answer: Answer) -> Manifest:
            body_digest = sha256_digest(answer.body)
            if _SHA256.match(reference) and body_digest != reference:
                raise ValueError("manifest does not match its digest")
            header = answer.headers.get("docker-content-digest")
            # a body that is not what the registry says it is (a tampering proxy, a corrupting cache) must
            # not decide anything; signed schema 1 manifests are hashed without their signatures, so skip them
            media_type = (answer.headers.get("content-type") or "").split(";", 1)[0].strip()
            if header and _SHA256.match(header) and body_digest != header and media_type != _SCHEMA1_SIGNED:
                raise ValueError("manifest does not match its Docker-Content-Digest")
            return parse_manifest(answer.body, answer.headers.get("content-type"), header or body_digest)

        return await self._session.call(
            endpoint, "GET", f"/v2/{repository}/manifests/{reference}", repository=repository,
            context=context, what=f"manifest {reference}", max_bytes=self._session.limits.manifest,
            accept=ACCEPT_MANIFESTS, parse=parse, pull=True,
        )

    async def _config(
        self, endpoint: Endpoint, repository: str, digest: str, context: str
    ) -> tuple[datetime | None, frozenset[str] | None]:
        def parse(answer: Answer) -> tuple[datetime | None, frozenset[str] | None]:
            if _SHA256.match(digest) and sha256_digest(answer.body) != digest:
                raise ValueError("config blob does not match its digest")
            return config_metadata(answer.body)

        return await self._session.call(
            endpoint, "GET", f"/v2/{repository}/blobs/{digest}", repository=repository, context=context,
            what=f"config blob {digest[:19]}", max_bytes=self._session.limits.config, parse=parse,
        )

    async def _hub_metadata(
        self, image: str, repository: str, wanted: set[str], context: str
    ) -> dict[str, tuple[str | None, DigestMeta]]:
        """Push time, digest and platforms from hub.docker.com, newest first, until ``wanted`` is covered."""
        endpoint = self._session.hub_endpoint()
        found: dict[str, tuple[str | None, DigestMeta]] = {}
        query = urlencode({"page_size": 100, "ordering": "last_updated"})
        target: str | None = f"/v2/repositories/{repository}/tags?{query}"
        seen: set[str] = set()
        while target is not None and not wanted <= found.keys():
            if target in seen or len(seen) >= _MAX_PAGES:
                raise RegistryError(f"{context}: Docker Hub tags API paging loops")
            seen.add(target)
            results, following = await self._session.call(
                endpoint, "GET", target, repository=repository, context=context, what="Docker Hub tags API",
                max_bytes=self._session.limits.hub, parse=_parse_hub_page, authenticate=False,
            )
            found.update(results)
            target = None
            if following:
                try:
                    url = Url.parse(DOCKER_HUB_API).join(following)
                except InvalidUrl:
                    raise RegistryError(f"{context}: Docker Hub tags API pages to an invalid URL") from None
                if not endpoint.same_origin(url):
                    raise RegistryError(f"{context}: Docker Hub tags API pages to another origin")
                target = str(url)
        unknown = wanted - found.keys()
        if unknown:
            log.debug("Docker Hub tags API does not list %d tag(s) of %s", len(unknown), image)
        return {tag: value for tag, value in found.items() if tag in wanted}

def _pick_child(children: tuple[tuple[str, str | None], ...]) -> str:
    for digest, platform in children:
        if platform == "linux/amd64":
            return digest
    for digest, platform in children:
        if platform is not None:
            return digest
    return children[0][0]


def _parse_tags_page(answer: Answer) -> tuple[list[str], str | None, Url, int]:
    data = json.loads(answer.body)
    if not isinstance(data, dict):
        raise ValueError("tags/list answer is not a JSON object")
    tags = data.get("tags")
    if tags is None:
        tags = []
    # json.loads makes exact str objects: one set of the types instead of an isinstance call per tag
    if not isinstance(tags, list) or not set(map(type, tags)) <= {str}:
        raise ValueError("tags/list answer has no list of tags")
    return tags, next_link(answer.headers.get("link")), answer.url, len(answer.body)


def _parse_hub_page(answer: Answer) -> tuple[dict[str, tuple[str | None, DigestMeta]], str | None]:
    data = json.loads(answer.body)
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ValueError("Docker Hub tags answer has no results list")
    found: dict[str, tuple[str | None, DigestMeta]] = {}
    for entry in data["results"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        digest = entry.get("digest") if isinstance(entry.get("digest"), str) else None
        pushed = parse_timestamp(entry.get("tag_last_pushed")) or parse_timestamp(entry.get("last_updated"))
        images = entry.get("images")
        platforms = {platform_of(item) for item in images} - {None} if isinstance(images, list) else set()
        meta = DigestMeta(pushed, frozenset(p for p in platforms if p) if platforms else None, "hub")
        found[entry["name"]] = (digest, meta)
    following = data.get("next")
    return found, following if isinstance(following, str) and following else None
