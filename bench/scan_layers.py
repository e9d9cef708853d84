"""Where the scan's CPU goes, layer by layer (issue 16): the same N tags/list requests, a layer deeper each.

``bench/scan.py`` compares a whole ``resolve`` pass with a bare ``httpx`` baseline; this splits the gap.
Every layer answers N repositories of 100 tags at concurrency 8, through an in-process transport (no sockets,
no registry: what is left is the client's own CPU; an httpx transport for the bare layer, a stand-in for the
registry client's HTTP/1.1 pool for ours), and reports the CPU of each beyond the bare one. In-process, both
skip their pools (httpcore's, ours): ``bench/http_layers.py`` compares them on real sockets.

- ``bare``: ``httpx.AsyncClient.get`` + ``json`` under an ``asyncio.Semaphore`` (the baseline child);
- ``call``: ``Session.call`` (throttle slot, deadline, auth rounds, answer checks, capped body, parse);
- ``list_tags``: ``RegistryClient.list_tags`` in a cache batch (single flight, paging, the tag-list write);
- ``resolve``: a whole ``resolve`` pass of ``semver:^1`` with the cache of the previous run (warm decisions);
- ``resolve_cold``: the same pass with an empty cache file each run (every image ranked, every decision and
  tag list written, the commit at the end included).

``resolve`` and ``resolve_cold`` are both reported over ``list_tags`` too: the issue's targets per repository
are list_tags <= call + 10 us, resolve <= list_tags + 15 us, resolve_cold <= list_tags + 50 us.

    .venv/bin/python bench/scan_layers.py [--repos 2000] [--runs 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import AsyncIterator, Callable  # noqa: E402

import httpx  # noqa: E402

from image_updater.plan import ResolveKey  # noqa: E402
from image_updater.policies import parse_policy  # noqa: E402
from image_updater.registry import MetadataCache, RegistryClient, RegistryOptions, resolve  # noqa: E402
from image_updater.registry.client import _parse_tags_page  # noqa: E402
from image_updater.registry.options import split_image  # noqa: E402
from image_updater.registry.session import context_of  # noqa: E402

HOST = "127.0.0.1:5999"  # never connected to: the transport below answers
CONCURRENCY = 8
LAYERS = ("bare", "call", "list_tags", "resolve", "resolve_cold")


HEADERS = {"content-type": "application/json", "docker-distribution-api-version": "registry/2.0",
           "date": "Wed, 02 Dec 2026 16:00:00 GMT", "x-content-type-options": "nosniff"}


class _Bodies:
    def __init__(self) -> None:
        self._bodies: dict[str, bytes] = {}

    def body(self, path: str) -> bytes:
        name = path.removeprefix("/v2/").removesuffix("/tags/list")
        body = self._bodies.get(name)
        if body is None:
            body = json.dumps({"name": name, "tags": [f"1.{i}.0" for i in range(100)]}).encode()
            self._bodies[name] = body
        return body


class TagsTransport(httpx.AsyncBaseTransport):
    """For httpx (the bare layer): every tags/list answers 100 tags with the headers distribution sends;
    yields once, as I/O would."""

    def __init__(self) -> None:
        self._bodies = _Bodies()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)
        return httpx.Response(200, content=self._bodies.body(request.url.path), headers=HEADERS)


class _Answer:
    """An answer whose head is read, as ``http11.Response`` gives it (``wire.RawResponse``)."""

    def __init__(self, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = 200
        self.headers = headers
        self._body = body

    async def aiter_stream(self) -> AsyncIterator[bytes]:
        yield self._body

    async def aclose(self) -> None:
        pass


class PoolTagsTransport:
    """The same answers for the registry client, in its pool's calls (``wire.Requester``)."""

    def __init__(self) -> None:
        self._bodies = _Bodies()
        self._headers = [(name.encode(), value.encode()) for name, value in HEADERS.items()]

    async def request(
        self, method: bytes, scheme: str, host: str, port: int, target: str,
        headers: list[tuple[bytes, bytes]], content: bytes | None, seconds: float,
    ) -> _Answer:
        await asyncio.sleep(0)
        return _Answer(self._headers, self._bodies.body(target.partition("?")[0]))

    async def aclose(self) -> None:
        pass


async def layer(mode: str, repos: int, cache_file: Path) -> float:
    names = [f"bench/app-{i:04d}" for i in range(repos)]
    if mode == "bare":
        semaphore = asyncio.Semaphore(CONCURRENCY)
        async with httpx.AsyncClient(timeout=30.0, transport=TagsTransport()) as bare:
            async def get(name: str) -> None:
                async with semaphore:
                    response = await bare.get(f"http://{HOST}/v2/{name}/tags/list?n=1000")
                response.json()["tags"]

            cpu = time.process_time()
            await asyncio.gather(*(get(name) for name in names))
            return time.process_time() - cpu
    options = [RegistryOptions(prefix=HOST, insecure=True, max_concurrency=CONCURRENCY)]
    images = [f"{HOST}/{name}" for name in names]
    with MetadataCache(cache_file) as cache:
        async with RegistryClient(options, cache=cache, transport=PoolTagsTransport(),
                                  docker_config=cache_file.with_name("no-docker-config.json")) as client:
            session = client._session

            async def call(image: str) -> None:
                registry, repository = split_image(image)
                context = context_of(registry, repository)
                await session.call(
                    session.endpoint(image, context), "GET", f"/v2/{repository}/tags/list?n=1000",
                    repository=repository, context=context, what="tags/list", max_bytes=session.limits.tags,
                    parse=_parse_tags_page,
                )

            cpu = time.process_time()
            if mode == "call":
                await asyncio.gather(*(call(image) for image in images))
            elif mode == "list_tags":
                with cache.batch():
                    await asyncio.gather(*(client.list_tags(image) for image in images))
            else:  # resolve, resolve_cold: the same pass; the cache file decides which
                policy = parse_policy("semver:^1")
                await resolve(client, [ResolveKey(image, policy, "1.0.0") for image in images])
            return time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repos", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-gc", action="store_true", help="disable the cyclic GC (to see its share)")
    args = parser.parse_args()
    if args.no_gc:
        gc.disable()
    results: dict[str, list[float]] = {mode: [] for mode in LAYERS}
    with tempfile.TemporaryDirectory() as tmp:
        cache_file = Path(tmp) / "cache.sqlite3"
        for run in range(args.runs + 1):  # the first round warms the cache file and the interpreter
            for mode in LAYERS:
                if mode == "resolve_cold":
                    cold = Path(tmp) / f"cold-{run}" / "cache.sqlite3"
                    cold.parent.mkdir()
                    results[mode].append(asyncio.run(layer(mode, args.repos, cold)))
                else:
                    results[mode].append(asyncio.run(layer(mode, args.repos, cache_file)))
    median: Callable[[list[float]], float] = lambda runs: statistics.median(runs[1:])  # noqa: E731
    bare = median(results["bare"])
    previous = bare
    for mode in LAYERS:
        cpu = median(results[mode])
        over_bare = (cpu - bare) / args.repos * 1e6
        over_above = (cpu - previous) / args.repos * 1e6
        line = (f"{mode:12s} CPU {cpu:.3f} s   per repository: {over_bare:6.1f} us over bare, "
                f"{over_above:6.1f} us over the layer above")
        if mode.startswith("resolve"):
            over_list = (cpu - median(results["list_tags"])) / args.repos * 1e6
            line += f", {over_list:6.1f} us over list_tags"
        print(line)
        if mode != "resolve":  # resolve_cold is the same pass as resolve: both are compared to list_tags
            previous = cpu


if __name__ == "__main__":
    main()
