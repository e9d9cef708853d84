"""Rendezvous hashing of sources over replicas, ordinal resolution, the shard in settings, status, metrics."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from image_updater.daemon import Daemon, resolve_shard
from image_updater.errors import ConfigError
from image_updater.metrics import Metrics
from image_updater.settings import Settings
from image_updater.sharding import first_pass_offset, owned, owner, parse_ordinal, weight
from image_updater.status import SourceInfo, StatusBoard

NAMES = [f"team-{i:04d}/fleet" for i in range(1000)]


def test_every_source_has_exactly_one_owner_and_the_load_is_even() -> None:
    for replicas in (2, 3, 5):
        counts = Counter(owner(name, replicas) for name in NAMES)
        assert set(counts) == set(range(replicas))
        share = 1000 / replicas
        for ordinal in range(replicas):
            assert 0.8 * share <= counts[ordinal] <= 1.2 * share, (replicas, counts)
        parts = [owned(NAMES, k, replicas) for k in range(replicas)]
        assert sorted(n for part in parts for n in part) == sorted(NAMES)


def test_growing_from_3_to_4_moves_about_a_quarter_and_only_to_the_new_replica() -> None:
    before = {name: owner(name, 3) for name in NAMES}
    after = {name: owner(name, 4) for name in NAMES}
    moved = [name for name in NAMES if before[name] != after[name]]
    assert 0.18 <= len(moved) / len(NAMES) <= 0.32
    assert {after[name] for name in moved} == {3}  # nothing shuffles among the old replicas


def test_shrinking_moves_only_the_removed_replicas_sources() -> None:
    before = {name: owner(name, 4) for name in NAMES}
    after = {name: owner(name, 3) for name in NAMES}
    assert all(before[n] == after[n] for n in NAMES if before[n] != 3)


def test_the_hash_is_stable_across_processes_and_versions() -> None:
    # fixed values: a change here would reshuffle every deployment's sources on upgrade
    assert weight(0, "fleet") == weight(0, "fleet")
    assert [owner(f"s{i}", 3) for i in range(12)] == [owner(f"s{i}", 3) for i in range(12)]
    assert owner("anything", 1) == 0
    assert weight(0, "a") != weight(1, "a")
    import hashlib

    expected = int.from_bytes(hashlib.blake2b(b"2\0fleet", digest_size=8).digest(), "big")
    assert weight(2, "fleet") == expected


def test_owner_refuses_zero_replicas() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        owner("a", 0)


@pytest.mark.parametrize(
    ("hostname", "expected"),
    [
        ("image-updater-0", 0), ("image-updater-12", 12),
        ("image-updater-2.image-updater-headless.ns.svc", 2),
        ("web-1", 1), ("image-updater", None), ("image-updater-", None), ("image-updater-01", None),
        ("-3", None), ("laptop", None), ("node-1a", None), ("", None),
    ],
)
def test_parse_ordinal(hostname: str, expected: int | None) -> None:
    assert parse_ordinal(hostname) == expected


def test_first_pass_offsets_spread_over_the_interval() -> None:
    offsets = [first_pass_offset(name, 300.0) for name in NAMES]
    assert all(0 <= o < 300 for o in offsets)
    buckets = Counter(int(o // 30) for o in offsets)  # ten 30 s slices, ~100 each
    assert set(buckets) == set(range(10))
    assert max(buckets.values()) <= 150
    assert first_pass_offset("x", 0) == 0.0


def _settings(**sharding: object) -> Settings:
    return Settings.model_validate({"sharding": sharding})


def test_resolve_shard_order_number_then_env_then_hostname() -> None:
    env = {"IMAGE_UPDATER_SHARD_ORDINAL": "2"}
    assert resolve_shard(_settings(replicas=3, ordinal=1), env, "x-0") == (1, 3)
    assert resolve_shard(_settings(replicas=3), {"IMAGE_UPDATER_SHARD_ORDINAL": "2"}, "x-0") == (2, 3)
    assert resolve_shard(_settings(replicas=3), {}, "image-updater-1") == (1, 3)
    assert resolve_shard(_settings(), {}, "laptop") == (0, 1)


def test_resolve_shard_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match=r"ordinal is unknown.*IMAGE_UPDATER_SHARD_ORDINAL.*'laptop'"):
        resolve_shard(_settings(replicas=3), {}, "laptop")
    with pytest.raises(ConfigError, match=r"ordinal 5 \(from hostname 'image-updater-5'\) must be below"):
        resolve_shard(_settings(replicas=3), {}, "image-updater-5")
    with pytest.raises(ConfigError, match="must be a number"):
        resolve_shard(_settings(replicas=3), {"IMAGE_UPDATER_SHARD_ORDINAL": "one"}, "x-0")
    with pytest.raises(ConfigError, match=r"from IMAGE_UPDATER_SHARD_ORDINAL\) must be below"):
        resolve_shard(_settings(replicas=3), {"IMAGE_UPDATER_SHARD_ORDINAL": "3"}, "x-0")


@pytest.mark.parametrize(
    ("sharding", "message"),
    [
        ({"replicas": 0}, "greater than or equal to 1"),
        ({"replicas": 2, "ordinal": 2}, "ordinal 2 must be below replicas"),
        ({"ordinal": -1}, "auto or a number"),
        ({"replicas": 2, "peers": ["http://a:8080"]}, "1 URL.* replicas is 2"),
        ({"replicas": 1, "peers": ["ftp://a"]}, "http:// or https://"),
        ({"replicas": 1, "peers": ["http://user:pw@a"]}, "without credentials"),
        ({"replicas": 1, "ordinal": "first"}, "ordinal"),
    ],
)
def test_bad_sharding_settings_are_refused(sharding: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings.model_validate({"sharding": sharding})


def test_peers_are_normalised() -> None:
    s = _settings(replicas=2, peers=["http://a:8080/ ", "https://b.example/x/"])
    assert s.sharding.peers == ["http://a:8080", "https://b.example/x"]


async def _no_pass(*_args: object) -> object:
    raise AssertionError("not called")


def test_status_and_metrics_say_the_shard() -> None:
    board = StatusBoard([SourceInfo("a", "https://g/a.git", "main"), SourceInfo("b", "https://g/b", "main")])
    metrics = Metrics()
    from datetime import timedelta

    daemon = Daemon(["b"], interval=timedelta(minutes=1), pass_fn=_no_pass, metrics=metrics,  # type: ignore[arg-type]
                    status_board=board, shard=(1, 3))
    snap = board.snapshot()
    assert snap["shard"] == {"ordinal": 1, "replicas": 3, "sources": ["b"]}
    assert {s["name"]: s["owned"] for s in snap["sources"]} == {"a": False, "b": True}
    text = metrics.render().decode()
    assert 'image_updater_shard_info{ordinal="1",replicas="3"} 1.0' in text
    assert "image_updater_shard_sources 1.0" in text
    assert daemon.sources == ["b"]


def test_a_shard_that_owns_nothing_is_a_valid_daemon_but_an_unsharded_one_is_not() -> None:
    from datetime import timedelta

    idle = Daemon([], interval=timedelta(minutes=1), pass_fn=_no_pass, shard=(2, 3))  # type: ignore[arg-type]
    assert idle.sources == []
    assert not idle.ready()  # not running yet
    with pytest.raises(ConfigError, match="no sources"):
        Daemon([], interval=timedelta(minutes=1), pass_fn=_no_pass)  # type: ignore[arg-type]


def test_many_sources_start_at_once_within_the_concurrency_bound_and_tick_at_spread_offsets() -> None:
    import asyncio
    from datetime import timedelta

    from tests.test_daemon import Recorder, run_while, wait_until

    names = tuple(f"src-{i}" for i in range(12))
    recorder = Recorder()
    total = {"now": 0, "max": 0}

    async def work(name: str, n: int, stop: object) -> object:
        from tests.test_daemon import Outcome

        total["now"] += 1
        total["max"] = max(total["max"], total["now"])
        try:
            await asyncio.sleep(0.02)
        finally:
            total["now"] -= 1
        return Outcome(name)

    recorder.behaviour = work  # type: ignore[assignment]
    daemon = Daemon(list(names), interval=timedelta(hours=1), pass_fn=recorder, concurrency=3)

    async def body() -> None:
        await wait_until(lambda: all(recorder.count(n) == 1 for n in names))
        assert daemon._scheduler is not None
        offsets = sorted(
            (job.next_run_time - datetime.now(UTC)).total_seconds() for job in daemon._scheduler.get_jobs()
        )
        assert offsets[0] > 0 and offsets[-1] < 3600 * 1.1
        assert offsets[-1] - offsets[0] > 600  # not all due in the same second
        # a tick soon after the start-up pass is skipped: nothing is due yet
        await daemon._scheduled(names[0])
        assert recorder.count(names[0]) == 1

    asyncio.run(run_while(daemon, body))
    assert total["max"] == 3  # bounded, and the bound was reached: the passes did overlap
    assert all(recorder.count(n) == 1 for n in names)


def test_one_tag_list_per_image_across_sources_and_webhook_passes_ask_afresh(
    registry: Any, pusher: Any, tmp_path: Path
) -> None:
    import asyncio

    from tests.test_registry_client import Requests, client_for

    pusher.push_many("team/shared", ["1.0.0", "1.1.0"])
    image = f"{registry.host}/team/shared"
    requests = Requests()

    async def scenario() -> tuple[list[list[str]], list[str], list[str]]:
        async with client_for(tmp_path, on_request=requests, tags_max_age=3600) as client:
            # 20 sources resolving the same image at the same moment: one request
            together = await asyncio.gather(*(client.list_tags(image) for _ in range(20)))
            later = await client.list_tags(image)  # within the interval: the kept list
            pusher.push_many("team/shared", ["1.2.0"])
            stale = await client.list_tags(image)
            with client.fresh_tags():  # a webhook-triggered pass
                fresh = await client.list_tags(image)
            return [*together, later, stale], stale, fresh

    lists, stale, fresh = asyncio.run(scenario())
    assert all(sorted(x) == ["1.0.0", "1.1.0"] for x in lists)
    assert sorted(stale) == ["1.0.0", "1.1.0"]
    assert sorted(fresh) == ["1.0.0", "1.1.0", "1.2.0"]
    assert requests.count == 2  # the 22 scheduled look-ups cost one request, the webhook's one more
