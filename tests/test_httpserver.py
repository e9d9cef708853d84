"""The HTTP endpoints and webhook handling, against a real daemon with a fake pass function.

Covers /healthz, /readyz, /metrics; POST /webhook with HMAC (X-Hub-Signature-256, X-Signature-256), bearer
and query-token authentication triggering exactly the sources that track the pushed image; forged and
missing credentials (401), malformed bodies (400, also when nested too deep or holding a number too long
to convert), oversize bodies (413), the endpoint disabled without a secret (404) - none of which starts a
pass; every answer to /webhook counted once in the metrics under its result; strict HTTP parsing and the
read timeouts on raw sockets; the per-client throttle of /webhook (429, Retry-After, counted as
"throttled", keyed on the peer address, refilled, bounded in clients); the page handler the status page
plugs in (GET and HEAD of other paths, None for 404, never the server's own endpoints); and the payload
readers for distribution, Docker Hub, Harbor and GitHub package events, with their size and depth bounds.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import struct
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from image_updater.daemon import Daemon, PassOutcome
from image_updater.errors import ConfigError, ImageUpdaterError
from image_updater.httpserver import HttpServer, Limits, PageHandler, Throttle, _Buckets, parse_listen
from image_updater.metrics import Metrics
from image_updater.plan import Result
from image_updater.webhooks import (
    MAX_DEPTH,
    MalformedWebhook,
    PushEvent,
    authenticate,
    nesting_depth,
    parse_push_events,
)

SECRET = "s3cret-webhook-token-0123456789"
IMAGES = {
    "web": frozenset({"registry.example.com:5000/team/web", "docker.io/library/nginx"}),
    "api": frozenset({"ghcr.io/octo-org/api", "harbor.example.com/library/api"}),
}


@dataclass(frozen=True)
class Outcome:
    source: str
    result: Result = field(default_factory=Result)
    commit: str | None = None
    pushed: bool = False
    error: str | None = None
    duration: float = 0.01
    images: frozenset[str] = frozenset()


@dataclass
class Env:
    daemon: Daemon
    server: HttpServer
    client: httpx.AsyncClient
    passes: dict[str, int]
    release: asyncio.Event

    @property
    def url(self) -> str:
        host, port = self.server.address
        return f"http://{host}:{port}"

    async def settle(self) -> None:
        """Wait until no pass runs or waits any more."""
        await wait_until(lambda: not any(s.busy for s in self.daemon._states.values()), "passes to settle")


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Bounded polling; the deadline only detects a hang."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def serving(
    secret: str | None = SECRET, *, block_first: bool = False, limits: Limits | None = None,
    pages: PageHandler | None = None,
) -> AsyncIterator[Env]:
    passes: dict[str, int] = {}
    release = asyncio.Event()
    if not block_first:
        release.set()

    async def one_pass(name: str, stop: threading.Event, images: frozenset[str] | None = None) -> PassOutcome:
        await release.wait()
        passes[name] = passes.get(name, 0) + 1
        return Outcome(name, images=IMAGES[name])

    metrics = Metrics()
    daemon = Daemon(
        ["web", "api"], interval=timedelta(hours=1), pass_fn=one_pass, metrics=metrics, webhook_min_interval=0
    )
    server = HttpServer(
        daemon, metrics=metrics, listen="127.0.0.1:0", webhook_secret=secret, limits=limits, pages=pages
    )
    await server.start()
    run = asyncio.create_task(daemon.run())
    async with httpx.AsyncClient(timeout=10) as client:
        env = Env(daemon, server, client, passes, release)
        try:
            if not block_first:
                await wait_until(lambda: daemon.passes_finished >= 2, "the start-up passes")
            yield env
        finally:
            release.set()
            daemon.request_stop()
            await asyncio.wait_for(run, 30)
            await server.close()


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def distribution(
    host: str, repository: str, tag: str | None = "1.2.3", action: str = "push"
) -> dict[str, Any]:
    target: dict[str, Any] = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "size": 1234,
        "digest": "sha256:" + "a" * 64,
        "repository": repository,
        "url": f"http://{host}/v2/{repository}/manifests/sha256:{'a' * 64}",
    }
    if tag is not None:
        target["tag"] = tag
    return {
        "events": [
            {
                "id": "320678d8-ca14-430f-8bb6-4ca139cd83f7",
                "timestamp": "2024-03-01T12:00:00.000Z",
                "action": action,
                "target": target,
                "request": {
                    "id": "6df24a34",
                    "addr": "10.0.0.9:51234",
                    "host": host,
                    "method": "PUT",
                    "useragent": "containerd/1.7",
                },
                "actor": {"name": "ci"},
                "source": {"addr": "registry-0:5000", "instanceID": "b8c2"},
            }
        ]
    }


DOCKER_HUB = {
    "callback_url": "https://registry.hub.docker.com/u/svendowideit/testhook/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/",
    "push_data": {"pushed_at": 1417566161, "pusher": "trustedbuilder", "tag": "1.27.1"},
    "repository": {"name": "nginx", "namespace": "library", "repo_name": "library/nginx", "status": "Active"},
}
HARBOR = {
    "type": "PUSH_ARTIFACT",
    "occur_at": 1709294400,
    "operator": "ci-robot",
    "event_data": {
        "resources": [
            {
                "digest": "sha256:" + "b" * 64,
                "tag": "2.0.1",
                "resource_url": "harbor.example.com/library/api:2.0.1",
            }
        ],
        "repository": {
            "name": "api",
            "namespace": "library",
            "repo_full_name": "library/api",
            "repo_type": "private",
        },
    },
}
GITHUB = {
    "action": "published",
    "package": {
        "id": 1,
        "name": "api",
        "namespace": "Octo-Org",
        "package_type": "CONTAINER",
        "ecosystem": "CONTAINER",
        "owner": {"login": "Octo-Org"},
        "package_version": {
            "id": 2,
            "version": "sha256:" + "c" * 64,
            "container_metadata": {"tag": {"name": "v3.1.0", "digest": "sha256:" + "c" * 64}},
        },
        "registry": {
            "about_url": "https://docs.github.com",
            "name": "GitHub CLI",
            "type": "docker",
            "url": "https://ghcr.io/octo-org",
            "vendor": "GitHub Inc",
        },
    },
}


# -- endpoints ---------------------------------------------------------------------------------------------


def test_health_readiness_and_metrics() -> None:
    async def test() -> None:
        async with serving(block_first=True) as env:
            health = await env.client.get(env.url + "/healthz")
            assert (health.status_code, health.text) == (200, "ok\n")
            ready = await env.client.get(env.url + "/readyz")
            assert ready.status_code == 503  # no pass has finished yet
            env.release.set()
            await env.settle()
            assert (await env.client.get(env.url + "/readyz")).status_code == 200
            metrics = await env.client.get(env.url + "/metrics")
            assert metrics.status_code == 200
            assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
            text = metrics.text
            assert 'image_updater_passes_total{outcome="success",source="web"} 1.0' in text
            assert 'image_updater_images_tracked{source="api"} 2.0' in text
            assert "image_updater_pass_duration_seconds_bucket" in text
            assert "image_updater_registry_requests_total" in text
            names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
            assert names and all(n.startswith("image_updater_") for n in names)
            head = await env.client.head(env.url + "/healthz")
            assert head.status_code == 200 and head.content == b""
            assert (await env.client.post(env.url + "/healthz")).status_code == 405
            assert (await env.client.get(env.url + "/nope")).status_code == 404
        # once stopped, health fails
        assert not env.daemon.alive()

    run(test)


# -- webhook: authentication and triggering ---------------------------------------------------------------


def test_hmac_signed_distribution_push_triggers_the_source_that_tracks_it() -> None:
    async def test() -> None:
        async with serving() as env:
            body = json.dumps(distribution("registry.example.com:5000", "team/web")).encode()
            r = await env.client.post(
                env.url + "/webhook",
                content=body,
                headers={
                    "X-Hub-Signature-256": sign(body),
                    "Content-Type": "application/vnd.docker.distribution.events.v1+json",
                },
            )
            assert r.status_code == 202, r.text
            assert r.json() == {
                "events": [
                    {"image": "registry.example.com:5000/team/web", "tag": "1.2.3", "sender": "distribution"}
                ],
                "sources": ["web"],
            }
            await env.settle()
            assert env.passes == {"web": 2, "api": 1}
            metrics = env.daemon.metrics.registry
            assert (
                metrics.get_sample_value("image_updater_webhook_requests_total", {"result": "accepted"}) == 1
            )

    run(test)


@pytest.mark.parametrize(
    ("payload", "headers", "query", "source"),
    [
        (HARBOR, {"Authorization": f"Bearer {SECRET}"}, "", "api"),
        (GITHUB, {"X-Hub-Signature-256": "SIGN", "X-GitHub-Event": "package"}, "", "api"),
        (DOCKER_HUB, {"X-Signature-256": "SIGN"}, "", "web"),
        (DOCKER_HUB, {}, f"?token={SECRET}", "web"),
    ],
    ids=["harbor-bearer", "github-hmac", "x-signature-256", "dockerhub-query-token"],
)
def test_every_authentication_form_is_accepted(
    payload: dict[str, Any], headers: dict[str, str], query: str, source: str
) -> None:
    async def test() -> None:
        async with serving() as env:
            body = json.dumps(payload).encode()
            signed = {k: sign(body) if v == "SIGN" else v for k, v in headers.items()}
            r = await env.client.post(env.url + "/webhook" + query, content=body, headers=signed)
            assert r.status_code == 202, r.text
            assert r.json()["sources"] == [source]
            await env.settle()
            assert env.passes[source] == 2
            assert sum(env.passes.values()) == 3

    run(test)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        {"X-Hub-Signature-256": "FORGED"},
        {"X-Signature-256": "sha1=" + "0" * 40},
        {"Authorization": "Bearer wrong-secret"},
        {"Authorization": f"Basic {SECRET}"},
        {"Authorization": f"Bearer {SECRET}x"},
    ],
    ids=["none", "zero-hmac", "hmac-other-secret", "sha1", "wrong-bearer", "basic", "bearer-suffix"],
)
def test_unauthenticated_webhooks_get_401_and_change_nothing(headers: dict[str, str]) -> None:
    async def test() -> None:
        async with serving() as env:
            body = json.dumps(distribution("registry.example.com:5000", "team/web")).encode()
            if headers.get("X-Hub-Signature-256") == "FORGED":
                headers["X-Hub-Signature-256"] = sign(body, "another-secret-of-same-length!")
            r = await env.client.post(env.url + "/webhook", content=body, headers=headers)
            assert r.status_code == 401
            assert r.headers["www-authenticate"].startswith("Bearer")
            await env.settle()
            assert env.passes == {"web": 1, "api": 1}
            metrics = env.daemon.metrics.registry
            assert (
                metrics.get_sample_value("image_updater_webhook_requests_total", {"result": "unauthorized"})
                == 1
            )

    run(test)


def test_a_signature_over_another_body_is_refused() -> None:
    async def test() -> None:
        async with serving() as env:
            signed = json.dumps(distribution("registry.example.com:5000", "team/other")).encode()
            sent = json.dumps(distribution("registry.example.com:5000", "team/web")).encode()
            r = await env.client.post(
                env.url + "/webhook", content=sent, headers={"X-Hub-Signature-256": sign(signed)}
            )
            assert r.status_code == 401
            await env.settle()
            assert env.passes == {"web": 1, "api": 1}

    run(test)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"hello": "world"}',
        b'{"events": "push"}',
        b'{"events": [{"action": "push", "target": {"repository": 42, "tag": "1"}}]}',
        b'{"events": [{"action": "push", "target": {"repository": "UPPER/Case", "tag": "1"},'
        b' "request": {"host": "r.io"}}]}',
        b'{"push_data": {"tag": "1"}, "repository": {}}',
        b"[" * 200_000 + b"]" * 200_000,
        b'{"events": [], "n": ' + b"7" * 5000 + b"}",
    ],
    ids=[
        "text",
        "binary",
        "array",
        "unknown-shape",
        "events-not-list",
        "repository-not-string",
        "invalid-repository",
        "dockerhub-without-repo",
        "nested-200000-deep",
        "5000-digit-number",
    ],
)
def test_malformed_authenticated_webhooks_get_400_and_change_nothing(body: bytes) -> None:
    async def test() -> None:
        async with serving() as env:
            r = await env.client.post(
                env.url + "/webhook", content=body, headers={"X-Hub-Signature-256": sign(body)}
            )
            assert r.status_code == 400, r.text
            assert "error" in r.json()
            await env.settle()
            assert env.passes == {"web": 1, "api": 1}
            assert webhook_results(env) == {"malformed": 1}
            assert (await env.client.get(env.url + "/healthz")).status_code == 200

    run(test)


def webhook_results(env: Env) -> dict[str, float]:
    """The non-zero samples of image_updater_webhook_requests_total, by result."""
    found: dict[str, float] = {}
    for family in env.daemon.metrics.registry.collect():
        if family.name == "image_updater_webhook_requests":
            for s in family.samples:
                if s.name.endswith("_total") and s.value:
                    found[s.labels["result"]] = s.value
    return found


def test_every_webhook_answer_is_counted_once_under_its_result() -> None:
    body = json.dumps(DOCKER_HUB).encode()
    post = b"POST /webhook HTTP/1.1\r\nHost: x\r\n"
    length = b"Content-Length: %d\r\n" % len(body)
    cases = [
        (post + length + sign_header(body) + b"\r\n" + body, 202, "accepted"),
        (post + b"Content-Length: 2\r\n" + sign_header(b"{}") + b"\r\n{}", 400, "malformed"),
        (post + length + b"\r\n" + body, 401, "unauthorized"),
        (post + b"Content-Length: 5000000\r\n\r\n", 413, "too_large"),
        (post + b"X-Pad: " + b"a" * 20000 + b"\r\n\r\n", 431, "too_large"),
        (post + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411, "length_required"),
        (post + b"\r\n", 411, "length_required"),
        (post + b"Content-Length: 10\r\n\r\n{", 408, "timeout"),
        (post, 408, "timeout"),
        (post + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n{}", 400, "bad_request"),
        (post + b"Content-Length: x\r\n\r\n", 400, "bad_request"),
        (b"POST /webhook HTTP/2.0\r\n\r\n", 505, "bad_request"),
        (b"GET /webhook?token=x HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
    ]
    ignored = json.dumps(distribution("quay.io", "nobody/tracks-this")).encode()
    ignored_length = b"Content-Length: %d\r\n" % len(ignored)
    cases.append((post + ignored_length + sign_header(ignored) + b"\r\n" + ignored, 200, "ignored"))

    async def test() -> None:
        async with serving(limits=Limits(head_timeout=0.5, body_timeout=0.5)) as env:
            expected: dict[str, float] = {}
            for request_bytes, code, result in cases:
                response = await raw(env, request_bytes)
                assert status(response) == code, (request_bytes[:80], response[:200])
                expected[result] = expected.get(result, 0) + 1
                assert webhook_results(env) == expected, request_bytes[:80]
            # other paths are not counted under /webhook
            for other in (b"GET /healthz HTTP/1.1\r\n\r\n", b"GET /healthz HTTP/1.1\r\n",
                          b"POST /webhooks HTTP/1.1\r\n\r\n"):
                await raw(env, other)
            assert webhook_results(env) == expected
        async with serving(secret=None) as env:
            assert status(await raw(env, post + length + b"\r\n" + body)) == 404
            assert webhook_results(env) == {"disabled": 1}

    run(test)


def sign_header(body: bytes) -> bytes:
    return b"X-Hub-Signature-256: " + sign(body).encode() + b"\r\n"


def test_webhook_errors_are_image_updater_errors() -> None:
    with pytest.raises(ImageUpdaterError):
        parse_push_events(b"not json")
    assert issubclass(MalformedWebhook, ValueError)


def test_bodies_are_bounded_in_depth_and_size_before_parsing() -> None:
    def nested(depth: int) -> bytes:
        return b'{"events": [], "x": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"

    assert parse_push_events(nested(MAX_DEPTH)) == []
    with pytest.raises(MalformedWebhook, match=f"nests {MAX_DEPTH + 1} levels deep; at most {MAX_DEPTH}"):
        parse_push_events(nested(MAX_DEPTH + 1))
    # brackets inside strings, escaped quotes included, are not structure
    text = '{"events": [], "s": "' + "[{" * 1000 + '\\"' + "[" * 1000 + '"}'
    assert nesting_depth(text) == 2  # the object and "events"
    assert parse_push_events(text.encode()) == []
    # the scan reads the text json.loads reads: UTF-16 as well as UTF-8
    assert parse_push_events(nested(MAX_DEPTH).decode().encode("utf-16")) == []
    with pytest.raises(MalformedWebhook, match="levels deep"):
        parse_push_events(nested(MAX_DEPTH + 1).decode().encode("utf-16"))
    # an unterminated string runs to the end for both: nothing in it recurses
    assert nesting_depth('["' + "[" * 100_000) == 1
    # a form-encoded payload is bounded the same way
    from urllib.parse import urlencode

    form = urlencode({"payload": "[" * 5000 + "]" * 5000}).encode()
    with pytest.raises(MalformedWebhook, match="5000 levels deep"):
        parse_push_events(form, "application/x-www-form-urlencoded")
    with pytest.raises(MalformedWebhook, match="at most 10 are accepted"):
        parse_push_events(b'{"events": []}', max_bytes=10)


def test_oversize_bodies_get_413_without_being_authenticated_or_read() -> None:
    async def test() -> None:
        limits = Limits(max_body=64 * 1024)
        async with serving(limits=limits) as env:
            body = b'{"events": [' + b" " * (128 * 1024) + b"]}"
            r = await env.client.post(
                env.url + "/webhook", content=body, headers={"X-Hub-Signature-256": sign(body)}
            )
            assert r.status_code == 413
            await env.settle()
            assert env.passes == {"web": 1, "api": 1}
            # the default cap is 1 MiB
            assert Limits().max_body == 1 << 20

    run(test)


def test_webhook_is_disabled_without_a_secret() -> None:
    async def test() -> None:
        async with serving(secret=None) as env:
            body = json.dumps(DOCKER_HUB).encode()
            for headers in ({}, {"Authorization": f"Bearer {SECRET}"}, {"X-Hub-Signature-256": sign(body)}):
                r = await env.client.post(env.url + "/webhook", content=body, headers=headers)
                assert r.status_code == 404
            await env.settle()
            assert env.passes == {"web": 1, "api": 1}

    run(test)


def test_notifications_without_a_push_are_acknowledged_and_trigger_nothing() -> None:
    async def test() -> None:
        async with serving() as env:
            for payload in (
                distribution("registry.example.com:5000", "team/web", action="pull"),
                distribution("registry.example.com:5000", "team/web", tag=None),  # a blob or a push by digest
                {"zen": "Design for failure.", "hook_id": 1, "hook": {}},  # GitHub's ping
                {**HARBOR, "type": "PULL_ARTIFACT"},
                distribution("quay.io", "nobody/tracks-this"),
            ):
                body = json.dumps(payload).encode()
                r = await env.client.post(
                    env.url + "/webhook", content=body, headers={"X-Hub-Signature-256": sign(body)}
                )
                assert r.status_code == 200, r.text
                assert r.json()["sources"] == []
            assert (await env.client.get(env.url + "/webhook")).status_code == 405
            await env.settle()
            assert env.passes == {"web": 1, "api": 1}

    run(test)


def test_webhook_before_any_pass_finished_triggers_every_source_once() -> None:
    async def test() -> None:
        async with serving(block_first=True) as env:
            body = json.dumps(DOCKER_HUB).encode()
            r = await env.client.post(
                env.url + "/webhook", content=body, headers={"X-Hub-Signature-256": sign(body)}
            )
            assert r.status_code == 202
            assert r.json()["sources"] == ["web", "api"]
            env.release.set()
            await env.settle()
            assert env.passes == {"web": 2, "api": 2}

    run(test)


# -- strict HTTP on raw sockets ---------------------------------------------------------------------------


async def raw(env: Env, data: bytes, *, close_write: bool = False) -> bytes:
    host, port = env.server.address
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    await writer.drain()
    if close_write:
        writer.write_eof()
    response = await asyncio.wait_for(reader.read(), 15)
    writer.close()
    return response


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 200),
        (b"GET /healthz HTTP/1.0\r\n\r\n", 200),
        (b"GET /healthz HTTP/2.0\r\n\r\n", 505),
        (b"GET  /healthz HTTP/1.1\r\n\r\n", 400),
        (b"GET http://x/healthz HTTP/1.1\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\nEvil: y\r\n\r\n", 400),
        (b"GET /h\xc3\xa9 HTTP/1.1\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Name: caf\xc3\xa9\r\n\r\n", 400),
        (b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 400),
        (b"POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 411),
        (b"POST /webhook HTTP/1.1\r\nHost: x\r\n\r\n", 411),
        (b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 20000 + b"\r\n\r\n", 431),
        (b"GET /healthz HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431),
    ],
    ids=[
        "ok",
        "http10",
        "http2",
        "double-space",
        "absolute-form",
        "no-colon",
        "obs-fold",
        "bare-lf",
        "non-ascii",
        "non-ascii-value",
        "duplicate-length",
        "chunked",
        "no-length",
        "negative-length",
        "huge-head",
        "many-headers",
    ],
)
def test_strict_request_parsing(request_bytes: bytes, expected: int) -> None:
    async def test() -> None:
        async with serving() as env:
            response = await raw(env, request_bytes)
            assert status(response) == expected, response[:200]
            assert b"\r\nConnection: close\r\n" in response

    run(test)


def test_slow_clients_are_cut_off() -> None:
    async def test() -> None:
        limits = Limits(head_timeout=0.5, body_timeout=0.5)
        async with serving(limits=limits) as env:
            # a head that never ends
            assert status(await raw(env, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")) == 408
            # a body shorter than announced
            head = b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
            assert status(await raw(env, head)) == 408
            # the server still answers others
            assert (await env.client.get(env.url + "/healthz")).status_code == 200

    run(test)


def test_a_client_that_closes_mid_body_is_answered_or_dropped_counted_and_changes_nothing() -> None:
    async def test() -> None:
        async with serving() as env:
            host, port = env.server.address
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ev")
            await writer.drain()
            await wait_until(lambda: env.server.connections == 1, "the request in")
            writer.write_eof()  # a half-close: the body can never complete; the client can still read
            assert status(await asyncio.wait_for(reader.read(), 15)) == 400
            writer.close()
            # one that vanishes (a reset) gets nothing, and is counted the same
            _, writer = await asyncio.open_connection(host, port)
            writer.write(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ev")
            await writer.drain()
            await wait_until(lambda: env.server.connections == 1, "the request in")
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            await wait_until(lambda: webhook_results(env) == {"bad_request": 2}, "both counted")
            await wait_until(lambda: env.server.connections == 0, "the connections closed")
            await env.settle()
            assert env.passes == {"web": 1, "api": 1}

    run(test)


def test_expect_100_continue_and_early_refusal() -> None:
    async def test() -> None:
        async with serving(limits=Limits(max_body=1024)) as env:
            refused = await raw(
                env,
                b"POST /webhook HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n",
                close_write=True,
            )
            assert status(refused) == 413 and b"100 Continue" not in refused
            body = json.dumps(DOCKER_HUB).encode()
            host, port = env.server.address
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                b"POST /webhook HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nX-Hub-Signature-256: "
                + sign(body).encode()
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
            )
            await writer.drain()
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(body)
            final = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            assert status(final) == 202

    run(test)


def test_connection_cap() -> None:
    async def test() -> None:
        async with serving(limits=Limits(max_connections=2, head_timeout=5)) as env:
            host, port = env.server.address
            idle = [await asyncio.open_connection(host, port) for _ in range(2)]
            await wait_until(lambda: env.server.connections == 2, "two connections held")
            assert status(await raw(env, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")) == 503
            for _, writer in idle:
                writer.close()
            await wait_until(lambda: not env.server.connections, "the held connections released")
            assert (await env.client.get(env.url + "/healthz")).status_code == 200

    run(test)


# -- per-client throttling of /webhook ----------------------------------------------------------------------


def test_webhooks_are_throttled_per_client_address() -> None:
    async def test() -> None:
        async with serving(limits=Limits(throttle=Throttle(burst=3, per_seconds=3600))) as env:
            body = json.dumps(DOCKER_HUB).encode()
            for _ in range(3):  # the burst: answered as usual
                r = await env.client.post(env.url + "/webhook", content=body)
                assert r.status_code == 401
            over = await env.client.post(env.url + "/webhook", content=body,
                                         headers={"X-Hub-Signature-256": sign(body)})
            assert over.status_code == 429  # even a valid one: nothing is read or triggered
            assert 1 <= int(over.headers["retry-after"]) <= 1200  # a token comes back every 1200 s
            assert webhook_results(env) == {"unauthorized": 3, "throttled": 1}
            # the other endpoints are not throttled
            assert (await env.client.get(env.url + "/healthz")).status_code == 200
            # another client address (127.0.0.2 is loopback too) has its own bucket; X-Forwarded-For
            # does not move a client into another one
            transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
            async with httpx.AsyncClient(transport=transport, timeout=10) as other:
                r = await other.post(env.url + "/webhook", content=body,
                                     headers={"X-Hub-Signature-256": sign(body)})
                assert r.status_code == 202
            spoofed = await env.client.post(
                env.url + "/webhook", content=body, headers={"X-Forwarded-For": "10.9.8.7"}
            )
            assert spoofed.status_code == 429
            await env.settle()
            assert env.passes == {"web": 2, "api": 1}

    run(test)


def test_the_throttle_refills_and_remembers_a_bounded_number_of_clients() -> None:
    async def test() -> None:
        async with serving(limits=Limits(throttle=Throttle(burst=1, per_seconds=0.2))) as env:
            assert (await env.client.post(env.url + "/webhook", content=b"{}")).status_code == 401
            # bounded polling: the bucket refills within 0.2 s; only a hang reaches the deadline
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            statuses: list[int] = []
            while not statuses or statuses[-1] == 429:
                assert loop.time() < deadline, statuses[-5:]
                statuses.append((await env.client.post(env.url + "/webhook", content=b"{}")).status_code)
            assert statuses[-1] == 401

    run(test)
    buckets = _Buckets(Throttle(burst=1, per_seconds=3600, max_clients=2))
    assert buckets.take("a") == 0 and buckets.take("b") == 0
    assert buckets.take("a") > 0  # empty
    assert buckets.take("c") == 0  # "b" was the least recently seen: forgotten
    assert buckets.take("b") == 0  # a fresh bucket for it ...
    assert buckets.take("a") == 0  # ... and "a" forgotten in turn


# -- the page handler (the status page's extension point) ---------------------------------------------------


def test_pages_serve_get_and_head_of_other_paths() -> None:
    seen: list[tuple[str, str, dict[str, str]]] = []

    async def pages(
        method: str, target: str, headers: Mapping[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes] | None:
        seen.append((method, target, dict(headers)))
        if target == "/boom":
            raise RuntimeError("a bug in the page")
        if target.startswith("/api/v1/status"):
            body = json.dumps({"target": target}).encode()
            return 200, [("Content-Type", "application/json"), ("X-Page", "status")], body
        if target == "/":
            return 200, [("X-Page", "index")], b"<!doctype html><p>hello</p>"
        return None

    handler: PageHandler = pages  # the signature the status page implements

    async def test() -> None:
        async with serving(pages=handler) as env:
            index = await env.client.get(env.url + "/", headers={"Authorization": "Bearer t"})
            assert index.status_code == 200 and index.text == "<!doctype html><p>hello</p>"
            assert index.headers["content-type"] == "text/html; charset=utf-8"  # the default
            assert index.headers["x-page"] == "index"
            assert seen[-1][:2] == ("GET", "/") and seen[-1][2]["authorization"] == "Bearer t"
            api = await env.client.get(env.url + "/api/v1/status?source=web&x=%20")
            assert api.json() == {"target": "/api/v1/status?source=web&x=%20"}
            assert api.headers["content-type"] == "application/json"
            head = await env.client.head(env.url + "/api/v1/status")
            assert head.status_code == 200 and head.content == b""
            assert head.headers["x-page"] == "status" and seen[-1][0] == "HEAD"
            assert (await env.client.get(env.url + "/nope")).status_code == 404  # the handler said None
            calls = len(seen)
            assert (await env.client.post(env.url + "/")).status_code == 404  # only GET and HEAD
            # the server's own endpoints never reach the handler
            assert (await env.client.get(env.url + "/healthz")).text == "ok\n"
            assert (await env.client.get(env.url + "/webhook")).status_code == 405
            assert len(seen) == calls
            assert (await env.client.get(env.url + "/boom")).status_code == 500
            assert (await env.client.get(env.url + "/healthz")).status_code == 200

    run(test)


def test_a_client_that_does_not_read_its_answer_is_dropped_after_the_write_timeout() -> None:
    big = b"x" * (64 << 20)  # far more than the socket buffers hold

    async def pages(
        method: str, target: str, headers: Mapping[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes] | None:
        return (200, [], big) if target == "/big" else None

    async def test() -> None:
        async with serving(pages=pages, limits=Limits(write_timeout=0.5)) as env:
            host, port = env.server.address
            _, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            await wait_until(lambda: env.server.connections == 1, "the reader connected")
            # never reading: the server gives up on the answer and closes the connection
            await wait_until(lambda: env.server.connections == 0, "the stalled answer dropped")
            assert (await env.client.get(env.url + "/healthz")).status_code == 200
            writer.close()

    run(test)


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    assert parse_listen("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_listen(":8080") == (None, 8080)
    for bad in ("8080", "host:", "host:99999", "::1:80", "host:http"):
        with pytest.raises(ConfigError):
            parse_listen(bad)


def test_port_in_use_is_reported() -> None:
    async def test() -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            server = HttpServer(_NullBackend(), metrics=Metrics(), listen=f"127.0.0.1:{port}")
            with pytest.raises(OSError):
                await server.start()

    run(test)


class _NullBackend:
    def alive(self) -> bool:
        return True

    def ready(self) -> bool:
        return True

    def sources_for(self, events: Any) -> list[str]:
        return []

    def trigger(self, sources: Any, *, reason: str = "webhook", events: Any = ()) -> list[str]:
        return []


# -- payload readers (pure) -------------------------------------------------------------------------------


def test_distribution_envelope() -> None:
    events = parse_push_events(
        json.dumps(distribution("Registry.Example.com:5000", "team/web", "1.2.3")).encode()
    )
    assert events == [PushEvent("registry.example.com:5000", "team/web", "1.2.3", "distribution")]
    # Docker Hub host names fold into docker.io, a one-segment path gets library/
    assert parse_push_events(json.dumps(distribution("index.docker.io", "nginx")).encode())[0].name == (
        "docker.io/library/nginx"
    )
    # no request.host: the host of target.url
    payload = distribution("r.example.com", "team/web")
    del payload["events"][0]["request"]
    assert parse_push_events(json.dumps(payload).encode())[0].registry == "r.example.com"
    # neither: the path alone
    del payload["events"][0]["target"]["url"]
    assert parse_push_events(json.dumps(payload).encode()) == [
        PushEvent(None, "team/web", "1.2.3", "distribution")
    ]
    # several events, pulls and blob pushes skipped
    many = distribution("r.io", "a/b")
    many["events"] += distribution("r.io", "a/c", action="pull")["events"]
    many["events"] += distribution("r.io", "a/d", tag=None)["events"]
    many["events"] += distribution("r.io", "a/e", tag="2")["events"]
    assert [e.name for e in parse_push_events(json.dumps(many).encode())] == ["r.io/a/b", "r.io/a/e"]


def test_docker_hub_harbor_github_payloads() -> None:
    assert parse_push_events(json.dumps(DOCKER_HUB).encode()) == [
        PushEvent("docker.io", "library/nginx", "1.27.1", "dockerhub")
    ]
    assert parse_push_events(json.dumps(HARBOR).encode()) == [
        PushEvent("harbor.example.com", "library/api", "2.0.1", "harbor")
    ]
    by_digest = json.loads(json.dumps(HARBOR))
    by_digest["event_data"]["resources"][0]["resource_url"] = (
        "harbor.example.com/library/api@sha256:" + "b" * 64
    )
    assert parse_push_events(json.dumps(by_digest).encode())[0].tag == "2.0.1"
    cloudevent = {
        "specversion": "1.0",
        "type": "harbor.artifact.pushed",
        "source": "/projects/1/webhook/policies/2",
        "id": "x",
        "data": HARBOR["event_data"],
    }
    assert parse_push_events(json.dumps(cloudevent).encode())[0].name == "harbor.example.com/library/api"
    assert parse_push_events(json.dumps(GITHUB).encode()) == [
        PushEvent("ghcr.io", "octo-org/api", "v3.1.0", "github")
    ]
    old_style = {"action": "published", "registry_package": GITHUB["package"]}
    assert parse_push_events(json.dumps(old_style).encode())[0].name == "ghcr.io/octo-org/api"
    npm = json.loads(json.dumps(GITHUB))
    npm["package"]["package_type"] = npm["package"]["ecosystem"] = "npm"
    assert parse_push_events(json.dumps(npm).encode()) == []
    assert parse_push_events(json.dumps({**GITHUB, "action": "deleted"}).encode()) == []
    with pytest.raises(MalformedWebhook):
        parse_push_events(
            json.dumps({**HARBOR, "event_data": {"resources": [{"resource_url": "::bad::"}]}}).encode()
        )


def test_github_form_encoded_payloads() -> None:
    from urllib.parse import urlencode

    body = urlencode({"payload": json.dumps(GITHUB)}).encode()
    form = "application/x-www-form-urlencoded"
    assert parse_push_events(body, form)[0].name == "ghcr.io/octo-org/api"
    with pytest.raises(MalformedWebhook):
        parse_push_events(b"other=1", form)
    with pytest.raises(MalformedWebhook):
        parse_push_events(body, "application/json")  # not JSON as declared

    async def test() -> None:
        async with serving() as env:
            r = await env.client.post(
                env.url + "/webhook", content=body,
                headers={"Content-Type": form, "X-Hub-Signature-256": sign(body)},
            )
            assert r.status_code == 202 and r.json()["sources"] == ["api"]

    run(test)


def test_authenticate_directly() -> None:
    body = b'{"x": 1}'
    assert authenticate(SECRET, body, {"x-hub-signature-256": sign(body)})
    assert authenticate(SECRET, body, {"x-hub-signature-256": sign(body).upper().replace("SHA256", "sha256")})
    assert authenticate(SECRET, body, {"x-signature-256": sign(body)})
    assert authenticate(SECRET, body, {"authorization": f"bearer {SECRET}"})
    assert authenticate(SECRET, body, {}, f"token={SECRET}&x=1")
    # one valid credential among wrong ones is enough; a wrong one alone is not
    assert authenticate(SECRET, body, {"authorization": "Bearer nope", "x-hub-signature-256": sign(body)})
    assert not authenticate(SECRET, body, {"authorization": "Bearer nope"})
    assert not authenticate(SECRET, body, {}, "token=nope")
    assert not authenticate("", body, {"authorization": "Bearer "})


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\u00e9\n'),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=4), children, max_size=3),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@settings(max_examples=200, deadline=None)
@given(_JSON, st.booleans())
def test_the_depth_scan_agrees_with_the_parsed_structure(value: Any, ascii_only: bool) -> None:
    # brackets, quotes and backslashes inside strings and keys must not count
    assert nesting_depth(json.dumps(value, ensure_ascii=ascii_only)) == _depth(value)
