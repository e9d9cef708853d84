"""Sharded daemons end to end: three ``python -m image_updater run`` child processes on loopback as the
replicas of one StatefulSet, a real distribution registry, nine real bare repositories.

Each replica's commits carry its own author name (``Image Bot <ordinal>``), so the history of every
repository says which replica wrote each commit; a ``post-receive`` hook in every bare repository logs each
accepted push. What is checked:

- the start-up passes update every repository exactly once, each by the replica that owns it;
- one signed webhook sent to replica 0 only updates every affected repository exactly once: replica 0 acts
  on its own sources and forwards the event once to replicas 1 and 2, which act on theirs and never forward it
  again;
- with replica 2 stopped, the next webhook updates replicas 0 and 1's repositories and leaves replica 2's
  untouched; replica 0 logs one failed forward for that webhook, and nothing else goes wrong;
- two replicas that briefly both own the same sources (one runs with an old config) race their passes and
  push one commit per change between them: Git's atomic ref update rejects the loser, whose retry finds
  nothing left to do.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from image_updater.sharding import owner
from tests.servers import ImagePusher
from tests.test_daemon_e2e import (
    SECRET,
    T0,
    Daemon,
    distribution_event,
    free_port,
    get,
    git,
    metric,
    wait_for,
)

REPLICAS = 3
PER_REPLICA = 3
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    image-updater.io/policy.web: "semver:^1.0"
spec:
  template:
    spec:
      containers:
        - name: web
          image: {host}/team/web:1.0.0
"""
HOOK = """#!/bin/sh
while read old new ref; do echo "$ref $old $new" >> "$GIT_DIR/pushes.log"; done
"""


def _names() -> list[str]:
    """Source names, PER_REPLICA owned by each ordinal (the first that hash there)."""
    chosen: dict[int, list[str]] = {k: [] for k in range(REPLICAS)}
    i = 0
    while any(len(v) < PER_REPLICA for v in chosen.values()):
        name = f"fleet-{i}"
        mine = chosen[owner(name, REPLICAS)]
        if len(mine) < PER_REPLICA:
            mine.append(name)
        i += 1
    return sorted(n for names in chosen.values() for n in names)


NAMES = _names()


class Replica(Daemon):
    """One replica: a daemon at the default log level, with its status API."""

    def __init__(self, config: Path, log: Path, port: int, env: dict[str, str]) -> None:
        super().__init__(config, log, port, env, log_level=None)

    def status(self) -> dict[str, Any]:
        response = get(self.url + "/api/v1/status")
        assert response is not None and response.status_code == 200
        data: dict[str, Any] = response.json()
        return data

    def wait_ready(self) -> None:
        wait_for(lambda: (r := get(self.url + "/readyz")) is not None and r.status_code == 200, 90,
                 f"{self.url} ready", self.log)


def _config(
    tmp: Path, k: int, ports: list[int], repos: dict[str, Path], host: str, *, sharding: str, extra: str = ""
) -> Path:
    config = tmp / f"config-{k}.yaml"
    sources = "".join(f"  - name: {name}\n    url: {repos[name]}\n    branch: main\n" for name in NAMES)
    config.write_text(
        f"interval: 1h\ncache_dir: {tmp / f'cache-{k}'}\nsources:\n{sources}"
        f"commit:\n  author_name: Image Bot {k}\n  author_email: bot-{k}@example.com\n"
        f"registries:\n  - prefix: {host}\n    insecure: true\n"
        f"http:\n  listen: 127.0.0.1:{ports[k]}\n  webhook_secret_env: WEBHOOK_SECRET\n"
        f"{sharding}{extra}"
    )
    return config


def _history(bare: Path) -> list[tuple[str, str]]:
    """(author name, subject) of every commit on main, oldest first."""
    out = git("log", "--reverse", "--format=%an%x00%s", "main", cwd=bare)
    return [tuple(line.split("\0", 1)) for line in out.splitlines()]  # type: ignore[misc]


def _pushes(bare: Path) -> list[str]:
    log = bare / "pushes.log"
    return log.read_text().splitlines() if log.exists() else []


def _tag(bare: Path) -> str:
    return git("show", "main:apps/web.yaml", cwd=bare).rsplit(":", 1)[1].strip()


def _signed_webhook(url: str, host: str, tag: str) -> httpx.Response:
    body = distribution_event(host, "team/web", tag)
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return httpx.post(url + "/webhook", content=body, timeout=10, headers={"X-Hub-Signature-256": signature})


@pytest.fixture
def fleet(registry: Any, bare_repo: Any) -> Iterator[tuple[Any, dict[str, Path], ImagePusher]]:
    with ImagePusher(registry.url) as pusher:
        pusher.push("team/web", "1.0.0", created=T0)
        pusher.push("team/web", "1.1.0", created=T0 + timedelta(days=1))
        repos = {}
        for name in NAMES:
            bare = bare_repo({"apps/web.yaml": DEPLOYMENT.format(host=registry.host)}, name=f"{name}.git")
            hook = bare / "hooks" / "post-receive"
            hook.write_text(HOOK)
            hook.chmod(0o755)
            repos[name] = bare
        yield registry, repos, pusher


@pytest.mark.slow
def test_three_replicas_each_source_committed_by_its_owner_and_one_webhook_reaches_all(
    tmp_path: Path, fleet: tuple[Any, dict[str, Path], ImagePusher]
) -> None:
    registry, repos, pusher = fleet
    ports = [free_port() for _ in range(REPLICAS)]
    peers = json.dumps([f"http://127.0.0.1:{p}" for p in ports])
    replicas: list[Replica] = []
    try:
        for k in range(REPLICAS):
            # ordinal 0 from the config, 1 and 2 from IMAGE_UPDATER_SHARD_ORDINAL (as the overlay sets it)
            sharding = f"sharding:\n  replicas: {REPLICAS}\n  peers: {peers}\n"
            sharding += "  ordinal: 0\n" if k == 0 else ""
            env = {} if k == 0 else {"IMAGE_UPDATER_SHARD_ORDINAL": str(k)}
            config = _config(tmp_path, k, ports, repos, registry.host, sharding=sharding)
            replicas.append(Replica(config, tmp_path / f"replica-{k}.log", ports[k], env))
        for replica in replicas:
            replica.wait_ready()

        # start-up passes: every repository got exactly one commit, written by its owner
        wait_for(lambda: all(len(_history(b)) == 2 for b in repos.values()), 60, "start-up commits")
        for name, bare in repos.items():
            history = _history(bare)
            assert [author for author, _ in history[1:]] == [f"Image Bot {owner(name, REPLICAS)}"], name
            assert _tag(bare) == "1.1.0"
            assert len(_pushes(bare)) == 1
        for k, replica in enumerate(replicas):
            status = replica.status()
            mine = [n for n in NAMES if owner(n, REPLICAS) == k]
            assert status["shard"] == {"ordinal": k, "replicas": REPLICAS, "sources": mine}
            assert sorted(s["name"] for s in status["sources"] if s["owned"]) == mine
            text = replica.metrics()
            assert metric(text, "image_updater_shard_info", ordinal=str(k), replicas=str(REPLICAS)) == 1
            assert metric(text, "image_updater_shard_sources") == PER_REPLICA
            # a replica never touches another's sources
            others = [n for n in NAMES if n not in mine]
            assert all(metric(text, "image_updater_passes_total", source=n, outcome="success") == 0
                       for n in others)

        # one webhook, to replica 0 only: every repository gets exactly one more commit, by its owner
        pusher.push("team/web", "1.2.0", created=T0 + timedelta(days=2))
        response = _signed_webhook(replicas[0].url, registry.host, "1.2.0")
        assert response.status_code == 202, response.text
        assert sorted(response.json()["sources"]) == [n for n in NAMES if owner(n, REPLICAS) == 0]
        wait_for(lambda: all(_tag(b) == "1.2.0" for b in repos.values()), 60, "webhook commits",
                 replicas[1].log)
        for name, bare in repos.items():
            history = _history(bare)
            assert len(history) == 3, (name, history)
            assert history[2][0] == f"Image Bot {owner(name, REPLICAS)}"
            assert len(_pushes(bare)) == 2
        wait_for(lambda: metric(replicas[0].metrics(), "image_updater_webhook_forwards_total",
                                result="ok") == 2, 20, "forwards counted")
        for replica in replicas[1:]:
            text = replica.metrics()
            assert metric(text, "image_updater_webhook_requests_total", result="accepted") == 1
            assert metric(text, "image_updater_webhook_forwards_total", result="ok") == 0  # never again

        # replica 2 stops: its sources wait, the others carry on with one logged failed forward
        assert replicas[2].stop() == 0
        pusher.push("team/web", "1.3.0", created=T0 + timedelta(days=3))
        assert _signed_webhook(replicas[0].url, registry.host, "1.3.0").status_code == 202
        live = [n for n in NAMES if owner(n, REPLICAS) != 2]
        wait_for(lambda: all(_tag(repos[n]) == "1.3.0" for n in live), 60,
                 "webhook commits without replica 2", replicas[0].log)
        wait_for(lambda: metric(replicas[0].metrics(), "image_updater_webhook_forwards_total",
                                result="error") == 1, 20, "the failed forward counted")
        for name, bare in repos.items():
            assert len(_history(bare)) == (4 if name in live else 3), name
            assert _tag(bare) == ("1.3.0" if name in live else "1.2.0")
        text0 = replicas[0].log.read_text()
        assert text0.count("webhook not forwarded") == 1, text0[-3000:]
        for replica in replicas[:2]:
            text = replica.log.read_text()
            errors = [line for line in text.splitlines() if " error " in line.lower() or "failed" in line]
            assert errors == [], errors
            assert SECRET not in text
    finally:
        for replica in replicas:
            replica.stop()


@pytest.mark.slow
def test_two_replicas_briefly_owning_the_same_sources_lose_and_duplicate_nothing(
    tmp_path: Path, fleet: tuple[Any, dict[str, Path], ImagePusher]
) -> None:
    registry, repos, _pusher = fleet
    ports = [free_port(), free_port()]
    # replica 0 still runs with the old config (one replica owns everything), replica 1 with the new one in
    # which it owns a third of the sources: for those, both replicas run a pass at the same moment
    configs = [
        # all start-up passes at once (9 sources, 16 slots: no spreading over the interval)
        _config(tmp_path, 0, ports, repos, registry.host, sharding="", extra="concurrency:\n  passes: 16\n"),
        _config(tmp_path, 1, ports, repos, registry.host, extra="concurrency:\n  passes: 16\n",
                sharding=f"sharding:\n  replicas: {REPLICAS}\n  ordinal: 1\n"),
    ]
    replicas = [Replica(configs[k], tmp_path / f"replica-{k}.log", ports[k], {}) for k in range(2)]
    try:
        for replica in replicas:
            replica.wait_ready()
        wait_for(lambda: all(len(_history(b)) == 2 for b in repos.values()), 60, "start-up commits")
        both = [n for n in NAMES if owner(n, REPLICAS) == 1]
        wait_for(lambda: metric(replicas[1].metrics(), "image_updater_passes_total", source=both[-1],
                                outcome="success") >= 1, 60, "replica 1's passes")
        wait_for(lambda: all(metric(replicas[0].metrics(), "image_updater_passes_total", source=n,
                                    outcome="success") >= 1 for n in NAMES), 60, "replica 0's passes")
        for name, bare in repos.items():
            history = _history(bare)
            assert len(history) == 2, (name, history)  # one update commit, never two
            assert history[0][1] == "Initial commit"  # nothing rewritten
            assert _tag(bare) == "1.1.0"
            assert len(_pushes(bare)) == 1
        # the loser of each race retried on top of the winner's commit and found nothing left to change
        for replica in replicas:
            text = replica.log.read_text()
            assert "pass failed" not in text, text[-3000:]
    finally:
        for replica in replicas:
            replica.stop()
