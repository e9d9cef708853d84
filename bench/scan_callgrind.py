"""Instructions, not seconds, for the scan above the wire (issue 16, round 3): steady on a loaded machine.

One process: a warm cache file first (and every import), then K passes of MODE over N repositories whose
``list_tags`` is replaced by a stand-in that writes the tag list into the cache (``put_tags``) and returns 100
tags, so no HTTP layer takes part: what is counted is the cache and ``resolve``. Run it under callgrind with
K=1 and K=3; (Ir(3) - Ir(1)) / 2 / N is one pass's instructions per repository.

- ``list``: the tag-list writes of a pass in one cache batch (with the commit);
- ``warm``: a ``resolve`` pass of ``semver:^1`` on the cache of the previous pass (decisions reused);
- ``cold``: the same pass on an empty cache file (every image ranked, every decision written).

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/scan_callgrind.py cold 3 200      # prints "Collected : <Ir>"
    (ROOT=/path/to/other/tree to count another tree's image_updater)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# bench/ first on sys.path would shadow the standard library's select with bench/select.py
ROOT = Path(os.environ.get("ROOT") or Path(__file__).resolve().parent.parent)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import asyncio  # noqa: E402
import tempfile  # noqa: E402

from image_updater.plan import ResolveKey  # noqa: E402
from image_updater.policies import parse_policy  # noqa: E402
from image_updater.registry import MetadataCache, RegistryClient, RegistryOptions, resolve  # noqa: E402

TAGS = [f"1.{i}.0" for i in range(100)]
HOST = "127.0.0.1:5999"  # never connected to


async def one_pass(cache: MetadataCache, mode: str, repos: int) -> None:
    options = [RegistryOptions(prefix=HOST, insecure=True)]
    async with RegistryClient(options, cache=cache, docker_config="/nonexistent/config.json") as client:
        async def listed(image: str) -> list[str]:
            await asyncio.sleep(0)
            tags = list(TAGS)
            client.cache.put_tags(image, tags, 1000.0)
            return tags

        client.list_tags = listed  # type: ignore[method-assign]
        policy = parse_policy("semver:^1")
        keys = [ResolveKey(f"{HOST}/bench/app-{i:04d}", policy, "1.0.0") for i in range(repos)]
        if mode == "list":
            with client.cache.batch():
                await asyncio.gather(*(listed(key.image) for key in keys))
        else:
            await resolve(client, keys)


def main() -> None:
    mode, passes, repos = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    assert mode in ("list", "warm", "cold") and 1 <= passes <= 3
    tmp = Path(tempfile.mkdtemp())
    warm = MetadataCache(tmp / "warm.sqlite3")
    asyncio.run(one_pass(warm, mode if mode == "list" else "warm", repos))
    colds = [MetadataCache(tmp / f"cold-{k}.sqlite3") for k in range(3)]  # opened whatever K is
    for k in range(passes):
        asyncio.run(one_pass(colds[k] if mode == "cold" else warm, "warm" if mode == "cold" else mode, repos))


if __name__ == "__main__":
    main()
