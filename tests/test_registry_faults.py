"""What no local registry can play, through respx: Docker Hub (token realm, ``library/``, the Hub tags API,
``ratelimit-remaining``), GHCR and Quay ``Link`` paging, 429 with ``Retry-After``, 5xx then success, timeouts,
truncated and undecodable answers, oversized bodies, blob redirects to another host, identity tokens, and the
rule that every error names its registry and image and never carries a secret.

Retry waits go through a recording ``sleep``, so nothing here waits for real.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpcore
import httpx
import pytest
import respx

from image_updater.errors import RegistryError, TransientRegistryError
from image_updater.plan import Resolution, ResolveKey
from image_updater.policies import parse_policy
from image_updater.references import parse_reference
from image_updater.registry import BodyLimits, RegistryClient, RegistryOptions, RetryPolicy, resolve

T = TypeVar("T")
CANARY = "canary-S3cret-91ab"
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client_for(tmp_path: Path, *options: RegistryOptions, **kwargs: Any) -> RegistryClient:
    """A client whose requests go through an httpcore pool, which respx mocks (the client's own HTTP/1.1 pool
    speaks to real servers only: the other registry tests)."""
    kwargs.setdefault("transport", httpcore.AsyncConnectionPool())
    kwargs.setdefault("docker_config", tmp_path / "no-docker-config.json")
    kwargs.setdefault("retry", RetryPolicy(attempts=4, initial=0.001, maximum=0.01))
    kwargs.setdefault("sleep", Sleeps())
    return RegistryClient(options, **kwargs)


def image_of(text: str) -> str:
    return parse_reference(text).name


def tags_answer(tags: list[str], link: str | None = None) -> httpx.Response:
    headers = {"Link": link} if link else {}
    return httpx.Response(200, json={"name": "x", "tags": tags}, headers=headers)


def image_blobs(created: datetime | None, arch: str = "amd64") -> tuple[bytes, bytes, str]:
    """(manifest, config, config digest) of a single-platform OCI image."""
    config: dict[str, Any] = {"os": "linux", "architecture": arch}
    if created is not None:
        config["created"] = created.isoformat().replace("+00:00", "Z")
    config_body = json.dumps(config).encode()
    config_digest = "sha256:" + hashlib.sha256(config_body).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config_body)},
        "layers": [],
    }).encode()
    return manifest, config_body, config_digest


def sha(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def key(image: str, policy: str, current: str | None = None, **modifiers: Any) -> ResolveKey:
    return ResolveKey(image, parse_policy(policy, modifiers or None), current)


async def resolve_one(client: RegistryClient, k: ResolveKey) -> Resolution:
    return (await resolve(client, [k]))[k]


# --------------------------------------------------------------------------------------------- Docker Hub

HUB_CHALLENGE = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'


def hub_registry(
    mock: respx.MockRouter, tags: list[str], *, manifests: bool = True
) -> dict[str, list[httpx.Request]]:
    """registry-1.docker.io behind auth.docker.io's anonymous tokens; records what was asked.

    With ``manifests``, every manifest HEAD/GET answers a made-up digest (for tests that must not get there).
    """
    seen: dict[str, list[httpx.Request]] = {"token": [], "tags": [], "manifest_get": [], "manifest_head": []}

    def token(request: httpx.Request) -> httpx.Response:
        seen["token"].append(request)
        assert request.url.params["service"] == "registry.docker.io"
        return httpx.Response(200, json={"token": "hub-token", "expires_in": 300})

    def authorised(request: httpx.Request) -> bool:
        return bool(request.headers.get("Authorization") == "Bearer hub-token")

    def tags_list(request: httpx.Request) -> httpx.Response:
        seen["tags"].append(request)
        if not authorised(request):
            return httpx.Response(401, headers={"WWW-Authenticate": HUB_CHALLENGE})
        return tags_answer(tags)

    def manifest(request: httpx.Request) -> httpx.Response:
        seen["manifest_head" if request.method == "HEAD" else "manifest_get"].append(request)
        if not authorised(request):
            return httpx.Response(401, headers={"WWW-Authenticate": HUB_CHALLENGE})
        tag = request.url.path.rsplit("/", 1)[1]
        return httpx.Response(200, headers={"Docker-Content-Digest": f"sha256:{tag * 64}"[:71]})

    mock.get("https://auth.docker.io/token").mock(side_effect=token)
    mock.get(url__regex=r"https://registry-1\.docker\.io/v2/.+/tags/list").mock(side_effect=tags_list)
    if manifests:
        mock.route(url__regex=r"https://registry-1\.docker\.io/v2/.+/manifests/.+").mock(side_effect=manifest)
    return seen


def hub_api_page(results: list[dict[str, Any]], following: str | None) -> httpx.Response:
    return httpx.Response(200, json={"count": 3, "next": following, "results": results})


def hub_tag(name: str, pushed: datetime, digest: str, *archs: str) -> dict[str, Any]:
    return {
        "name": name, "digest": digest, "tag_last_pushed": pushed.isoformat().replace("+00:00", "Z"),
        "last_updated": pushed.isoformat(),
        "images": [{"os": "linux", "architecture": a, "variant": None} for a in archs]
        + [{"os": "unknown", "architecture": "unknown"}],
    }


def test_docker_hub_token_realm_library_and_hub_tags_api(tmp_path: Path) -> None:
    image = image_of("nginx")
    assert image == "docker.io/library/nginx"
    pages: list[httpx.Request] = []
    with respx.mock(assert_all_called=False) as mock:
        seen = hub_registry(mock, ["1.25", "1.27-alpine", "1.27", "mainline"])

        def hub_api(request: httpx.Request) -> httpx.Response:
            pages.append(request)
            if "page=2" not in str(request.url):
                assert request.url.params["page_size"] == "100"
                assert request.url.params["ordering"] == "last_updated"
                return hub_api_page(
                    [hub_tag("mainline", T0 + timedelta(days=3), "sha256:" + "3" * 64, "amd64", "arm64"),
                     hub_tag("1.27", T0 + timedelta(days=2), "sha256:" + "2" * 64, "amd64")],
                    "https://hub.docker.com/v2/repositories/library/nginx/tags?page=2&page_size=100"
                    "&ordering=last_updated",
                )
            return hub_api_page(
                [hub_tag("1.27-alpine", T0 + timedelta(days=1), "sha256:" + "4" * 64, "amd64"),
                 hub_tag("1.25", T0, "sha256:" + "1" * 64, "amd64")], None,
            )

        mock.get(url__regex=r"https://hub\.docker\.com/v2/repositories/library/nginx/tags.*").mock(
            side_effect=hub_api
        )

        async def scenario() -> dict[ResolveKey, Resolution]:
            async with client_for(tmp_path) as client:
                return await resolve(client, [
                    key(image, "newest"), key(image, "glob:1.*", "1.25"),
                    key(image, "semver:*", "1.25", platforms=["linux/arm64"]),
                ])

        results = run(scenario())

    assert results[key(image, "newest")].tag == "mainline"
    assert results[key(image, "glob:1.*", "1.25")] == Resolution(tag="1.27", created=T0 + timedelta(days=2))
    assert results[key(image, "semver:*", "1.25", platforms=["linux/arm64"])].tag is None  # no arm64 build
    assert seen["manifest_get"] == []  # manifest GETs count as pulls on Docker Hub: none at all
    assert len(seen["tags"]) == 2  # one 401, then with the token
    assert len(seen["token"]) == 1
    assert seen["token"][0].url.params["scope"] == "repository:library/nginx:pull"
    assert all("Authorization" not in request.headers for request in pages)  # the public Hub API is anonymous


def test_docker_hub_pin_digest_uses_head_and_private_repos_fall_back(tmp_path: Path) -> None:
    image = image_of("acme/private")
    manifest, config, config_digest = image_blobs(T0)
    with respx.mock(assert_all_called=False) as mock:
        seen = hub_registry(mock, ["1.0"], manifests=False)
        mock.get(url__regex=r"https://hub\.docker\.com/.*").mock(return_value=httpx.Response(404))
        gets: list[httpx.Request] = []

        def manifest_get(request: httpx.Request) -> httpx.Response:
            if request.method == "HEAD":
                seen["manifest_head"].append(request)
                return httpx.Response(200, headers={"Docker-Content-Digest": sha(manifest)})
            gets.append(request)
            return httpx.Response(200, content=manifest, headers={"Content-Type": OCI_MANIFEST})

        mock.route(url__regex=r"https://registry-1\.docker\.io/v2/acme/private/manifests/.+").mock(
            side_effect=manifest_get
        )
        mock.get(f"https://registry-1.docker.io/v2/acme/private/blobs/{config_digest}").mock(
            return_value=httpx.Response(200, content=config)
        )

        async def scenario() -> tuple[Resolution, Resolution]:
            async with client_for(tmp_path) as client:
                pinned = await resolve_one(client, key(image, "semver:*", "1.0", pin_digest=True))
                newest = await resolve_one(client, key(image, "newest"))
                return pinned, newest

        pinned, newest = run(scenario())
    assert pinned == Resolution(tag="1.0", digest=sha(manifest))
    assert len(seen["manifest_head"]) == 1
    assert newest == Resolution(tag="1.0", created=T0)  # the Hub API 404s for private repositories
    assert len(gets) == 1


def test_docker_hub_pull_budget_slows_down_before_a_429(tmp_path: Path) -> None:
    image = image_of("library/redis")
    bodies = {tag: image_blobs(T0 + timedelta(hours=i)) for i, tag in enumerate(["a", "b", "c"])}
    manifest_gets: list[str] = []
    with respx.mock(assert_all_called=False) as mock:
        hub_registry(mock, list(bodies), manifests=False)

        def manifest(request: httpx.Request) -> httpx.Response:
            tag = request.url.path.rsplit("/", 1)[1]
            manifest_gets.append(tag)
            return httpx.Response(200, content=bodies[tag][0], headers={
                "Content-Type": OCI_MANIFEST, "ratelimit-limit": "100;w=21600",
                "ratelimit-remaining": "1;w=21600",
            })

        mock.get(url__regex=r"https://registry-1\.docker\.io/v2/library/redis/manifests/.+").mock(
            side_effect=manifest
        )
        for _, config, digest in bodies.values():
            mock.get(f"https://registry-1.docker.io/v2/library/redis/blobs/{digest}").mock(
                return_value=httpx.Response(200, content=config)
            )
        sleeps = Sleeps()

        async def scenario() -> Resolution:
            options = RegistryOptions(prefix="docker.io", max_concurrency=1)
            async with client_for(tmp_path, options, docker_hub_api=False, sleep=sleeps) as client:
                return await resolve_one(client, key(image, "glob:*"))

        resolution = run(scenario())
    assert len(manifest_gets) == 1  # the first answer said 1 pull was left: the rest are not spent
    assert resolution.error is not None and "pull rate limit" in resolution.error
    assert "docker.io" in resolution.error and "library/redis" in resolution.error
    assert all(wait < 60 for wait in sleeps.waits)  # deferred to a later pass, not waited for


# ------------------------------------------------------------------------------------------- Link paging


def test_ghcr_link_paging_relative_and_absolute(tmp_path: Path) -> None:
    challenge = 'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:org/app:pull"'
    asked: list[str] = []

    def tags_list(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        if request.headers.get("Authorization") != "Bearer ghcr-token":
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        last = request.url.params.get("last")
        if last is None:
            return tags_answer(["1.0.0", "1.1.0"], '</v2/org/app/tags/list?last=1.1.0&n=1000>; rel="next"')
        if last == "1.1.0":
            return tags_answer(["1.2.0", "2.0.0"],
                               '<https://ghcr.io/v2/org/app/tags/list?last=2.0.0&n=1000>; rel="next"')
        return tags_answer(["2.1.0"])

    with respx.mock(assert_all_called=True) as mock:
        mock.get("https://ghcr.io/token").mock(
            return_value=httpx.Response(200, json={"token": "ghcr-token"})
        )
        mock.get(url__regex=r"https://ghcr\.io/v2/org/app/tags/list.*").mock(side_effect=tags_list)

        async def scenario() -> list[str]:
            async with client_for(tmp_path) as client:
                return await client.list_tags("ghcr.io/org/app")

        assert run(scenario()) == ["1.0.0", "1.1.0", "1.2.0", "2.0.0", "2.1.0"]
    assert asked[0] == "https://ghcr.io/v2/org/app/tags/list?n=1000"
    assert len(asked) == 4


def test_quay_next_page_links(tmp_path: Path) -> None:
    def tags_list(request: httpx.Request) -> httpx.Response:
        page = request.url.params.get("next_page")
        if page is None:
            return tags_answer([f"v{i}" for i in range(50)],
                               '</v2/org/app/tags/list?n=50&next_page=gAAAAB1>; rel="next"')
        assert page == "gAAAAB1"
        return tags_answer(["v50"])

    with respx.mock() as mock:
        mock.get(url__regex=r"https://quay\.io/v2/org/app/tags/list.*").mock(side_effect=tags_list)

        async def scenario() -> list[str]:
            async with client_for(tmp_path) as client:
                return await client.list_tags("quay.io/org/app")

        assert run(scenario()) == [f"v{i}" for i in range(51)]


@pytest.mark.parametrize(
    ("link", "message"),
    [
        ('<https://evil.example.com/v2/org/app/tags/list?last=b>; rel="next"', "another origin"),
        ('<http://quay.io/v2/org/app/tags/list?last=b>; rel="next"', "another origin"),
        ('</v2/org/app/tags/list?n=1000>; rel="next"', "loops"),
    ],
)
def test_link_to_another_origin_or_in_a_loop_is_an_error(tmp_path: Path, link: str, message: str) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(url__regex=r"https://quay\.io/v2/org/app/tags/list.*").mock(
            return_value=tags_answer(["a"], link)
        )
        evil = mock.get(host="evil.example.com")

        async def scenario() -> list[str]:
            async with client_for(tmp_path) as client:
                return await client.list_tags("quay.io/org/app")

        with pytest.raises(RegistryError, match=message) as caught:
            run(scenario())
        assert not evil.called
    assert "registry quay.io, image org/app" in str(caught.value)


# ------------------------------------------------------------------------------------------ retries, faults


def test_429_honours_retry_after(tmp_path: Path) -> None:
    sleeps = Sleeps()
    with respx.mock() as mock:
        route = mock.get(url__regex=r"https://r\.example\.com/v2/a/tags/list.*").mock(side_effect=[
            httpx.Response(429, headers={"Retry-After": "7"}),
            tags_answer(["1"]),
        ])

        async def scenario() -> list[str]:
            async with client_for(tmp_path, sleep=sleeps) as client:
                return await client.list_tags("r.example.com/a")

        assert run(scenario()) == ["1"]
        assert route.call_count == 2
    assert 7.0 in sleeps.waits


def test_429_with_retry_after_beyond_the_budget_fails_at_once(tmp_path: Path) -> None:
    sleeps = Sleeps()
    with respx.mock() as mock:
        route = mock.get(url__regex=r"https://r\.example\.com/v2/a/tags/list.*").mock(
            return_value=httpx.Response(429, headers={"Retry-After": "3600"})
        )

        async def scenario() -> list[str]:
            async with client_for(tmp_path, sleep=sleeps) as client:
                return await client.list_tags("r.example.com/a")

        with pytest.raises(TransientRegistryError, match="429") as caught:
            run(scenario())
        assert route.call_count == 1
    assert sleeps.waits == []
    assert "registry r.example.com, image a" in str(caught.value)


def test_5xx_then_success(tmp_path: Path) -> None:
    with respx.mock() as mock:
        route = mock.get(url__regex=r"https://r\.example\.com/v2/a/tags/list.*").mock(side_effect=[
            httpx.Response(500), httpx.Response(502), httpx.Response(503), tags_answer(["1"]),
        ])

        async def scenario() -> list[str]:
            async with client_for(tmp_path) as client:
                return await client.list_tags("r.example.com/a")

        assert run(scenario()) == ["1"]
        assert route.call_count == 4


def test_5xx_until_retries_run_out(tmp_path: Path) -> None:
    sleeps = Sleeps()
    with respx.mock() as mock:
        route = mock.get(url__regex=r"https://r\.example\.com/v2/a/tags/list.*").mock(
            return_value=httpx.Response(503)
        )

        async def scenario() -> list[str]:
            async with client_for(tmp_path, sleep=sleeps, retry=RetryPolicy(3, 0.5, 8.0)) as client:
                return await client.list_tags("r.example.com/a")

        expected = re.escape("registry r.example.com, image a: tags/list answered 503")
        with pytest.raises(TransientRegistryError, match=expected):
            run(scenario())
        assert route.call_count == 3
    # exponential, jittered: the second wait starts higher than the first may end
    assert len(sleeps.waits) == 2 and 0.5 <= sleeps.waits[0] <= 1.0 <= sleeps.waits[1] <= 1.5


@pytest.mark.parametrize(
    "fault",
    [
        # what httpcore (under the registry client) raises for each
        httpcore.ReadTimeout("read timed out"),
        httpcore.RemoteProtocolError("peer closed connection without sending complete message body"),
        httpcore.ReadError("connection reset by peer"),
    ],
    ids=["timeout", "closed-early", "reset"],
)
def test_transport_faults_are_retried(tmp_path: Path, fault: Exception) -> None:
    with respx.mock() as mock:
        route = mock.get(url__regex=r"https://r\.example\.com/v2/a/tags/list.*").mock(
            side_effect=[fault, tags_answer(["1"])]
        )

        async def scenario() -> list[str]:
            async with client_for(tmp_path) as client:
                return await client.list_tags("r.example.com/a")

        assert run(scenario()) == ["1"]
        assert route.call_count == 2


class Chunks(httpx.AsyncByteStream):
    """A body sent in chunks; optionally the connection dies after some of them."""

    def __init__(self, chunk: bytes, count: int, *, fail_after: int | None = None) -> None:
        self.chunk, self.count, self.fail_after = chunk, count, fail_after
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            if self.fail_after is not None and self.sent >= self.fail_after:
                raise httpcore.RemoteProtocolError("peer closed connection without a complete message body")
            self.sent += 1
            yield self.chunk


def test_truncated_body_is_retried(tmp_path: Path) -> None:
    cut = Chunks(b'{"name": "a", "tags": ["1", ', 3, fail_after=1)
    with respx.mock() as mock:
        mock.get(url__regex=r"https://r\.example\.com/v2/a/tags/list.*").mock(side_effect=[
            httpx.Response(200, stream=cut), tags_answer(["1", "2"]),
        ])

        async def scenario() -> list[str]:
            async with client_for(tmp_path) as client:
                return await client.list_tags("r.example.com/a")

        assert run(scenario()) == ["1", "2"]


@pytest.mark.parametrize(
    "body", [b'{"name": "a", "tags": ["1"', b"<html>proxy error</html>", b'{"tags": "1"}', b"\xff\xfe"],
    ids=["truncated-json", "html", "wrong-shape", "binary"],
)
def test_undecodable_200_is_retried_then_an_error_for_that_image(tmp_path: Path, body: bytes) -> None:
    with respx.mock() as mock:
        mock.get(url__regex=r"https://r\.example\.com/v2/bad/tags/list.*").mock(
            return_value=httpx.Response(200, content=body)
        )
        route = mock.get(url__regex=r"https://r\.example\.com/v2/good/tags/list.*").mock(
            side_effect=[httpx.Response(200, content=body), tags_answer(["1.0.0"])]
        )

        async def scenario() -> dict[ResolveKey, Resolution]:
            async with client_for(tmp_path) as client:
                return await resolve(client, [key("r.example.com/bad", "semver:*"),
                                              key("r.example.com/good", "semver:*")])

        results = run(scenario())
        assert route.call_count == 2
    assert results[key("r.example.com/good", "semver:*")] == Resolution(tag="1.0.0")
    error = results[key("r.example.com/bad", "semver:*")].error
    assert error is not None and "registry r.example.com, image bad" in error and "undecodable" in error
    assert "proxy error" not in error  # the body is not quoted back


def test_50_mb_body_is_capped(tmp_path: Path) -> None:
    streamed = Chunks(b"x" * (1024 * 1024), 50)
    with respx.mock() as mock:
        mock.get(url__regex=r"https://r\.example\.com/v2/streamed/tags/list.*").mock(
            return_value=httpx.Response(200, stream=streamed)
        )
        declared = mock.get(url__regex=r"https://r\.example\.com/v2/declared/tags/list.*").mock(
            return_value=httpx.Response(200, content=b"x" * (50 * 1024 * 1024))
        )

        async def scenario(name: str) -> list[str]:
            async with client_for(tmp_path, limits=BodyLimits(tags=4 * 1024 * 1024)) as client:
                return await client.list_tags(f"r.example.com/{name}")

        for name in ("streamed", "declared"):
            with pytest.raises(RegistryError, match="bytes") as caught:
                run(scenario(name))
            assert not isinstance(caught.value, TransientRegistryError)  # not worth retrying
            assert f"registry r.example.com, image {name}" in str(caught.value)
        assert declared.call_count == 1
    assert streamed.sent <= 5  # stopped reading soon after the cap


def test_permanent_4xx_is_not_retried(tmp_path: Path) -> None:
    with respx.mock() as mock:
        route = mock.get(url__regex=r"https://r\.example\.com/v2/a/tags/list.*").mock(
            return_value=httpx.Response(403)
        )

        async def scenario() -> list[str]:
            async with client_for(tmp_path) as client:
                return await client.list_tags("r.example.com/a")

        with pytest.raises(RegistryError, match="403 Forbidden"):
            run(scenario())
        assert route.call_count == 1


def test_unreachable_registry_stops_trying_for_the_pass(tmp_path: Path) -> None:
    with respx.mock() as mock:
        refused = httpcore.ConnectError("connection refused")
        route = mock.get(host="down.example.com").mock(side_effect=refused)

        async def scenario() -> dict[ResolveKey, Resolution]:
            options = RegistryOptions(prefix="down.example.com", max_concurrency=1)
            async with client_for(tmp_path, options, retry=RetryPolicy(3, 0.001, 0.01)) as client:
                return await resolve(client, [key(f"down.example.com/app{i}", "semver:*") for i in range(5)])

        results = run(scenario())
        assert route.call_count == 3  # one image's attempts; the other four fail without a request
    for i in range(5):
        error = results[key(f"down.example.com/app{i}", "semver:*")].error
        assert error is not None and "down.example.com" in error and f"app{i}" in error


def test_secure_by_default_for_other_registries(tmp_path: Path) -> None:
    with respx.mock() as mock:
        https = mock.get(url__regex=r"https://reg\.example\.com/v2/a/tags/list.*").mock(
            return_value=tags_answer(["1"])
        )
        plain = mock.get(url__regex=r"http://insecure\.example\.com:5000/v2/a/tags/list.*").mock(
            return_value=tags_answer(["2"])
        )

        async def scenario() -> list[list[str]]:
            options = RegistryOptions(prefix="insecure.example.com:5000", insecure=True)
            async with client_for(tmp_path, options) as client:
                return [await client.list_tags("reg.example.com/a"),
                        await client.list_tags("insecure.example.com:5000/a")]

        assert run(scenario()) == [["1"], ["2"]]
        assert https.called and plain.called


# ----------------------------------------------------------------------------------- redirects, auth, secrets


def test_blob_redirect_does_not_forward_authorization(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REG", f"user:{CANARY}")
    manifest, config, config_digest = image_blobs(T0)
    expected = "Basic " + base64.b64encode(f"user:{CANARY}".encode()).decode()
    cdn_requests: list[httpx.Request] = []

    def registry(request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != expected:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        if "/manifests/" in request.url.path:
            return httpx.Response(200, content=manifest, headers={"Content-Type": OCI_MANIFEST})
        return httpx.Response(307, headers={"Location": f"https://cdn.example.net/blob?sig=abc&d={config_digest}"})

    def cdn(request: httpx.Request) -> httpx.Response:
        cdn_requests.append(request)
        return httpx.Response(200, content=config)

    with respx.mock() as mock:
        mock.get(host="r.example.com").mock(side_effect=registry)
        mock.get(host="cdn.example.net").mock(side_effect=cdn)

        async def scenario() -> Any:
            options = RegistryOptions(prefix="r.example.com", credentials="env:REG")
            async with client_for(tmp_path, options) as c:
                return await c.tag_infos("r.example.com/team/app", ["1.0"])

        infos = run(scenario())
    assert infos["1.0"].created == T0
    assert len(cdn_requests) == 1 and "Authorization" not in cdn_requests[0].headers


@pytest.mark.parametrize(
    ("location", "expected"),
    [("http://cdn.example.net/blob", "from HTTPS to plain HTTP (cdn.example.net)"),
     ("file:///etc/passwd", "redirected to a 'file' URL")],
)
def test_redirects_that_weaken_the_request_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, location: str, expected: str
) -> None:
    monkeypatch.setenv("REG", f"user:{CANARY}")
    with respx.mock(assert_all_called=False) as mock:
        mock.get(url__regex=r"https://r\.example\.com/v2/a/tags/list.*").mock(
            return_value=httpx.Response(302, headers={"Location": location})
        )
        cdn = mock.get(host="cdn.example.net").mock(return_value=tags_answer(["1"]))

        async def scenario() -> list[str]:
            options = RegistryOptions(prefix="r.example.com", credentials="env:REG")
            async with client_for(tmp_path, options) as client:
                return await client.list_tags("r.example.com/a")

        with pytest.raises(RegistryError) as caught:
            run(scenario())
    assert not isinstance(caught.value, TransientRegistryError)
    assert expected in str(caught.value) and "registry r.example.com, image a" in str(caught.value)
    assert not cdn.called


def test_a_token_request_body_is_never_redirected_to_another_origin(tmp_path: Path) -> None:
    config = tmp_path / "docker.json"
    config.write_text(json.dumps({"auths": {"r.example.com": {"identitytoken": CANARY}}}))
    challenge = 'Bearer realm="https://r.example.com/oauth",service="r.example.com"'
    with respx.mock(assert_all_called=False) as mock:
        mock.post("https://r.example.com/oauth").mock(
            return_value=httpx.Response(307, headers={"Location": "https://elsewhere.example.net/grab"})
        )
        elsewhere = mock.post(host="elsewhere.example.net").mock(return_value=httpx.Response(200, json={}))
        mock.get(url__regex=r"https://r\.example\.com/v2/a/tags/list.*").mock(
            return_value=httpx.Response(401, headers={"WWW-Authenticate": challenge})
        )

        async def scenario() -> list[str]:
            async with client_for(tmp_path, docker_config=config) as client:
                return await client.list_tags("r.example.com/a")

        with pytest.raises(RegistryError) as caught:
            run(scenario())
    assert "redirected its request body to another origin (elsewhere.example.net)" in str(caught.value)
    assert CANARY not in str(caught.value)
    assert not elsewhere.called


def test_identity_token_uses_the_oauth_refresh_grant(tmp_path: Path) -> None:
    config = tmp_path / "docker.json"
    config.write_text(json.dumps({"auths": {"r.example.com": {"identitytoken": CANARY}}}))
    forms: list[dict[str, list[str]]] = []

    def token(request: httpx.Request) -> httpx.Response:
        from urllib.parse import parse_qs

        forms.append(parse_qs(request.content.decode()))
        return httpx.Response(200, json={"access_token": "oauth-token", "expires_in": 600})

    def tags_list(request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != "Bearer oauth-token":
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://r.example.com/oauth",'
                                                                    'service="r.example.com"'})
        return tags_answer(["1"])

    with respx.mock() as mock:
        mock.post("https://r.example.com/oauth").mock(side_effect=token)
        mock.get(url__regex=r"https://r\.example\.com/v2/a/tags/list.*").mock(side_effect=tags_list)

        async def scenario() -> list[str]:
            async with client_for(tmp_path, docker_config=config) as client:
                return await client.list_tags("r.example.com/a")

        assert run(scenario()) == ["1"]
    [form] = forms
    assert form["grant_type"] == ["refresh_token"] and form["refresh_token"] == [CANARY]
    assert form["scope"] == ["repository:a:pull"] and form["service"] == ["r.example.com"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (httpx.Response(401), "without a WWW-Authenticate"),
        (httpx.Response(401, headers={"WWW-Authenticate": 'Negotiate'}), "unsupported authentication"),
        (httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="ftp://x/token"'}),
         "unusable token realm"),
        (httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="http://auth.example.com/token"'}),
         "plain HTTP"),
    ],
)
def test_auth_failures_name_registry_and_image_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: httpx.Response, expected: str
) -> None:
    monkeypatch.setenv("REG", f"user:{CANARY}")
    with respx.mock() as mock:
        mock.get(url__regex=r"https://r\.example\.com/v2/team/app/tags/list.*").mock(return_value=answer)

        async def scenario() -> Resolution:
            options = RegistryOptions(prefix="r.example.com", credentials="env:REG")
            async with client_for(tmp_path, options) as client:
                return await resolve_one(client, key("r.example.com/team/app", "semver:*"))

        error = run(scenario()).error
    assert error is not None and expected in error
    assert "registry r.example.com, image team/app" in error
    assert CANARY not in error and base64.b64encode(f"user:{CANARY}".encode()).decode() not in error


def test_token_server_failures_never_leak_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REG", f"user:{CANARY}")
    challenge = 'Bearer realm="https://auth.example.com/token",service="r"'
    with respx.mock() as mock:
        mock.get(url__regex=r"https://r\.example\.com/v2/.*").mock(
            return_value=httpx.Response(401, headers={"WWW-Authenticate": challenge})
        )
        token_route = mock.get(url__regex=r"https://auth\.example\.com/token.*")
        outcomes = {
            "refused": httpx.Response(401, json={"details": f"bad password {CANARY}"}),
            "broken": httpx.Response(400, text=f"echo: {CANARY}"),
            "garbage": httpx.Response(200, text=f"<html>{CANARY}</html>"),
        }
        for name, answer in outcomes.items():
            token_route.mock(return_value=answer)

            async def scenario() -> Resolution:
                options = RegistryOptions(prefix="r.example.com", credentials="env:REG")
                async with client_for(tmp_path, options) as client:
                    return await resolve_one(client, key("r.example.com/team/app", "semver:*"))

            error = run(scenario()).error
            assert error is not None, name
            assert "registry r.example.com, image team/app" in error, name
            assert CANARY not in error, name


# ------------------------------------------------------------------------------------- credential helpers


def write_helper(directory: Path, name: str, script: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    helper = directory / f"docker-credential-{name}"
    helper.write_text("#!/bin/sh\n" + script)
    helper.chmod(0o755)


def basic_registry(accept: Callable[[str], bool]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        header = request.headers.get("Authorization", "")
        decoded = base64.b64decode(header[6:]).decode() if header.startswith("Basic ") else ""
        if not accept(decoded):
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        return tags_answer(["1"])

    return handler


def test_credential_helper_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    log = tmp_path / "helper.log"
    write_helper(bin_dir, "test", f"""read server
echo "$1 $server" >> {log}
case "$server" in
  r.example.com) echo '{{"ServerURL": "r.example.com", "Username": "robot", "Secret": "{CANARY}"}}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
""")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credHelpers": {"r.example.com": "test"}, "credsStore": "test"}))
    with respx.mock() as mock:
        mock.get(url__regex=r"https://r\.example\.com/v2/.*").mock(
            side_effect=basic_registry(lambda creds: creds == f"robot:{CANARY}")
        )
        mock.get(url__regex=r"https://public\.example\.com/v2/.*").mock(return_value=tags_answer(["2"]))
        mock.get(url__regex=r"https://other\.example\.com/v2/.*").mock(side_effect=basic_registry(bool))

        async def scenario() -> list[list[str]]:
            async with client_for(tmp_path, docker_config=config) as client:
                found = [await client.list_tags("r.example.com/a"), await client.list_tags("r.example.com/b"),
                         await client.list_tags("public.example.com/c")]
                expected = re.escape("no credentials are configured for other.example.com")
                with pytest.raises(RegistryError, match=expected):
                    await client.list_tags("other.example.com/d")
                return found

        assert run(scenario()) == [["1"], ["1"], ["2"]]
    # credHelpers for r.example.com, asked once (the answer is kept); nothing for a registry that asks for no
    # credentials; the credsStore for the other one, which knows nothing about it
    assert log.read_text().splitlines() == ["get r.example.com", "get other.example.com"]


def test_expiring_helper_credentials_are_read_again_on_401(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    secret = tmp_path / "secret"
    secret.write_text("old-token")
    write_helper(bin_dir, "ecr", f"""read server
printf '{{"Username": "AWS", "Secret": "%s"}}' "$(cat {secret})"
""")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credHelpers": {"123.dkr.ecr.eu-west-1.amazonaws.com": "ecr"}}))
    registry = "123.dkr.ecr.eu-west-1.amazonaws.com"
    with respx.mock() as mock:
        mock.get(url__regex=rf"https://{registry}/v2/.*").mock(
            side_effect=basic_registry(lambda creds: creds == "AWS:new-token")
        )

        async def scenario() -> list[str]:
            async with client_for(tmp_path, docker_config=config) as client:
                with pytest.raises(RegistryError, match="401"):
                    await client.list_tags(f"{registry}/app")
                secret.write_text("new-token")  # the token was renewed behind our back
                return await client.list_tags(f"{registry}/app")

        assert run(scenario()) == ["1"]


def test_docker_hub_credentials_live_under_the_index_key(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    auth = base64.b64encode(f"hubuser:{CANARY}".encode()).decode()
    config.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": auth}}}))
    seen: list[str | None] = []

    def token(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200, json={"token": "hub-token"})

    with respx.mock(assert_all_called=False) as mock:
        hub_registry(mock, ["1"])
        mock.get("https://auth.docker.io/token").mock(side_effect=token)

        async def scenario() -> list[str]:
            async with client_for(tmp_path, docker_config=config) as client:
                return await client.list_tags("docker.io/hubuser/private")

        assert run(scenario()) == ["1"]
    assert seen == ["Basic " + auth]


def test_tags_max_age_reuses_a_fresh_tag_list(tmp_path: Path) -> None:
    clock = [1000.0]
    with respx.mock() as mock:
        route = mock.get(url__regex=r"https://r\.example\.com/v2/a/tags/list.*").mock(
            side_effect=[tags_answer(["1"]), tags_answer(["1", "2"])]
        )

        async def scenario() -> list[list[str]]:
            async with client_for(tmp_path, tags_max_age=60.0, clock=lambda: clock[0]) as client:
                first = await client.list_tags("r.example.com/a")
                clock[0] += 30
                cached = await client.list_tags("r.example.com/a")
                clock[0] += 31
                return [first, cached, await client.list_tags("r.example.com/a")]

        assert run(scenario()) == [["1"], ["1"], ["1", "2"]]
        assert route.call_count == 2
