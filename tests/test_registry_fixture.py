"""The registry test infrastructure itself: the real distribution registry, pushing, Basic/TLS/token auth.

Everything here talks to ``/usr/bin/docker-registry`` over HTTP; raw httpx does the checking so that a bug in
ImagePusher cannot hide behind itself.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.registry import (
    TOKEN_PASSWORD,
    TOKEN_USER,
    RegistryFactory,
    TokenIssuerFactory,
    require_registry_binary,
)
from tests.servers import (
    ImagePusher,
    PushError,
    RegistryServer,
    RegistryStartError,
    TLSFiles,
    TokenIssuer,
)
from tests.servers.push import (
    DOCKER_MANIFEST_LIST,
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    _parse_challenge,
    seed_storage,
)
from tests.servers.token_issuer import parse_scope

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def get_manifest(url: str, repository: str, reference: str, **kwargs: Any) -> httpx.Response:
    response = httpx.get(
        f"{url}/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT}, **kwargs
    )
    assert response.status_code == 200, response.text
    return response


def get_config(url: str, repository: str, manifest: dict[str, Any]) -> dict[str, Any]:
    response = httpx.get(f"{url}/v2/{repository}/blobs/{manifest['config']['digest']}")
    assert response.status_code == 200
    config: dict[str, Any] = response.json()
    return config


# -- anonymous registry, pushing --------------------------------------------------------------------------


def test_pushed_tags_are_listed_and_served_with_build_time(
    registry: RegistryServer, pusher: ImagePusher
) -> None:
    tags = {"1.0.0": T0, "1.1.0": T0 + timedelta(days=1), "latest": None}
    digests = pusher.push_many("team/app", tags)

    listed = httpx.get(f"{registry.url}/v2/team/app/tags/list")
    assert listed.status_code == 200
    assert listed.json()["name"] == "team/app"
    assert sorted(listed.json()["tags"]) == sorted(tags)
    assert len(set(digests.values())) == 3

    response = get_manifest(registry.url, "team/app", "1.1.0")
    assert response.headers["Content-Type"] == OCI_MANIFEST
    assert response.headers["Docker-Content-Digest"] == digests["1.1.0"]
    config = get_config(registry.url, "team/app", response.json())
    assert config["created"] == "2024-03-02T12:00:00Z"
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert "variant" not in config

    undated = get_config(registry.url, "team/app", get_manifest(registry.url, "team/app", "latest").json())
    assert "created" not in undated
    assert registry.host == registry.url.removeprefix("http://")


def test_same_build_time_still_gives_distinct_digests(pusher: ImagePusher) -> None:
    digests = pusher.push_many("same/time", {"a": T0, "b": T0})
    assert digests["a"] != digests["b"]


def test_multi_platform_index_with_annotations_and_labels(
    registry: RegistryServer, pusher: ImagePusher
) -> None:
    created = "2024-03-01T12:00:00Z"
    digest = pusher.push(
        "multi/arch",
        "2.0",
        created=T0,
        platforms=("linux/amd64", "linux/arm64/v8", "linux/arm/v7"),
        annotations={"org.opencontainers.image.created": created},
        labels={"maintainer": "team"},
    )
    response = get_manifest(registry.url, "multi/arch", "2.0")
    assert response.headers["Content-Type"] == OCI_INDEX
    assert response.headers["Docker-Content-Digest"] == digest
    index = response.json()
    assert index["mediaType"] == OCI_INDEX
    assert index["annotations"] == {"org.opencontainers.image.created": created}
    platforms = [entry["platform"] for entry in index["manifests"]]
    assert platforms == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
        {"architecture": "arm", "os": "linux", "variant": "v7"},
    ]
    for entry in index["manifests"]:
        child = get_manifest(registry.url, "multi/arch", entry["digest"])
        assert child.headers["Content-Type"] == OCI_MANIFEST == entry["mediaType"]
        assert len(child.content) == entry["size"]
        config = get_config(registry.url, "multi/arch", child.json())
        assert config["architecture"] == entry["platform"]["architecture"]
        assert config.get("variant") == entry["platform"].get("variant")
        assert config["config"]["Labels"] == {"maintainer": "team"}


def test_docker_media_types(registry: RegistryServer) -> None:
    with ImagePusher(registry.url, media_types="docker") as docker:
        docker.push("dock/er", "1", platforms=("linux/amd64", "linux/s390x"))
        docker.push("dock/er", "2")
        with pytest.raises(ValueError, match="annotations"):
            docker.push("dock/er", "3", annotations={"a": "b"})
    assert get_manifest(registry.url, "dock/er", "1").headers["Content-Type"] == DOCKER_MANIFEST_LIST
    single = get_manifest(registry.url, "dock/er", "2")
    assert single.headers["Content-Type"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert single.json()["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"


def test_retag_delete_and_helpers(registry: RegistryServer, pusher: ImagePusher) -> None:
    first = pusher.push("ops/tool", "1.0")
    pusher.push("ops/tool", "1.1")
    assert pusher.retag("ops/tool", "1.0", "stable") == first
    assert pusher.digest("ops/tool", "stable") == first
    assert sorted(pusher.tags("ops/tool")) == ["1.0", "1.1", "stable"]
    assert pusher.delete_tag("ops/tool", "1.1") != first
    # distribution deletes manifests, not tags: "1.0" and "stable" share one manifest and survive together.
    assert sorted(pusher.tags("ops/tool")) == ["1.0", "stable"]
    gone = httpx.head(f"{registry.url}/v2/ops/tool/manifests/1.1", headers={"Accept": MANIFEST_ACCEPT})
    assert gone.status_code == 404
    with pytest.raises(PushError, match="404"):
        pusher.tags("no/such/repository")


def test_push_bulk_and_seed_storage_build_identical_registries(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    images = {
        "bulk/a": {f"1.{i}.0": T0 + timedelta(hours=i) for i in range(5)},
        "bulk/b/deep": ["x", "y"],
    }
    pushed_registry = registry_factory()
    with ImagePusher(pushed_registry.url) as bulk:
        pushed = bulk.push_bulk(images, workers=4)
    seeded = seed_storage(tmp_path / "seeded", images)
    assert pushed == seeded
    seeded_registry = registry_factory(storage_dir=tmp_path / "seeded")
    for server in (pushed_registry, seeded_registry):
        catalog = httpx.get(f"{server.url}/v2/_catalog").json()["repositories"]
        assert catalog == ["bulk/a", "bulk/b/deep"]
        for repository, tags in pushed.items():
            listed = httpx.get(f"{server.url}/v2/{repository}/tags/list").json()["tags"]
            assert sorted(listed) == sorted(tags)
            for tag, digest in tags.items():
                response = get_manifest(server.url, repository, tag)
                assert response.headers["Docker-Content-Digest"] == digest
                for descriptor in (response.json()["config"], *response.json()["layers"]):
                    blob = httpx.get(f"{server.url}/v2/{repository}/blobs/{descriptor['digest']}")
                    assert blob.status_code == 200 and len(blob.content) == descriptor["size"]
    config = get_config(
        seeded_registry.url, "bulk/a", get_manifest(seeded_registry.url, "bulk/a", "1.4.0").json()
    )
    assert config["created"] == "2024-03-01T16:00:00Z"


def test_session_registry_serves_pushes(
    registry_session: RegistryServer, request: pytest.FixtureRequest
) -> None:
    repository = f"session/{request.node.name.lower()}"
    with ImagePusher(registry_session.url) as client:
        digest = client.push(repository, "1")
    assert get_manifest(registry_session.url, repository, "1").headers["Docker-Content-Digest"] == digest


# -- server lifecycle -------------------------------------------------------------------------------------


def test_start_failure_carries_the_registry_log(tmp_path: Path) -> None:
    require_registry_binary()
    server = RegistryServer(tls=(tmp_path / "missing.pem", tmp_path / "missing.key"), work_dir=tmp_path / "r")
    with pytest.raises(RegistryStartError, match=r"(?s)exited with status 1.*missing\.pem: no such file"):
        server.start()
    assert not server.running


def test_port_taken_between_probe_and_bind_is_retried(tmp_path: Path) -> None:
    require_registry_binary()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])

        class Racy(RegistryServer):
            def _pick_port(self) -> int:
                return next(ports, None) or super()._pick_port()

        with Racy(work_dir=tmp_path / "r") as server:
            assert server.port != taken
            assert httpx.get(f"{server.url}/v2/").status_code == 200

        with pytest.raises(RegistryStartError, match="could not bind"):
            RegistryServer(port=taken, work_dir=tmp_path / "fixed").start()


def test_stop_terminates_the_process_and_removes_owned_directories() -> None:
    require_registry_binary()
    server = RegistryServer().start()
    work_dir, storage_dir, url = server.work_dir, server.storage_dir, server.url
    server.stop()
    server.stop()  # idempotent
    assert not server.running
    assert not work_dir.exists() and not storage_dir.exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/v2/", timeout=2)


def test_registry_dies_with_a_crashed_parent(tmp_path: Path) -> None:
    require_registry_binary()
    script = (
        "import os, sys\n"
        "from image_updater.demo.registry import RegistryServer\n"
        "server = RegistryServer(work_dir=sys.argv[1], storage_dir=sys.argv[2]).start()\n"
        "print(server.pid, flush=True)\n"
        "os._exit(3)  # no stop(), no atexit: a crash\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "w"), str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    pid = int(done.stdout)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and _state(pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists() or _state(pid) == "Z"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_notifications_reach_the_endpoint(registry_factory: RegistryFactory) -> None:
    events: list[dict[str, Any]] = []
    arrived = threading.Event()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            events.append({"auth": self.headers.get("Authorization"), "envelope": json.loads(body)})
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Length", "0")
            self.end_headers()
            arrived.set()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        server = registry_factory(
            notify_url=f"http://127.0.0.1:{receiver.server_address[1]}/webhook",
            notify_headers={"Authorization": "Bearer hook-secret"},
        )
        with ImagePusher(server.url) as client:
            digest = client.push("hooked/app", "9.9")
        # Bounded wait, no timing assertion: delivery is asynchronous.
        deadline = 20
        while not any(_is_tag_push(e, digest) for e in events) and arrived.wait(deadline):
            arrived.clear()
        assert any(_is_tag_push(e, digest) for e in events), events
        assert {e["auth"] for e in events} == {"Bearer hook-secret"}
    finally:
        receiver.shutdown()
        receiver.server_close()


def _is_tag_push(event: dict[str, Any], digest: str) -> bool:
    return any(
        item["action"] == "push"
        and item["target"].get("tag") == "9.9"
        and item["target"]["digest"] == digest
        and item["target"]["repository"] == "hooked/app"
        for item in event["envelope"]["events"]
    )


@pytest.mark.parametrize(
    ("environ", "outcome"),
    [
        ({}, pytest.skip.Exception),
        ({"CI": "true"}, pytest.fail.Exception),
        ({"CI": "false"}, pytest.skip.Exception),
    ],
)
def test_missing_binary_skips_locally_and_fails_in_ci(
    environ: dict[str, str], outcome: type[Exception], tmp_path: Path
) -> None:
    with pytest.raises(outcome, match="docker-registry"):
        require_registry_binary(tmp_path / "no-registry", environ)
    require_registry_binary(__file__, environ)  # present: neither


# -- Basic auth -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_htpasswd_binary", [True, False], ids=["htpasswd", "libc-bcrypt"])
def test_htpasswd_registry_refuses_anonymous_and_accepts_the_user(
    registry_factory: RegistryFactory, monkeypatch: pytest.MonkeyPatch, with_htpasswd_binary: bool
) -> None:
    if not with_htpasswd_binary:
        monkeypatch.setattr("tests.servers.registry_server.shutil.which", lambda name: None)
    server = registry_factory(htpasswd={"alice": "wonder land:1"})
    assert (server.work_dir / "htpasswd").read_text().startswith("alice:$2")

    anonymous = httpx.get(f"{server.url}/v2/")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    assert httpx.get(f"{server.url}/v2/", auth=("alice", "wrong")).status_code == 401
    assert httpx.get(f"{server.url}/v2/", auth=("alice", "wonder land:1")).status_code == 200

    with ImagePusher(server.url, username="alice", password="wonder land:1") as alice:
        alice.push("private/app", "1.0")
        assert alice.tags("private/app") == ["1.0"]
    with ImagePusher(server.url) as nobody, pytest.raises(PushError, match="401"):
        nobody.push("private/app", "1.1")
    with (
        ImagePusher(server.url, username="alice", password="nope") as wrong,
        pytest.raises(PushError, match="401"),
    ):
        wrong.tags("private/app")


# -- TLS --------------------------------------------------------------------------------------------------


def test_tls_registry_verifies_against_the_test_ca_only(
    registry_factory: RegistryFactory, tls_ca: TLSFiles
) -> None:
    server = registry_factory(tls=tls_ca.server_pair)
    assert server.url.startswith("https://127.0.0.1:")
    trusting = ssl.create_default_context(cafile=str(tls_ca.ca_file))
    assert httpx.get(f"{server.url}/v2/", verify=trusting).status_code == 200
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{server.url}/v2/")
    # localhost is in the certificate too.
    assert httpx.get(f"https://localhost:{server.port}/v2/", verify=trusting).status_code == 200

    with ImagePusher(server.url, ca_file=str(tls_ca.ca_file)) as client:
        client.push("secure/app", "1")
        assert client.tags("secure/app") == ["1"]
    with ImagePusher(server.url) as untrusting, pytest.raises(httpx.ConnectError):
        untrusting.push("secure/app", "2")


# -- Bearer token flow ------------------------------------------------------------------------------------


@pytest.fixture
def token_registry(registry_factory: RegistryFactory, token_issuer: TokenIssuer) -> RegistryServer:
    return registry_factory(token_auth=token_issuer.auth)


def fetch_token(
    issuer: TokenIssuer, scope: str | None, auth: tuple[str, str] | None = None
) -> httpx.Response:
    params = {"service": issuer.service}
    if scope:
        params["scope"] = scope
    return httpx.get(issuer.realm, params=params, auth=auth)


def test_token_flow_by_hand(token_registry: RegistryServer, token_issuer: TokenIssuer) -> None:
    anonymous = httpx.get(f"{token_registry.url}/v2/")
    assert anonymous.status_code == 401
    scheme, params = _parse_challenge(anonymous.headers["WWW-Authenticate"])
    assert scheme == "bearer"
    assert params == {"realm": token_issuer.realm, "service": token_issuer.service}

    answer = fetch_token(token_issuer, None)
    assert answer.status_code == 200
    body = answer.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    datetime.fromisoformat(body["issued_at"])
    claims = TokenIssuer.claims_of(body["token"])
    assert (claims["iss"], claims["aud"], claims["sub"], claims["access"]) == (
        token_issuer.issuer,
        token_issuer.service,
        "",
        [],
    )
    assert claims["exp"] - claims["iat"] == 300
    ok = httpx.get(f"{token_registry.url}/v2/", headers={"Authorization": f"Bearer {body['token']}"})
    assert ok.status_code == 200

    # A repository request names its scope in the challenge; a pull token for it lists the tags.
    with ImagePusher(token_registry.url, username=TOKEN_USER, password=TOKEN_PASSWORD) as client:
        client.push("tok/app", "1.0")
    denied = httpx.get(f"{token_registry.url}/v2/tok/app/tags/list")
    assert _parse_challenge(denied.headers["WWW-Authenticate"])[1]["scope"] == "repository:tok/app:pull"
    token = fetch_token(token_issuer, "repository:tok/app:pull").json()["token"]
    listed = httpx.get(
        f"{token_registry.url}/v2/tok/app/tags/list", headers={"Authorization": f"Bearer {token}"}
    )
    assert listed.json()["tags"] == ["1.0"]

    # A token signed by another key is refused even with the right claims.
    forged = token.rsplit(".", 1)[0] + ".AAAA"
    refused = httpx.get(
        f"{token_registry.url}/v2/tok/app/tags/list", headers={"Authorization": f"Bearer {forged}"}
    )
    assert refused.status_code == 401


def test_push_through_the_token_flow_caches_tokens(
    token_registry: RegistryServer, token_issuer: TokenIssuer
) -> None:
    with ImagePusher(token_registry.url, username=TOKEN_USER, password=TOKEN_PASSWORD) as client:
        client.push("cached/app", "1")
        after_first = token_issuer.request_count
        client.push_many("cached/app", ["2", "3", "4"])
        assert token_issuer.request_count == after_first == client.token_fetches == 1
        assert sorted(client.tags("cached/app")) == ["1", "2", "3", "4"]  # a pull-scope token: one more
        assert token_issuer.request_count == 2
    # The first request (a blob HEAD) was challenged for pull; the pusher asked for what it needs next too.
    first = token_issuer.requests[0]
    assert (first.user, first.service, first.scopes, first.status) == (
        TOKEN_USER,
        token_issuer.service,
        ("repository:cached/app:pull,push", "repository:cached/app:pull"),
        200,
    )
    assert [(a.type, a.name, a.actions) for a in first.granted] == [
        ("repository", "cached/app", ("pull", "push")),
        ("repository", "cached/app", ("pull",)),
    ]


def test_anonymous_token_pulls_but_cannot_push(
    token_registry: RegistryServer, token_issuer: TokenIssuer
) -> None:
    with ImagePusher(token_registry.url, username=TOKEN_USER, password=TOKEN_PASSWORD) as client:
        client.push("anon/app", "1")
    with ImagePusher(token_registry.url) as anonymous:
        assert anonymous.tags("anon/app") == ["1"]
        with pytest.raises(PushError, match="401"):
            anonymous.push("anon/app", "2")
    assert token_issuer.requests[-1].user is None
    assert token_issuer.requests[-1].granted[0].actions == ("pull",)


def test_issuer_rejects_wrong_credentials(token_registry: RegistryServer, token_issuer: TokenIssuer) -> None:
    assert fetch_token(token_issuer, "repository:x:pull", auth=(TOKEN_USER, "wrong")).status_code == 401
    with (
        ImagePusher(token_registry.url, username=TOKEN_USER, password="wrong") as client,
        pytest.raises(PushError, match=r"fetch token.*401"),
    ):
        client.push("x/y", "1")
    assert token_issuer.requests[-1].status == 401


def test_issuer_options_anonymous_user_actions_and_lifetime(
    registry_factory: RegistryFactory, token_issuer_factory: TokenIssuerFactory
) -> None:
    issuer = token_issuer_factory(
        users={"writer": "w", "reader": "r"},
        user_actions={"reader": ["pull"]},
        allow_anonymous_pull=False,
        expires_in=60,
    )
    server = registry_factory(token_auth=issuer.auth)
    with ImagePusher(server.url, username="writer", password="w") as writer:
        writer.push("opts/app", "1")
    with ImagePusher(server.url, username="reader", password="r") as reader:
        assert reader.tags("opts/app") == ["1"]
        with pytest.raises(PushError, match="401"):
            reader.push("opts/app", "2")
    with ImagePusher(server.url) as anonymous, pytest.raises(PushError, match="401"):
        anonymous.tags("opts/app")
    assert issuer.requests[-1].granted == ()
    assert fetch_token(issuer, None).json()["expires_in"] == 60

    # A token the client believes fresh but whose exp lies beyond distribution's 60 s leeway is refused.
    stale = token_issuer_factory(token_lifetime=-3600)
    stale_server = registry_factory(token_auth=stale.auth)
    token = fetch_token(stale, "repository:opts/app:pull").json()["token"]
    assert (
        httpx.get(f"{stale_server.url}/v2/", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    )


def test_oauth2_password_grant(token_issuer: TokenIssuer) -> None:
    answer = httpx.post(
        token_issuer.realm,
        data={
            "grant_type": "password",
            "username": TOKEN_USER,
            "password": TOKEN_PASSWORD,
            "service": token_issuer.service,
            "scope": "repository:a/b:pull",
            "client_id": "test",
        },
    )
    assert answer.status_code == 200
    assert answer.json()["scope"] == "repository:a/b:pull"
    assert TokenIssuer.claims_of(answer.json()["access_token"])["sub"] == TOKEN_USER


def test_token_realm_over_https(
    registry_factory: RegistryFactory, token_issuer_factory: TokenIssuerFactory, tls_ca: TLSFiles
) -> None:
    issuer = token_issuer_factory(tls=tls_ca)
    assert issuer.realm.startswith("https://")
    server = registry_factory(token_auth=issuer.auth, tls=tls_ca)
    with ImagePusher(
        server.url, username=TOKEN_USER, password=TOKEN_PASSWORD, ca_file=str(tls_ca.ca_file)
    ) as c:
        c.push("tls/token", "1")
        assert c.tags("tls/token") == ["1"]


@pytest.mark.parametrize(
    ("scope", "parsed"),
    [
        ("repository:team/app:pull,push", ("repository", "team/app", ("pull", "push"))),
        ("registry:catalog:*", ("registry", "catalog", ("*",))),
        ("repository:a:", ("repository", "a", ())),
    ],
)
def test_parse_scope(scope: str, parsed: tuple[str, str, tuple[str, ...]]) -> None:
    access = parse_scope(scope)
    assert access is not None
    assert (access.type, access.name, access.actions) == parsed
    assert parse_scope("nonsense") is None


def test_parse_challenge_with_commas_in_quoted_scope() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="reg",'
        'scope="repository:a:pull,push repository:b:pull"'
    )
    assert _parse_challenge(header) == (
        "bearer",
        {
            "realm": "https://auth.example/token",
            "service": "reg",
            "scope": "repository:a:pull,push repository:b:pull",
        },
    )
    assert _parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Raw httpx calls above read proxy variables; the registries live on loopback.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield
