"""The registry client against the real distribution registry: anonymous, htpasswd Basic, Bearer tokens from a
token issuer, TLS with a test CA, multi-arch indexes and platform filtering, build-time ordering, digest
tracking, the persistent cache across a restart (with request counts), pacing, and per-image failures."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
from collections import Counter
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpcore
import pytest

from image_updater.errors import RegistryError, RepositoryNotFound
from image_updater.plan import Resolution, ResolveKey
from image_updater.policies import parse_policy
from image_updater.registry import MetadataCache, RegistryClient, RegistryOptions, RetryPolicy, resolve
from tests.fixtures.registry import TOKEN_PASSWORD, TOKEN_USER, RegistryFactory, TokenIssuerFactory
from tests.servers import ImagePusher, RegistryServer, TLSFiles, TokenIssuer

T = TypeVar("T")
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
CANARY = "canary-Pa55word-7f3e"
FAST = RetryPolicy(attempts=3, initial=0.001, maximum=0.01)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


class Requests:
    """Counts what the client's ``on_request`` hook reports."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int | str]] = []

    def __call__(self, registry: str, status: int | str) -> None:
        self.seen.append((registry, status))

    @property
    def count(self) -> int:
        return len(self.seen)

    def statuses(self) -> Counter[int | str]:
        return Counter(status for _, status in self.seen)

    def reset(self) -> None:
        self.seen.clear()


def client_for(tmp_path: Path, *options: RegistryOptions, **kwargs: Any) -> RegistryClient:
    """A client that never reads the real ~/.docker/config.json."""
    kwargs.setdefault("docker_config", tmp_path / "no-docker-config.json")
    kwargs.setdefault("retry", FAST)
    return RegistryClient(options, **kwargs)


def docker_config(tmp_path: Path, host: str, user: str, password: str) -> Path:
    path = tmp_path / "docker" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return path


def key(image: str, policy: str, current: str | None = None, **modifiers: Any) -> ResolveKey:
    return ResolveKey(image, parse_policy(policy, modifiers or None), current)


async def resolve_one(client: RegistryClient, k: ResolveKey) -> Resolution:
    return (await resolve(client, [k]))[k]


# --------------------------------------------------------------------------------------------- anonymous


def test_anonymous_tags_and_semver(registry: RegistryServer, pusher: ImagePusher, tmp_path: Path) -> None:
    pusher.push_many("team/app", ["1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1", "latest", "not a tag"[:3]])
    image = f"{registry.host}/team/app"
    requests = Requests()

    async def scenario() -> tuple[list[str], Resolution]:
        async with client_for(tmp_path, on_request=requests) as client:
            return await client.list_tags(image), await resolve_one(client, key(image, "semver:^1", "1.0.0"))

    tags, resolution = run(scenario())
    assert sorted(tags) == sorted(["1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1", "latest", "not"])
    assert resolution == Resolution(tag="1.10.0")
    # semver needs names only: one tags/list per call, no manifest or config request
    assert requests.statuses() == Counter({200: 2})


def test_missing_repository_is_an_error_for_that_image_only(
    registry: RegistryServer, pusher: ImagePusher, tmp_path: Path
) -> None:
    pusher.push("team/ok", "1.0.0")
    good, bad = key(f"{registry.host}/team/ok", "semver:*"), key(f"{registry.host}/team/missing", "semver:*")

    async def scenario() -> dict[ResolveKey, Resolution]:
        async with client_for(tmp_path) as client:
            return await resolve(client, [good, bad])

    results = run(scenario())
    assert results[good] == Resolution(tag="1.0.0")
    error = results[bad].error
    assert error is not None and registry.host in error and "team/missing" in error and "404" in error

    async def direct() -> None:
        async with client_for(tmp_path) as client:
            await client.list_tags(f"{registry.host}/team/missing")

    with pytest.raises(RepositoryNotFound):
        run(direct())


def test_keys_of_one_image_share_its_tag_list_and_its_failure(
    registry: RegistryServer, pusher: ImagePusher, tmp_path: Path
) -> None:
    pusher.push_many("team/app", ["1.0.0", "1.1.0", "2.0.0"])
    app, missing = f"{registry.host}/team/app", f"{registry.host}/team/missing"
    keys = [key(app, "semver:^1", "1.0.0"), key(app, "semver:*", "1.0.0"), key(app, "alphabetical", None),
            key(missing, "semver:*"), key(missing, "semver:^1", "1.0.0"), key(app, "semver:^1", "1.0.0")]
    requests = Requests()

    async def scenario() -> dict[ResolveKey, Resolution]:
        async with client_for(tmp_path, on_request=requests) as client:
            return await resolve(client, keys)

    results = run(scenario())
    assert list(results) == keys[:5]  # the duplicate once, in the order asked
    assert [results[k].tag for k in keys[:3]] == ["1.1.0", "2.0.0", "2.0.0"]
    errors = [results[k].error for k in keys[3:5]]
    assert errors[0] == errors[1] and errors[0] is not None and "team/missing" in errors[0]
    assert requests.statuses() == Counter({200: 1, 404: 1})  # one tags/list per image


# ------------------------------------------------------------------------------------------- Basic (htpasswd)


def test_htpasswd_basic_auth_from_docker_config(registry_factory: RegistryFactory, tmp_path: Path) -> None:
    server = registry_factory(htpasswd={"alice": CANARY})
    with ImagePusher(server.url, username="alice", password=CANARY) as alice:
        alice.push_many("team/app", {"1.0.0": T0, "1.1.0": T0})
    image = f"{server.host}/team/app"
    good = docker_config(tmp_path / "good", server.host, "alice", CANARY)
    wrong = docker_config(tmp_path / "wrong", server.host, "alice", CANARY + "-wrong")

    async def with_config(config: Path | None) -> Resolution:
        kwargs: dict[str, Any] = {} if config is None else {"docker_config": config}
        async with client_for(tmp_path, **kwargs) as client:
            return await resolve_one(client, key(image, "semver:*", "1.0.0"))

    assert run(with_config(good)) == Resolution(tag="1.1.0")
    for config, expected in ((wrong, "401"), (None, "no credentials")):
        error = run(with_config(config)).error
        assert error is not None
        assert server.host in error and "team/app" in error and expected in error
        assert CANARY not in error and base64.b64encode(CANARY.encode()).decode()[:12] not in error


def test_basic_credentials_from_env_and_file(
    registry_factory: RegistryFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = registry_factory(htpasswd={"bob": CANARY})
    with ImagePusher(server.url, username="bob", password=CANARY) as bob:
        bob.push("team/app", "1.0.0")
    image = f"{server.host}/team/app"
    monkeypatch.setenv("REG_CREDS", f"bob:{CANARY}")
    secret_file = tmp_path / "creds"
    secret_file.write_text(f"bob:{CANARY}\n")

    async def with_spec(spec: str) -> Resolution:
        async with client_for(tmp_path, RegistryOptions(prefix=server.host, credentials=spec)) as client:
            return await resolve_one(client, key(image, "semver:*"))

    assert run(with_spec("env:REG_CREDS")) == Resolution(tag="1.0.0")
    assert run(with_spec(f"file:{secret_file}")) == Resolution(tag="1.0.0")
    missing = run(with_spec("env:NOT_SET_ANYWHERE")).error
    assert missing is not None and "NOT_SET_ANYWHERE" in missing and server.host in missing


# --------------------------------------------------------------------------------------------- Bearer token


def test_bearer_token_flow_caches_tokens_per_scope(
    registry_factory: RegistryFactory, token_issuer: TokenIssuer, tmp_path: Path
) -> None:
    server = registry_factory(token_auth=token_issuer.auth)
    with ImagePusher(server.url, username=TOKEN_USER, password=TOKEN_PASSWORD) as pusher:
        pusher.push_many("team/a", {"1.0.0": T0, "1.1.0": T0 + timedelta(hours=1)})
        pusher.push_many("team/b", {"2.0.0": T0})
    token_issuer.reset()
    a, b = f"{server.host}/team/a", f"{server.host}/team/b"
    requests = Requests()

    async def scenario() -> list[Resolution]:
        async with client_for(tmp_path, on_request=requests) as client:
            first = await resolve(client, [key(a, "glob:*"), key(b, "semver:*")])
            again = await resolve(client, [key(a, "semver:*")])
            return [first[key(a, "glob:*")], first[key(b, "semver:*")], again[key(a, "semver:*")]]

    glob_a, semver_b, again_a = run(scenario())
    assert (glob_a.tag, semver_b.tag, again_a.tag) == ("1.1.0", "2.0.0", "1.1.0")
    scopes = [request.scopes for request in token_issuer.requests]
    # one anonymous token per repository scope, reused for the manifests, configs and the second pass
    assert sorted(scopes) == [("repository:team/a:pull",), ("repository:team/b:pull",)]
    assert all(request.user is None for request in token_issuer.requests)


def test_private_repository_needs_credentials(
    registry_factory: RegistryFactory, token_issuer_factory: TokenIssuerFactory, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issuer = token_issuer_factory(users={"carol": CANARY}, allow_anonymous_pull=False)
    server = registry_factory(token_auth=issuer.auth)
    with ImagePusher(server.url, username="carol", password=CANARY) as pusher:
        pusher.push("private/app", "1.0.0")
    image = f"{server.host}/private/app"

    async def with_options(*options: RegistryOptions) -> Resolution:
        async with client_for(tmp_path, *options) as client:
            return await resolve_one(client, key(image, "semver:*"))

    anonymous = run(with_options()).error
    assert anonymous is not None and "no credentials" in anonymous and "private/app" in anonymous
    monkeypatch.setenv("CAROL", f"carol:{CANARY}")
    assert run(with_options(RegistryOptions(prefix=server.host, credentials="env:CAROL"))).tag == "1.0.0"
    monkeypatch.setenv("CAROL", f"carol:{CANARY}-wrong")
    refused = run(with_options(RegistryOptions(prefix=server.host, credentials="env:CAROL"))).error
    assert refused is not None and "token server refused" in refused and "env:CAROL" in refused
    assert CANARY not in refused and server.host in refused
    # the credentials are read again once after the refusal, then we stop asking
    assert [r.status for r in issuer.requests if r.user == "carol"][-2:] == [401, 401]


def test_token_rejected_by_the_registry_is_refreshed_once(
    registry_factory: RegistryFactory, token_issuer: TokenIssuer, tmp_path: Path
) -> None:
    server = registry_factory(token_auth=token_issuer.auth)
    with ImagePusher(server.url, username=TOKEN_USER, password=TOKEN_PASSWORD) as pusher:
        pusher.push("team/app", "1.0.0")
    image = f"{server.host}/team/app"

    async def scenario() -> tuple[list[str], int]:
        async with client_for(tmp_path) as client:
            await client.list_tags(image)
            before = token_issuer.request_count
            # the registry stops accepting the cached token (revoked, or its clock disagrees with ours)
            tokens = client._session._tokens._tokens
            [(cache_key, token)] = list(tokens.items())
            tokens[cache_key] = type(token)(token.value[:-8] + "AAAAAAAA", token.expires_at)
            return await client.list_tags(image), token_issuer.request_count - before

    tags, fetched = run(scenario())
    assert tags == ["1.0.0"]
    assert fetched == 1


# ---------------------------------------------------------------------------------------------------- TLS


def test_tls_with_test_ca_and_failure_without_it(
    registry_factory: RegistryFactory, tls_ca: TLSFiles, tmp_path: Path
) -> None:
    server = registry_factory(tls=tls_ca)
    with ImagePusher(server.url, ca_file=str(tls_ca.ca_file)) as pusher:
        pusher.push("secure/app", "1.0.0")
    image = f"{server.host}/secure/app"

    async def with_options(*options: RegistryOptions) -> Resolution:
        async with client_for(tmp_path, *options) as client:
            return await resolve_one(client, key(image, "semver:*"))

    assert run(with_options(RegistryOptions(prefix=server.host, ca_file=str(tls_ca.ca_file)))).tag == "1.0.0"
    assert run(with_options(RegistryOptions(prefix=server.host, tls_verify=False))).tag == "1.0.0"
    # explicitly configured without the CA, and not configured at all (a loopback registry may fall back to
    # plain HTTP, but never past a certificate that fails to verify)
    for options in ((RegistryOptions(prefix=server.host),), ()):
        error = run(with_options(*options)).error
        assert error is not None and "TLS certificate" in error and "ca_file" in error
        assert server.host in error and "secure/app" in error


def test_the_system_trust_store_is_loaded_at_the_first_handshake_only(
    registry_factory: RegistryFactory, registry: RegistryServer, pusher: ImagePusher, tls_ca: TLSFiles,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads: list[object] = []
    real = ssl.SSLContext.load_default_certs

    def counting(self: ssl.SSLContext, *args: Any) -> None:
        loads.append(self)
        real(self, *args)

    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", counting)
    # SSL_CERT_FILE is the system store's override (as for Docker and Flux): the test CA is trusted through it
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_ca.ca_file))
    server = registry_factory(tls=tls_ca)
    with ImagePusher(server.url, ca_file=str(tls_ca.ca_file)) as tls_pusher:
        tls_pusher.push("secure/app", "1.0.0")
    pusher.push("team/app", "1.0.0")

    async def plain_then_tls() -> tuple[Resolution, int, Resolution]:
        async with client_for(tmp_path, RegistryOptions(prefix=registry.host, insecure=True)) as client:
            plain = await resolve_one(client, key(f"{registry.host}/team/app", "semver:*"))
            before_tls = len(loads)  # a plain-HTTP registry never needed the trust store
            secure = await resolve_one(client, key(f"{server.host}/secure/app", "semver:*"))
            return plain, before_tls, secure

    plain, before_tls, secure = run(plain_then_tls())
    assert plain.tag == "1.0.0" and secure.tag == "1.0.0", (plain.error, secure.error)
    assert before_tls == 0
    assert len(loads) == 1  # once, however many handshakes


def test_insecure_and_loopback_plain_http_and_api_url(
    registry: RegistryServer, pusher: ImagePusher, tmp_path: Path
) -> None:
    pusher.push("team/app", "1.0.0")
    image = f"{registry.host}/team/app"

    async def with_options(*options: RegistryOptions) -> Resolution:
        async with client_for(tmp_path, *options) as client:
            return await resolve_one(client, key(image, "semver:*"))

    assert run(with_options(RegistryOptions(prefix=registry.host, insecure=True))).tag == "1.0.0"
    # without insecure, https is tried first; only a loopback registry that does not speak TLS at all is
    # then spoken to in plain HTTP, as the Docker daemon does for 127.0.0.0/8
    assert run(with_options(RegistryOptions(prefix=registry.host))).tag == "1.0.0"
    # the api_url replaces the endpoint only
    api = RegistryOptions(prefix="mirror.example.com", api_url=registry.url)
    async def via_mirror() -> list[str]:
        async with client_for(tmp_path, api) as client:
            return await client.list_tags("mirror.example.com/team/app")
    assert run(via_mirror()) == ["1.0.0"]


# ------------------------------------------------------------------------------- metadata: platforms, times


def test_multi_arch_index_and_platform_filtering(
    registry: RegistryServer, pusher: ImagePusher, tmp_path: Path
) -> None:
    pusher.push("team/multi", "1.0.0", created=T0, platforms=("linux/amd64", "linux/arm64/v8"))
    pusher.push("team/multi", "1.1.0", created=T0, platforms=("linux/amd64", "linux/arm/v7"),
                media_types="docker")
    pusher.push("team/multi", "1.2.0", created=T0, platforms=("linux/amd64",))
    image = f"{registry.host}/team/multi"

    async def scenario() -> tuple[Resolution, Resolution, Any]:
        async with client_for(tmp_path) as client:
            arm64 = await resolve_one(client, key(image, "semver:*", platforms=["linux/arm64"]))
            arm7 = await resolve_one(client, key(image, "semver:*", platforms=["linux/arm/v7"]))
            infos = await client.tag_infos(image, ["1.0.0", "1.1.0", "1.2.0"])
            return arm64, arm7, infos

    arm64, arm7, infos = run(scenario())
    assert arm64.tag == "1.0.0" and arm7.tag == "1.1.0"
    assert infos["1.0.0"].platforms == frozenset({"linux/amd64", "linux/arm64/v8"})
    assert infos["1.1.0"].platforms == frozenset({"linux/amd64", "linux/arm/v7"})
    assert infos["1.2.0"].platforms == frozenset({"linux/amd64"})
    assert {info.created for info in infos.values()} == {T0}


def test_glob_orders_by_build_time_and_counts_requests(
    registry: RegistryServer, pusher: ImagePusher, tmp_path: Path
) -> None:
    times = {f"develop-v{i}": T0 + timedelta(days=(i * 7) % 13) for i in range(1, 9)}
    pusher.push_many("team/app", times)
    pusher.push("team/app", "develop-v99")  # no build time: ranks below every dated tag
    pusher.push_many("team/app", {"1.0.0": T0 + timedelta(days=99), "main": T0 + timedelta(days=99)})
    image = f"{registry.host}/team/app"
    requests = Requests()

    async def scenario() -> Resolution:
        async with client_for(tmp_path, on_request=requests) as client:
            return await resolve_one(client, key(image, "glob:develop-v*", "develop-v1"))

    resolution = run(scenario())
    newest = max(times, key=lambda t: times[t])
    assert resolution == Resolution(tag=newest, created=times[newest])
    # one tags/list, then a manifest and a config per candidate; nothing for tags the pattern rules out
    assert requests.statuses() == Counter({200: 1 + 2 * 9})


def test_oci_created_annotation_on_an_index_saves_requests(
    registry: RegistryServer, pusher: ImagePusher, tmp_path: Path
) -> None:
    stamp = "2024-06-01T00:00:00Z"
    pusher.push("team/annotated", "a", created=T0, platforms=("linux/amd64", "linux/arm64"),
                annotations={"org.opencontainers.image.created": stamp})
    pusher.push("team/annotated", "b", created=T0, platforms=("linux/amd64", "linux/arm64"))
    image = f"{registry.host}/team/annotated"
    requests = Requests()

    async def scenario() -> Any:
        async with client_for(tmp_path, on_request=requests) as client:
            return await client.tag_infos(image, ["a", "b"])

    infos = run(scenario())
    assert infos["a"].created == datetime(2024, 6, 1, tzinfo=UTC)
    assert infos["b"].created == T0  # from the linux/amd64 child's config
    assert requests.count == 1 + 3, requests.seen  # a: its index alone; b: index, child manifest, config


def test_min_age_filters_young_builds(registry: RegistryServer, pusher: ImagePusher, tmp_path: Path) -> None:
    now = datetime(2024, 6, 1, tzinfo=UTC)
    pusher.push_many("team/app", {"1.0.0": now - timedelta(days=10), "1.1.0": now - timedelta(hours=2)})
    image = f"{registry.host}/team/app"

    async def scenario() -> Resolution:
        async with client_for(tmp_path) as client:
            return (await resolve(client, [key(image, "semver:*", min_age="1d")], now=now))[
                key(image, "semver:*", min_age="1d")
            ]

    assert run(scenario()).tag == "1.0.0"


# --------------------------------------------------------------------------------------- digest tracking


def test_digest_tracking_follows_a_moving_tag(
    registry: RegistryServer, pusher: ImagePusher, tmp_path: Path
) -> None:
    first = pusher.push("team/app", "stable", created=T0)
    pusher.push_many("team/app", {"1.0.0": T0, "1.1.0": T0})
    image = f"{registry.host}/team/app"
    cache = MetadataCache(tmp_path / "cache.sqlite3")
    track, pinned = key(image, "digest", "stable"), key(image, "semver:*", "1.0.0", pin_digest=True)

    async def one_pass() -> dict[ResolveKey, Resolution]:
        async with client_for(tmp_path, cache=cache) as client:
            return await resolve(client, [track, pinned])

    results = run(one_pass())
    assert results[track] == Resolution(tag="stable", digest=first)
    assert results[pinned].tag == "1.1.0" and results[pinned].digest == pusher.digest("team/app", "1.1.0")
    moved = pusher.push("team/app", "stable", created=T0 + timedelta(days=1))
    assert moved != first
    assert run(one_pass())[track] == Resolution(tag="stable", digest=moved)
    cache.close()


# --------------------------------------------------------------------------------- cache across a restart


def test_cache_reuse_across_a_restart(registry: RegistryServer, pusher: ImagePusher, tmp_path: Path) -> None:
    pusher.push_many("team/app", {f"build-{i}": T0 + timedelta(minutes=i) for i in range(12)})
    image = f"{registry.host}/team/app"
    glob = key(image, "glob:build-*")
    requests = Requests()

    def one_pass() -> Resolution:
        async def scenario() -> Resolution:
            with MetadataCache.in_dir(tmp_path / "cache") as cache:
                async with client_for(tmp_path, cache=cache, on_request=requests) as client:
                    return await resolve_one(client, glob)
        requests.reset()
        return run(scenario())

    assert one_pass().tag == "build-11"
    assert requests.count == 1 + 2 * 12  # cold: tags + manifest + config per tag
    assert one_pass().tag == "build-11"
    assert requests.count == 1  # a new client and a new process-level cache object: tags/list only
    pusher.push("team/app", "build-12", created=T0 + timedelta(hours=1))
    assert one_pass().tag == "build-12"
    assert requests.count == 1 + 2  # only the new tag costs metadata


def test_expired_tag_digests_are_revalidated_with_head(
    registry: RegistryServer, pusher: ImagePusher, tmp_path: Path
) -> None:
    pusher.push_many("team/app", {"a": T0, "b": T0 + timedelta(hours=1)})
    image = f"{registry.host}/team/app"
    glob = key(image, "glob:*")
    requests = Requests()
    cache = MetadataCache(None)
    clock = [1_000_000.0]

    async def one_pass() -> Resolution:
        requests.reset()
        async with client_for(tmp_path, cache=cache, on_request=requests, tag_ttl=60.0,
                              clock=lambda: clock[0]) as client:
            return await resolve_one(client, glob)

    assert run(one_pass()).tag == "b"
    clock[0] += 30
    assert run(one_pass()).tag == "b" and requests.count == 1
    clock[0] += 100  # past every deadline (60 s + at most 25 %)
    pusher.push("team/app", "a", created=T0 + timedelta(days=1))  # "a" moved to a newer build
    assert run(one_pass()).tag == "a"
    # tags/list, a HEAD per tag, then manifest + config for the one digest we had not seen
    assert requests.count == 1 + 2 + 2
    cache.close()


# ----------------------------------------------------------------------------------------- pacing, failures


class CountingTransport:
    """A real connection pool, counting requests in flight at once."""

    def __init__(self) -> None:
        self.inner = httpcore.AsyncConnectionPool()
        self.in_flight = 0
        self.peak = 0

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.01)  # widen the window in which requests overlap
            return await self.inner.handle_async_request(request)
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("limit", [1, 3])
def test_max_concurrency_is_respected(
    registry: RegistryServer, pusher: ImagePusher, tmp_path: Path, limit: int
) -> None:
    pusher.push_many("team/app", {f"t{i}": T0 + timedelta(minutes=i) for i in range(10)})
    transport = CountingTransport()

    async def scenario() -> Resolution:
        options = RegistryOptions(prefix=registry.host, insecure=True, max_concurrency=limit)
        async with client_for(tmp_path, options, transport=transport) as client:
            return await resolve_one(client, key(f"{registry.host}/team/app", "newest"))

    assert run(scenario()).tag == "t9"
    assert transport.peak == limit


def test_unreachable_registry_fails_its_images_only(
    registry: RegistryServer, pusher: ImagePusher, tmp_path: Path
) -> None:
    pusher.push("team/app", "1.0.0")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"  # nothing listens once the socket closes
    keys = [key(f"{dead}/team/{name}", "semver:*") for name in ("a", "b", "c")]
    good = key(f"{registry.host}/team/app", "semver:*")
    requests = Requests()

    async def scenario() -> dict[ResolveKey, Resolution]:
        async with client_for(tmp_path, RegistryOptions(prefix=dead, insecure=True),
                              on_request=requests) as client:
            return await resolve(client, [*keys, good])

    results = run(scenario())
    assert results[good] == Resolution(tag="1.0.0")
    for k in keys:
        error = results[k].error
        assert error is not None and dead in error and k.image.split("/", 1)[1] in error
        assert "cannot connect" in error
    # retries are bounded per image, and once the registry is known down the rest fail without trying
    assert requests.statuses()["connect_error"] <= len(keys) * FAST.attempts


def test_errors_are_registry_errors_with_context(registry: RegistryServer, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with client_for(tmp_path) as client:
            await client.get_manifest(f"{registry.host}/nobody/here", "1.0")

    with pytest.raises(RegistryError, match=rf"registry {registry.host}, image nobody/here: manifest 1.0"):
        run(scenario())


def test_unchanged_tag_lists_reuse_the_decision(
    registry: RegistryServer, pusher: ImagePusher, tmp_path: Path
) -> None:
    pusher.push_many("team/app", ["1.0.0", "1.1.0"])
    image = f"{registry.host}/team/app"
    semver = key(image, "semver:*", "1.0.0")
    cache = MetadataCache(tmp_path / "cache.sqlite3")

    async def one_pass() -> Resolution:
        async with client_for(tmp_path, cache=cache) as client:
            return await resolve_one(client, semver)

    assert run(one_pass()).tag == "1.1.0"
    # plant a different answer for the same tag list: a pass over an unchanged list does not rank again
    db = cache._db
    db.execute("UPDATE decisions SET chosen = '1.0.0'")
    db.commit()
    assert run(one_pass()).tag == "1.0.0"
    pusher.push("team/app", "1.2.0")  # the list changed: decided afresh
    assert run(one_pass()).tag == "1.2.0"
    assert db.execute("SELECT chosen FROM decisions").fetchall() == [("1.2.0",)]
    cache.close()
