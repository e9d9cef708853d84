"""``resolve`` for policies that read tag names only (image_updater/registry/resolve.py): answered without a
coroutine per key, from the cached decision when the tag list is unchanged, with errors kept per key.

An in-process transport answers ``tags/list``; no registry, no socket.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpcore
import pytest

from image_updater.errors import RegistryError
from image_updater.plan import Resolution, ResolveKey
from image_updater.policies import parse_policy
from image_updater.registry import MetadataCache, RegistryClient, RegistryOptions, resolve

HOST = "127.0.0.1:5998"  # never connected to
# the module, not the function image_updater.registry exports under its name
resolve_module = importlib.import_module("image_updater.registry.resolve")


class Tags:
    """``tags/list`` answers from ``repositories`` (an httpcore stand-in, as the registry client's pools);
    counts them."""

    def __init__(self, repositories: dict[str, list[str]]) -> None:
        self.repositories = repositories
        self.requests = 0

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        self.requests += 1
        path = request.url.target.decode("ascii").partition("?")[0]
        name = path.removeprefix("/v2/").removesuffix("/tags/list")
        body = json.dumps({"name": name, "tags": self.repositories[name]}).encode()
        return httpcore.Response(200, headers=[(b"content-type", b"application/json")], content=body)

    async def aclose(self) -> None:
        pass


def _resolve(
    tmp_path: Path, cache: MetadataCache, transport: Tags, keys: list[ResolveKey]
) -> dict[ResolveKey, Resolution]:
    async def scenario() -> dict[ResolveKey, Resolution]:
        options = [RegistryOptions(prefix=HOST, insecure=True)]
        async with RegistryClient(
            options, cache=cache, transport=transport, docker_config=tmp_path / "no-docker-config.json"
        ) as client:
            return dict(await resolve(client, keys))

    return asyncio.run(scenario())


def key(name: str, policy: str, current: str | None = "1.0.0") -> ResolveKey:
    return ResolveKey(f"{HOST}/{name}", parse_policy(policy), current)


def test_errors_of_the_names_only_path_stay_with_their_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = Tags({"a": ["1.0.0", "1.2.0", "v2.0.0"], "b": ["1.0.0"], "c": ["1.0.0"], "d": ["x", "y"]})
    decide: Callable[[RegistryClient, ResolveKey, list[str], datetime | None], str | None]
    decide = resolve_module._decide

    def failing(client: RegistryClient, k: ResolveKey, tags: list[str], now: datetime | None) -> str | None:
        if k.image.endswith("/b"):
            raise RuntimeError("a bug")
        if k.image.endswith("/c"):
            raise RegistryError(f"registry {HOST}, image c: refused")
        return decide(client, k, tags, now)

    monkeypatch.setattr(resolve_module, "_decide", failing)
    keys = [
        key("a", "semver:^1"), key("a", "semver:*"), key("a", "alphabetical"),  # one image, three keys
        key("b", "semver:*"), key("c", "semver:*"), key("d", "semver:*"), key("d", "alphabetical:desc"),
    ]
    with MetadataCache(None) as cache:
        answers = _resolve(tmp_path, cache, transport, keys)
    assert [answers[k].tag for k in keys] == ["1.2.0", "v2.0.0", "v2.0.0", None, None, None, "x"]
    assert answers[keys[3]].error == f"registry {HOST}, image b: internal error (RuntimeError)"
    assert answers[keys[4]].error == f"registry {HOST}, image c: refused"
    assert [answers[k].error for k in keys if k not in keys[3:5]] == [None] * 5
    assert transport.requests == 4  # one tags/list per image


def test_a_reordered_tag_list_is_ranked_again_to_the_same_answer(tmp_path: Path) -> None:
    tags = [f"1.{i}.0" for i in range(20)] + ["latest", "1.19.0-alpine"]
    transport = Tags({"app": tags})
    semver = key("app", "semver:^1")
    with MetadataCache(tmp_path / "cache.sqlite3") as cache:
        assert _resolve(tmp_path, cache, transport, [semver])[semver].tag == "1.19.0"
        # plant another answer for this very list: an unchanged list reuses the decision, it is not ranked
        cache._db.execute("UPDATE decisions SET chosen = 'planted'")
        cache._db.commit()
        assert _resolve(tmp_path, cache, transport, [semver])[semver].tag == "planted"
        # the same tags in another order: another hash, ranked afresh, the same answer as the first pass
        transport.repositories["app"] = list(reversed(tags))
        assert _resolve(tmp_path, cache, transport, [semver])[semver].tag == "1.19.0"


def test_a_pass_asks_once_per_image_and_every_caller_gets_its_own_list(tmp_path: Path) -> None:
    transport = Tags({"app": ["1.0.0", "1.1.0"]})

    async def scenario() -> list[list[str]]:
        options = [RegistryOptions(prefix=HOST, insecure=True)]
        async with RegistryClient(
            options, transport=transport, docker_config=tmp_path / "no-docker-config.json"
        ) as client:
            with client.one_pass():
                # two at the same moment share one request (single flight), a third later reuses the pass's
                image = f"{HOST}/app"
                first, second = await asyncio.gather(client.list_tags(image), client.list_tags(image))
                first.append("mine")
                second.clear()
                third = await client.list_tags(f"{HOST}/app")
                third.append("also mine")
                return [first, second, third, await client.list_tags(f"{HOST}/app")]

    assert asyncio.run(scenario()) == [["1.0.0", "1.1.0", "mine"], [], ["1.0.0", "1.1.0", "also mine"],
                                       ["1.0.0", "1.1.0"]]
    assert transport.requests == 1
