"""Pure parts of the registry layer: prefix matching, challenges, Link and rate headers, manifest and config
parsing, and the sqlite metadata cache (schema, persistence, damage)."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from image_updater.errors import ConfigError, RegistryAuthError, TransientRegistryError
from image_updater.registry import MetadataCache, RegistryOptions, options_for, options_from_settings
from image_updater.registry.auth import Challenge, parse_challenges, token_from_response
from image_updater.registry.cache import CACHE_FILE, DigestMeta, TagDigest, _encode_tags
from image_updater.registry.client import next_link
from image_updater.registry.credentials import Credential, CredentialStore
from image_updater.registry.manifests import (
    ACCEPT_MANIFESTS,
    config_metadata,
    parse_manifest,
    parse_timestamp,
    sha256_digest,
)
from image_updater.registry.options import is_loopback
from image_updater.registry.transport import (
    Budget,
    Throttle,
    parse_rate_header,
    parse_retry_after,
)
from image_updater.registry.wire import Headers

# ------------------------------------------------------------------------------------------ prefix matching

ENTRIES = [
    RegistryOptions(prefix="docker.io", max_concurrency=2),
    RegistryOptions(prefix="ghcr.io"),
    RegistryOptions(prefix="ghcr.io/acme", credentials="env:ACME"),
    RegistryOptions(prefix="127.0.0.1:5000", insecure=True),
    RegistryOptions(prefix="Index.Docker.IO/bitnami", rate_limit=1.0),
]


@pytest.mark.parametrize(
    ("image", "prefix"),
    [
        ("docker.io/library/nginx", "docker.io"),
        ("docker.io/bitnami/redis", "Index.Docker.IO/bitnami"),
        ("docker.io/bitnamilegacy/redis", "docker.io"),
        ("ghcr.io/acme/app", "ghcr.io/acme"),
        ("ghcr.io/acme/team/app", "ghcr.io/acme"),
        ("ghcr.io/acme-labs/app", "ghcr.io"),
        ("127.0.0.1:5000/x", "127.0.0.1:5000"),
        ("127.0.0.1:50001/x", "127.0.0.1:50001"),  # not covered: the defaults for its own host
        ("quay.io/org/app", "quay.io"),
    ],
)
def test_longest_whole_segment_prefix_wins(image: str, prefix: str) -> None:
    assert options_for(image, ENTRIES).prefix == prefix


def test_unmatched_image_gets_secure_defaults() -> None:
    defaults = options_for("registry.example.com/a/b", ENTRIES)
    assert (defaults.insecure, defaults.tls_verify, defaults.ca_file, defaults.credentials) == (
        False, True, None, None,
    )
    assert defaults.timeout == 10.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prefix": ""},
        {"prefix": " ghcr.io"},
        {"prefix": "x.io", "max_concurrency": 0},
        {"prefix": "x.io", "rate_limit": 0},
        {"prefix": "x.io", "timeout": 0},
        {"prefix": "x.io", "credentials": "user:password"},
        {"prefix": "x.io", "api_url": "ftp://mirror"},
    ],
)
def test_invalid_options_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        RegistryOptions(**kwargs)  # type: ignore[arg-type]


def test_options_from_settings_reads_the_settings_attributes() -> None:
    entry = SimpleNamespace(
        prefix="ghcr.io/acme", api_url="https://mirror.example.com", insecure=False, tls_verify=True,
        ca_file=Path("/etc/ca.pem"), credentials="env:ACME", rate_limit=5, max_concurrency=3,
    )
    [options] = options_from_settings(SimpleNamespace(registries=[entry]))
    assert options == RegistryOptions(
        prefix="ghcr.io/acme", api_url="https://mirror.example.com", ca_file="/etc/ca.pem",
        credentials="env:ACME", rate_limit=5.0, max_concurrency=3,
    )
    assert options_from_settings(SimpleNamespace(registries=[])) == []


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("localhost:5000", True), ("127.0.0.1:5000", True), ("127.8.9.1", True),
     ("[::1]:5000", True), ("10.0.0.1:5000", False), ("registry.local", False), ("ghcr.io", False)],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# --------------------------------------------------------------------------------------------- challenges


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/nginx:pull"',
            [Challenge("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                                  "scope": "repository:library/nginx:pull"})],
        ),
        ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
        (
            'Basic realm="x", Bearer realm="https://t.example/token", service=reg',
            [Challenge("basic", {"realm": "x"}),
             Challenge("bearer", {"realm": "https://t.example/token", "service": "reg"})],
        ),
        (
            'Bearer realm="a\\"b", error="insufficient_scope"',
            [Challenge("bearer", {"realm": 'a"b', "error": "insufficient_scope"})],
        ),
        ("Negotiate", [Challenge("negotiate", {})]),
        ("", []),
        ('BEARER REALM="https://x/t"', [Challenge("bearer", {"realm": "https://x/t"})]),
    ],
)
def test_parse_challenges(header: str, expected: list[Challenge]) -> None:
    assert parse_challenges(header) == expected


def test_parse_challenges_from_several_headers() -> None:
    got = parse_challenges(['Basic realm="a"', 'Bearer realm="https://b/t",service="s"'])
    assert [c.scheme for c in got] == ["basic", "bearer"]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_parse_challenges_never_crashes(header: str) -> None:
    for challenge in parse_challenges(header):
        assert challenge.scheme == challenge.scheme.lower()


@pytest.mark.parametrize(
    ("answer", "lifetime"),
    [
        ({"token": "t"}, 60),
        ({"access_token": "t", "expires_in": 300}, 300),
        ({"token": "t", "expires_in": 0}, 60),
        ({"token": "t", "expires_in": True}, 60),
    ],
)
def test_token_lifetime_defaults_to_60_seconds(answer: dict[str, object], lifetime: int) -> None:
    token = token_from_response(answer, now=1000.0)
    assert token.value == "t"
    assert 1000 + lifetime - 10 <= token.expires_at < 1000 + lifetime


@pytest.mark.parametrize("answer", [[], {}, {"token": ""}, {"token": 5}])
def test_token_answers_without_a_token_are_rejected(answer: object) -> None:
    with pytest.raises(ValueError):
        token_from_response(answer, now=0.0)


# ----------------------------------------------------------------------------------- Link, rate headers


@pytest.mark.parametrize(
    ("header", "target"),
    [
        ('</v2/a/tags/list?last=x&n=1000>; rel="next"', "/v2/a/tags/list?last=x&n=1000"),
        ("<https://ghcr.io/v2/a/tags/list?last=x>; rel=next", "https://ghcr.io/v2/a/tags/list?last=x"),
        ('<https://x/prev>; rel="prev", </v2/a/tags/list?n=50&next_page=abc>; rel="next"',
         "/v2/a/tags/list?n=50&next_page=abc"),
        ('<https://x/y>; rel="first last"', None),
        ('<https://x/y>; rel="prev next"', "https://x/y"),
        ("", None),
        (None, None),
    ],
)
def test_next_link(header: str | None, target: str | None) -> None:
    assert next_link(header) == target


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7", 7.0), ("0", 0.0), (" 2.5 ", 2.5), ("-3", 0.0), ("soon", None), (None, None), ("nan", None),
     ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0)],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after(value, now=now) == seconds


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("76;w=21600", (76, 21600.0)), ("100", (100, None)), ("x;w=1", None), (None, None)],
)
def test_parse_rate_header(value: str | None, parsed: tuple[int, float | None] | None) -> None:
    assert parse_rate_header(value) == parsed


# ---------------------------------------------------------------------------------- manifests and configs


def test_accept_header_names_all_four_manifest_types() -> None:
    for media_type in (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ):
        assert media_type in ACCEPT_MANIFESTS


def test_index_platforms_skip_attestations() -> None:
    body = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"digest": "sha256:" + "a" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:" + "b" * 64,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": "sha256:" + "c" * 64, "platform": {"os": "unknown", "architecture": "unknown"}},
        ],
        "annotations": {"org.opencontainers.image.created": "2024-05-01T10:00:00.123456789Z"},
    }).encode()
    manifest = parse_manifest(body, None, None)
    assert manifest.is_index and manifest.digest == sha256_digest(body)
    assert manifest.platforms == frozenset({"linux/amd64", "linux/arm64/v8"})
    assert manifest.created == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)


def test_image_manifest_names_its_config_and_keeps_the_header_digest() -> None:
    body = json.dumps({"schemaVersion": 2, "config": {"digest": "sha256:" + "c" * 64}}).encode()
    media_type = "application/vnd.docker.distribution.manifest.v2+json"
    manifest = parse_manifest(body, media_type, "sha256:" + "d" * 64)
    assert not manifest.is_index
    assert manifest.config_digest == "sha256:" + "c" * 64
    assert manifest.digest == "sha256:" + "d" * 64
    assert manifest.media_type == "application/vnd.docker.distribution.manifest.v2+json"


def test_schema1_history_gives_build_time() -> None:
    v1 = json.dumps({"created": "2019-01-02T03:04:05Z", "os": "linux", "architecture": "amd64"})
    body = json.dumps({"schemaVersion": 1, "history": [{"v1Compatibility": v1}]}).encode()
    manifest = parse_manifest(body, None, None)
    assert manifest.created == datetime(2019, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert manifest.platforms == frozenset({"linux/amd64"})


@pytest.mark.parametrize(
    "body", [b"[]", b'{"schemaVersion": 2}', b'{"manifests": [{}]}', b"{not json", b"\xff"]
)
def test_garbage_manifests_raise_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_manifest(body, None, None)


@pytest.mark.parametrize(
    ("config", "created", "platforms"),
    [
        ({"created": "2024-01-02T03:04:05+02:00", "os": "linux", "architecture": "arm", "variant": "v7"},
         datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC), frozenset({"linux/arm/v7"})),
        ({"created": "1970-01-01T00:00:00Z", "os": "linux", "architecture": "amd64"}, None,
         frozenset({"linux/amd64"})),
        ({"created": "0001-01-01T00:00:00Z"}, None, None),
        ({"config": {"Labels": {"org.opencontainers.image.created": "2023-06-07T08:09:10Z"}}},
         datetime(2023, 6, 7, 8, 9, 10, tzinfo=UTC), None),
        ({"created": "yesterday"}, None, None),
    ],
)
def test_config_metadata(
    config: dict[str, object], created: datetime | None, platforms: frozenset[str] | None
) -> None:
    assert config_metadata(json.dumps(config).encode()) == (created, platforms)


def test_parse_timestamp_handles_go_nanoseconds_and_offsets() -> None:
    nanoseconds = parse_timestamp("2024-05-01T10:00:00.999999999Z")
    assert nanoseconds == datetime(2024, 5, 1, 10, 0, 0, 999999, tzinfo=UTC)
    assert parse_timestamp("2024-05-01T10:00:00") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_timestamp(None) is None
    assert parse_timestamp(17) is None


# --------------------------------------------------------------------------------------------------- cache

T1 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def test_cache_round_trip_survives_reopening(tmp_path: Path) -> None:
    with MetadataCache.in_dir(tmp_path) as cache:
        cache.put_tags("r.io/a", ["1", "2"], fetched_at=100.0)
        cache.put_tag_digests("r.io/a", {"1": TagDigest("sha256:1", 100.0, 200.0)})
        cache.put_digest_meta("r.io/a", {
            "sha256:1": DigestMeta(T1, frozenset({"linux/amd64"})),
            "sha256:2": DigestMeta(None, None, "hub"),
        })
    assert (tmp_path / CACHE_FILE).exists()
    with MetadataCache.in_dir(tmp_path) as cache:
        assert cache.tags("r.io/a") == (["1", "2"], 100.0)
        assert cache.tag_digests("r.io/a") == {"1": TagDigest("sha256:1", 100.0, 200.0)}
        assert cache.digest_meta("r.io/a", ["sha256:1", "sha256:2", "sha256:3"]) == {
            "sha256:1": DigestMeta(T1, frozenset({"linux/amd64"})),
            "sha256:2": DigestMeta(None, None, "hub"),
        }
        assert cache.digest_meta("r.io/other", ["sha256:1"]) == {}


def test_vanished_tags_lose_their_digest(tmp_path: Path) -> None:
    with MetadataCache(tmp_path / "c.sqlite3") as cache:
        cache.put_tag_digests("r.io/a", {"1": TagDigest("sha256:1", 1, 2), "2": TagDigest("sha256:2", 1, 2)})
        cache.put_tags("r.io/a", ["2"], fetched_at=5.0)
        assert set(cache.tag_digests("r.io/a")) == {"2"}


def test_many_digests_in_one_lookup() -> None:
    with MetadataCache(None) as cache:
        metas = {f"sha256:{i}": DigestMeta(T1, None) for i in range(1200)}
        cache.put_digest_meta("r.io/a", metas)
        assert len(cache.digest_meta("r.io/a", metas)) == 1200


def test_damaged_cache_file_is_replaced(tmp_path: Path) -> None:
    (tmp_path / CACHE_FILE).write_bytes(b"this is not a database" * 100)
    with MetadataCache.in_dir(tmp_path) as cache:
        cache.put_tags("r.io/a", ["1"], 1.0)
        assert cache.tags("r.io/a") == (["1"], 1.0)


def test_cache_of_another_schema_version_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / CACHE_FILE
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE tag_lists (image TEXT, junk TEXT)")
    db.execute("PRAGMA user_version=99")
    db.commit()
    db.close()
    with MetadataCache(path) as cache:
        cache.put_tags("r.io/a", ["1"], 1.0)
        assert cache.tags("r.io/a") == (["1"], 1.0)


def test_unusable_cache_dir_falls_back_to_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with MetadataCache.in_dir(blocker / "cache") as cache:
        assert cache.path is None
        cache.put_tags("r.io/a", ["1"], 1.0)
        assert cache.tags("r.io/a") == (["1"], 1.0)


# -------------------------------------------------------------------------------------------------- pacing


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(round(seconds, 6))
        self.now += seconds


def test_rate_limit_spaces_requests() -> None:
    fake = FakeTime()
    throttle = Throttle(8, 4.0, clock=fake.clock, sleep=fake.sleep)

    async def five() -> None:
        for _ in range(5):
            async with throttle.slot(pull=False, budget=Budget(10, clock=fake.clock), context="c"):
                pass

    asyncio.run(five())
    assert fake.waits == [0.25, 0.25, 0.25, 0.25]


def test_429_pauses_the_whole_registry_and_gives_up_past_the_budget() -> None:
    fake = FakeTime()
    throttle = Throttle(8, None, clock=fake.clock, sleep=fake.sleep)
    throttle.pause(3.0)

    async def one(budget: float) -> None:
        limit = Budget(budget, clock=fake.clock)
        async with throttle.slot(pull=False, budget=limit, context="registry r, image a"):
            pass

    asyncio.run(one(10))
    assert fake.waits == [3.0]
    throttle.pause(60.0)
    with pytest.raises(TransientRegistryError, match="registry r, image a: the registry is rate limited"):
        asyncio.run(one(10))


def test_low_pull_budget_spreads_pulls_over_the_window() -> None:
    fake = FakeTime()
    throttle = Throttle(8, None, clock=fake.clock, sleep=fake.sleep)
    throttle.note_headers(Headers.of({"ratelimit-limit": "100;w=600", "ratelimit-remaining": "50;w=600"}))

    async def pull(budget: float) -> None:
        async with throttle.slot(pull=True, budget=Budget(budget, clock=fake.clock), context="c"):
            pass

    asyncio.run(pull(10))
    assert fake.waits == [] and throttle.remaining == 50
    throttle.note_headers(Headers.of({"ratelimit-limit": "100;w=600", "ratelimit-remaining": "10;w=600"}))
    asyncio.run(pull(100))  # 600 s / 10 pulls left: one pull per minute
    assert fake.waits == [60.0]
    with pytest.raises(TransientRegistryError, match="pull rate limit"):
        asyncio.run(pull(10))

    async def not_a_pull() -> None:
        async with throttle.slot(pull=False, budget=Budget(1, clock=fake.clock), context="c"):
            pass

    asyncio.run(not_a_pull())  # tags lists and blobs are no pulls


def test_batched_writes_are_committed_together(tmp_path: Path) -> None:
    path = tmp_path / CACHE_FILE
    with MetadataCache(path, batch_seconds=3600) as writer, MetadataCache(path) as reader:
        with writer.batch():
            writer.put_tags("r.io/a", ["1"], 1.0)
            writer.put_digest_meta("r.io/a", {"sha256:1": DigestMeta(T1, None)})
            assert reader.tags("r.io/a") is None  # not committed yet
        assert reader.tags("r.io/a") == (["1"], 1.0)
        assert set(reader.digest_meta("r.io/a", ["sha256:1"])) == {"sha256:1"}


def test_held_back_writes_are_read_back_and_keep_their_order(tmp_path: Path) -> None:
    path = tmp_path / CACHE_FILE
    with MetadataCache(path, batch_seconds=3600) as writer, MetadataCache(path) as reader:
        writer.put_tag_digests("r.io/a", {t: TagDigest(f"sha256:{t}", 1.0, 9e9) for t in ("1", "2")})
        with writer.batch():
            writer.put_tags("r.io/a", ["2", "3"], 5.0)
            writer.put_decision("r.io/a", "p", "1", "h1", "3")
            # this process sees its own held-back writes; the other one nothing yet
            assert writer.tags("r.io/a") == (["2", "3"], 5.0)
            assert writer.decision("r.io/a", "p", "1", "h1") == (True, "3")
            assert writer.decision("r.io/a", "p", "1", "h2") == (False, None)
            assert reader.decision("r.io/a", "p", "1", "h1") == (False, None)
            # the list is written before the tag digests are read or written: tag 1 is gone, 3 stays
            assert set(writer.tag_digests("r.io/a")) == {"2"}
            writer.put_tag_digests("r.io/a", {"3": TagDigest("sha256:3", 1.0, 9e9)})
            writer.put_tags("r.io/a", ["3"], 6.0)
            writer.put_tags("r.io/b", ["x"], 6.0)
        assert reader.tags("r.io/a") == (["3"], 6.0) and reader.tags("r.io/b") == (["x"], 6.0)
        assert set(reader.tag_digests("r.io/a")) == {"3"}
        assert reader.decision("r.io/a", "p", "1", "h1") == (True, "3")


def test_decisions_read_ahead_answer_a_pass_with_one_statement(tmp_path: Path) -> None:
    path = tmp_path / CACHE_FILE
    with MetadataCache(path) as other:
        for image in ("r.io/a", "r.io/b"):
            other.put_decision(image, "p", "1", "h", f"{image[-1]}2")
        other.put_decision("r.io/c", "p", "1", "h", "c2")
    with MetadataCache(path) as cache, MetadataCache(path) as other:
        statements: list[str] = []
        cache._db.set_trace_callback(statements.append)
        cache.read_decisions(["r.io/a"])  # outside a batch: nothing read ahead, nothing kept
        assert cache.decision("r.io/a", "p", "1", "h") == (True, "a2") and len(statements) == 1
        with cache.batch():
            cache.read_decisions(["r.io/a", "r.io/b", "r.io/new"])
            selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
            assert len(selects) == 2
            statements.clear()
            assert cache.decision("r.io/a", "p", "1", "h") == (True, "a2")
            assert cache.decision("r.io/b", "p", "1", "other hash") == (False, None)
            assert cache.decision("r.io/b", "p", "2", "h") == (False, None)  # another current tag
            # read ahead and absent: a miss without asking sqlite, even when another process writes it now
            other.put_decision("r.io/new", "p", "1", "h", "n1")
            assert cache.decision("r.io/new", "p", "1", "h") == (False, None)
            assert statements == []
            # an image not read ahead is still asked for
            assert cache.decision("r.io/c", "p", "1", "h") == (True, "c2") and len(statements) == 1
            # this pass's own decisions win over what was read ahead
            cache.put_decision("r.io/a", "p", "1", "h3", "a3")
            assert cache.decision("r.io/a", "p", "1", "h3") == (True, "a3")
        # the batch is over: what was read ahead is dropped, the other process's row is seen
        assert cache.decision("r.io/new", "p", "1", "h") == (True, "n1")
        assert cache.decision("r.io/a", "p", "1", "h3") == (True, "a3")


def test_held_back_writes_survive_close_and_the_batch_clock(tmp_path: Path) -> None:
    path = tmp_path / CACHE_FILE
    writer = MetadataCache(path, batch_seconds=0.0)  # every held-back write is due at once
    with writer.batch(), MetadataCache(path) as reader:
        writer.put_tags("r.io/a", ["1"], 1.0)
        assert reader.tags("r.io/a") == (["1"], 1.0)
    writer = MetadataCache(path, batch_seconds=3600)
    with writer.batch():
        writer.put_decision("r.io/a", "p", "", "h", None)
        writer.close()  # a daemon stopping inside a pass loses nothing it decided
    with MetadataCache(path) as reader:
        assert reader.decision("r.io/a", "p", None, "h") == (True, None)


# ------------------------------------------------------------------------------------------- credentials

SECRET = "units-canary-Secret-55"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def lookup(config: object, registry: str, spec: str | None = None, *, tmp_path: Path) -> Credential | None:
    path = tmp_path / "config.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    return asyncio.run(CredentialStore(path).get(registry, spec))


@pytest.mark.parametrize(
    ("config", "registry", "user"),
    [
        ({"auths": {"https://index.docker.io/v1/": {"auth": b64(f"hub:{SECRET}")}}}, "docker.io", "hub"),
        ({"auths": {"ghcr.io": {"username": "gh", "password": SECRET}}}, "ghcr.io", "gh"),
        ({"auths": {"https://Registry.Example.com:5000/v2/": {"auth": b64(f"ex:{SECRET}")}}},
         "registry.example.com:5000", "ex"),
        ({"auths": {"quay.io": {"identitytoken": SECRET}}}, "quay.io", ""),
        ({"auths": {"ghcr.io": {}}}, "ghcr.io", None),
        ({"auths": {"ghcr.io": {"username": "gh", "password": SECRET}}}, "quay.io", None),
        ({}, "ghcr.io", None),
    ],
)
def test_docker_config_auths(
    config: dict[str, object], registry: str, user: str | None, tmp_path: Path
) -> None:
    credential = lookup(config, registry, tmp_path=tmp_path)
    if user is None:
        assert credential is None
    else:
        assert credential is not None and credential.username == user and credential.secret == SECRET
        assert SECRET not in repr(credential)


@pytest.mark.parametrize(
    ("config", "spec", "message"),
    [
        ({"auths": {"ghcr.io": {"auth": f"not base64 {SECRET}"}}}, None, "not base64"),
        ({"auths": {"ghcr.io": {"auth": b64(SECRET)}}}, None, "user:password"),
        (f'{{"auths": {{"ghcr.io": "{SECRET}"', None, "not valid JSON"),
        ({"credHelpers": {"ghcr.io": "missing-helper-xyz"}}, None, "docker-credential-missing-helper-xyz"),
        ({}, "env:IMAGE_UPDATER_TEST_UNSET_VAR", "IMAGE_UPDATER_TEST_UNSET_VAR is not set"),
        ({}, "file:/nonexistent/creds", "cannot read credentials file"),
        ({}, "dockerconfig:/nonexistent/config.json", "does not exist"),
    ],
)
def test_credential_errors_name_the_registry_and_never_the_secret(
    config: object, spec: str | None, message: str, tmp_path: Path
) -> None:
    with pytest.raises(RegistryAuthError) as caught:
        lookup(config, "ghcr.io", spec, tmp_path=tmp_path)
    text = str(caught.value)
    assert message in text and "registry ghcr.io" in text
    assert SECRET not in text


def test_missing_creds_store_helper_means_anonymous(tmp_path: Path) -> None:
    assert lookup({"credsStore": "missing-store-xyz"}, "ghcr.io", tmp_path=tmp_path) is None


def test_missing_default_docker_config_means_anonymous(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "absent" / "config.json")
    assert asyncio.run(store.get("ghcr.io")) is None


def test_credentials_are_kept_until_invalidated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REG_UNIT", f"a:{SECRET}")
    store = CredentialStore(tmp_path / "none.json")

    async def read() -> Credential | None:
        return await store.get("r.io", "env:REG_UNIT")

    assert asyncio.run(read()) == Credential("a", SECRET, source="env:REG_UNIT")
    monkeypatch.setenv("REG_UNIT", f"b:{SECRET}")
    assert asyncio.run(read()).username == "a"  # type: ignore[union-attr]
    store.invalidate("r.io")
    assert asyncio.run(read()).username == "b"  # type: ignore[union-attr]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,20}", fullmatch=True),
            st.text(alphabet=st.sampled_from('a1 ",\\\x00\x1f\x7f\u00e9\u2028\n[]'), max_size=6),
            st.text(max_size=4),
        ),
        max_size=8,
    )
)
def test_tag_lists_are_stored_as_json_dumps_writes_them(tags: list[str]) -> None:
    # the join that spares the JSON encoder is the encoder's text exactly, or the encoder itself
    assert _encode_tags(tags) == json.dumps(tags)
    assert json.loads(_encode_tags(tags)) == tags
