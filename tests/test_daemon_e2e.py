"""The daemon end to end: ``python -m image_updater run`` as a child process, a real distribution registry,
a real bare git repository.

The daemon starts with a one-hour interval, so only its start-up pass and webhooks can make commits.
``/healthz`` answers, ``/readyz`` turns 200 after the start-up pass, a forged webhook is refused (401) and
changes nothing, a newly pushed tag announced through ``/webhook`` produces a commit within seconds - either
announced by the registry itself (distribution's notifications, bearer token) or by a signed POST (HMAC) -
``/metrics`` shows the passes and the update, the log has one line per change with source, file and image,
and SIGTERM ends the daemon with exit code 0.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import ImagePusher

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SECRET = "e2e-" + os.urandom(16).hex()

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: prod
  annotations:
    image-updater.io/policy.web: "semver:^1.0"
spec:
  template:
    spec:
      containers:
        - name: web
          image: {host}/team/web:1.0.0  # keep this comment
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def commits(bare: Path) -> list[str]:
    return git("log", "--format=%s", "main", cwd=bare).splitlines()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    tail = log.read_text()[-4000:] if log is not None and log.exists() else ""
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s\n{tail}")


def get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.TransportError:
        return None


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if found == labels:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class Daemon:
    """``image-updater run`` in a child process, its log in ``log``; ``env`` adds to the environment."""

    def __init__(self, config: Path, log: Path, port: int, env: dict[str, str] | None = None,
                 log_level: str | None = "debug") -> None:
        self.log = log
        self.url = f"http://127.0.0.1:{port}"
        self._log_file = log.open("w")
        level = ["--log-level", log_level] if log_level else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "image_updater", "run", "-c", str(config), *level],
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
            env={**os.environ, "WEBHOOK_SECRET": SECRET, **(env or {})},
        )

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log_file.close()

    def metrics(self) -> str:
        response = get(self.url + "/metrics")
        assert response is not None and response.status_code == 200
        return response.text


@pytest.fixture
def started(
    request: pytest.FixtureRequest, tmp_path: Path, registry_factory: Any, bare_repo: Any
) -> Iterator[tuple[Daemon, Any, Path, ImagePusher]]:
    """(daemon, registry, bare repository, pusher) with the daemon's start-up pass finished."""
    port = free_port()
    notify = request.param == "registry-notification"
    options: dict[str, Any] = {}
    if notify:
        # distribution itself posts its events to the daemon, with the secret as a bearer token
        options = {
            "notify_url": f"http://127.0.0.1:{port}/webhook",
            "notify_headers": {"Authorization": f"Bearer {SECRET}"},
        }
    registry = registry_factory(**options)
    with ImagePusher(registry.url) as pusher:
        pusher.push("team/web", "1.0.0", created=T0)
        pusher.push("team/web", "2.0.0", created=T0 + timedelta(days=1))  # outside the policy's range
        bare = bare_repo({"apps/deployment.yaml": DEPLOYMENT.format(host=registry.host)})
        config = tmp_path / "config.yaml"
        config.write_text(
            f"interval: 1h\n"
            f"cache_dir: {tmp_path / 'cache'}\n"
            f"sources:\n  - name: demo\n    url: {bare}\n    branch: main\n"
            f"commit:\n  author_name: Image Bot\n  author_email: bot@example.com\n"
            f"registries:\n  - prefix: {registry.host}\n    insecure: true\n"
            f"http:\n  listen: 127.0.0.1:{port}\n  webhook_secret_env: WEBHOOK_SECRET\n"
            f"log:\n  format: text\n"
        )
        daemon = Daemon(config, tmp_path / "daemon.log", port)
        try:
            wait_for(
                lambda: (r := get(daemon.url + "/healthz")) is not None and r.status_code == 200,
                30,
                "/healthz answering",
                daemon.log,
            )
            wait_for(
                lambda: (r := get(daemon.url + "/readyz")) is not None and r.status_code == 200,
                60,
                "the start-up pass",
                daemon.log,
            )
            yield daemon, registry, bare, pusher
        finally:
            if daemon.proc.poll() is None:  # the test failed before its own SIGTERM
                daemon.stop()


def distribution_event(host: str, repository: str, tag: str) -> bytes:
    return json.dumps(
        {
            "events": [
                {
                    "id": "e2e",
                    "timestamp": datetime.now(UTC).isoformat(),
                    "action": "push",
                    "target": {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "repository": repository,
                        "tag": tag,
                        "digest": "sha256:" + "0" * 64,
                    },
                    "request": {"host": host, "method": "PUT"},
                }
            ]
        }
    ).encode()


@pytest.mark.slow
@pytest.mark.parametrize("started", ["registry-notification", "signed-post"], indirect=True)
def test_webhook_push_produces_a_commit_within_seconds(
    started: tuple[Daemon, Any, Path, ImagePusher], request: pytest.FixtureRequest
) -> None:
    daemon, registry, bare, pusher = started
    registry_notifies = request.node.callspec.params["started"] == "registry-notification"
    assert commits(bare) == ["Initial commit"]  # 1.0.0 is the newest 1.x: the start-up pass changed nothing

    # a forged announcement is refused and starts nothing
    forged = distribution_event(registry.host, "team/web", "1.1.0")
    for headers in (
        {"Authorization": "Bearer not-the-secret"},
        {"X-Hub-Signature-256": "sha256=" + hmac.new(b"guess", forged, hashlib.sha256).hexdigest()},
        {},
    ):
        response = httpx.post(daemon.url + "/webhook", content=forged, headers=headers, timeout=10)
        assert response.status_code == 401
    assert metric(daemon.metrics(), "image_updater_webhook_requests_total", result="unauthorized") == 3

    # a new tag, announced through /webhook
    pusher.push("team/web", "1.1.0", created=T0 + timedelta(days=2))
    if not registry_notifies:
        body = distribution_event(registry.host, "team/web", "1.1.0")
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        response = httpx.post(
            daemon.url + "/webhook", content=body, timeout=10, headers={"X-Hub-Signature-256": signature}
        )
        assert response.status_code == 202, response.text
        assert response.json()["sources"] == ["demo"]

    wait_for(lambda: len(commits(bare)) == 2, 60, "the webhook-triggered commit", daemon.log)
    content = git("show", "main:apps/deployment.yaml", cwd=bare)
    assert content == DEPLOYMENT.format(host=registry.host).replace("web:1.0.0", "web:1.1.0")

    metrics = daemon.metrics()
    assert metric(metrics, "image_updater_passes_total", source="demo", outcome="success") >= 2
    assert metric(metrics, "image_updater_updates_committed_total", source="demo") == 1
    assert metric(metrics, "image_updater_webhook_requests_total", result="accepted") >= 1
    assert metric(metrics, "image_updater_images_tracked", source="demo") == 1
    assert metric(metrics, "image_updater_last_success_timestamp_seconds", source="demo") > 0
    assert (
        sum(
            metric(metrics, "image_updater_registry_requests_total", registry=registry.host, status=s)
            for s in ("200", "404", "401")
        )
        > 0
    )

    code = daemon.stop()
    assert code == 0
    log = daemon.log.read_text()
    # one line per change, naming source, file and image
    change_lines = [line for line in log.splitlines() if " updated " in line and "file=" in line]
    assert len(change_lines) == 1, log[-3000:]
    assert "source=demo" in change_lines[0] and "file=apps/deployment.yaml" in change_lines[0]
    assert f"image={registry.host}/team/web" in change_lines[0]
    assert "daemon stopped" in log
    assert SECRET not in log


@pytest.mark.parametrize(("flag", "expect_json"), [([], True), (["--log-format", "text"], False)])
def test_run_refuses_a_missing_webhook_secret_with_exit_2_in_the_configured_log_format(
    tmp_path: Path, flag: list[str], expect_json: bool
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"cache_dir: {tmp_path / 'cache'}\n"
        f"sources:\n  - name: demo\n    url: {tmp_path / 'nowhere.git'}\n"
        "http:\n  webhook_secret_env: NOT_SET_ANYWHERE\n"
        "log:\n  format: json\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NOT_SET_ANYWHERE"}
    result = subprocess.run(
        [sys.executable, "-m", "image_updater", "run", "-c", str(config), *flag],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    line = result.stderr.strip().splitlines()[-1]
    if expect_json:
        entry = json.loads(line)
        assert entry["level"] == "error" and "NOT_SET_ANYWHERE" in entry["message"]
    else:
        assert " error " in line and "NOT_SET_ANYWHERE" in line
