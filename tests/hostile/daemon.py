"""Hostile-input scenarios against the daemon's HTTP side, as plain functions.

Each function starts what it needs itself (a real registry, a bare git repository, the daemon as a child
process, or an in-process ``HttpServer``), runs one scenario, stops everything it started, raises
``AssertionError`` when the behaviour is wrong and returns the figures it measured. ``tests/
test_hostile_daemon.py`` calls them and asserts generous bounds; a bench script can call them to record the
figures. Nothing here depends on pytest.

- :func:`deep_signed_webhooks`: signed (valid HMAC) bodies nested 200,000 levels deep (as JSON, inside a
  form-encoded ``payload``) and with a 5,000-digit number, sent to ``python -m image_updater run``: each is
  answered 400, counted as ``malformed``, the daemon keeps serving and a valid webhook afterwards still
  produces a commit.
- :func:`slow_and_unframed_webhooks_are_counted`: chunked uploads, a missing ``Content-Length``, a head and a
  body that never finish: 411 and 408, each counted under its result in ``/metrics``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from tests.servers import ImagePusher, RegistryServer
from tests.servers.gitserver import make_bare_repo
from tests.test_daemon_e2e import free_port, get, metric, wait_for

T0 = datetime(2024, 1, 1, tzinfo=UTC)

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


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def vm_hwm_mib(pid: int) -> float:
    """Peak resident set size of a running process (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def _distribution_event(host: str, tag: str) -> bytes:
    return json.dumps({"events": [{
        "action": "push", "target": {"repository": "team/web", "tag": tag}, "request": {"host": host},
    }]}).encode()


def deep_signed_webhooks(tmp: Path, *, depth: int = 200_000) -> dict[str, float]:
    """Signed bodies that would crash an unbounded parser, sent to the real daemon; see the module doc."""
    tmp.mkdir(parents=True, exist_ok=True)
    secret = "deep-" + os.urandom(16).hex()
    registry = RegistryServer(work_dir=tmp / "registry").start()
    proc: subprocess.Popen[bytes] | None = None
    log = tmp / "daemon.log"
    try:
        with ImagePusher(registry.url) as pusher:
            pusher.push("team/web", "1.0.0", created=T0)
            bare = make_bare_repo(tmp / "repo.git", {"apps/web.yaml": DEPLOYMENT.format(host=registry.host)})
            port = free_port()
            config = tmp / "config.yaml"
            config.write_text(
                f"interval: 1h\ncache_dir: {tmp / 'cache'}\n"
                f"sources:\n  - name: demo\n    url: {bare}\n    branch: main\n"
                f"commit:\n  author_name: Image Bot\n  author_email: bot@example.com\n"
                f"registries:\n  - prefix: {registry.host}\n    insecure: true\n"
                f"http:\n  listen: 127.0.0.1:{port}\n  webhook_secret_env: WEBHOOK_SECRET\n"
                f"log:\n  format: text\n"
            )
            url = f"http://127.0.0.1:{port}"
            with log.open("wb") as log_file:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "image_updater", "run", "-c", str(config)],
                    stdout=subprocess.DEVNULL, stderr=log_file, env={**os.environ, "WEBHOOK_SECRET": secret},
                )
            wait_for(lambda: (r := get(url + "/readyz")) is not None and r.status_code == 200, 120,
                     "the start-up pass", log)

            nested = b"[" * depth + b"]" * depth
            half = depth // 2  # percent-encoding triples the size: half the depth stays under 1 MiB
            hostile = [
                (nested, "application/json"),
                (b'{"events": ' + nested + b"}", "application/json"),
                (b"payload=" + quote(b'{"package": ' + b"[" * half + b"]" * half + b"}").encode(),
                 "application/x-www-form-urlencoded"),
                (b'{"events": [], "n": ' + b"9" * 5000 + b"}", "application/json"),  # past int's 4,300 digits
            ]
            slowest = 0.0
            for body, content_type in hostile:
                started = time.monotonic()
                try:
                    response = httpx.post(url + "/webhook", content=body, timeout=60, headers={
                        "X-Hub-Signature-256": sign(body, secret), "Content-Type": content_type,
                    })
                except httpx.TransportError as exc:
                    raise AssertionError(f"no answer to a signed {content_type} body: {exc!r}") from None
                slowest = max(slowest, time.monotonic() - started)
                assert response.status_code == 400, (response.status_code, response.text[:300])
                assert "error" in response.json()
                health = get(url + "/healthz")
                assert health is not None and health.status_code == 200, "/healthz after a hostile body"
            text = (get(url + "/metrics") or httpx.Response(599)).text
            malformed = metric(text, "image_updater_webhook_requests_total", result="malformed")
            assert malformed == len(hostile), text
            assert metric(text, "image_updater_webhook_requests_total", result="error") == 0

            # the daemon still does its job: a valid webhook for a new tag makes a commit
            pusher.push("team/web", "1.1.0", created=T0 + timedelta(days=1))
            body = _distribution_event(registry.host, "1.1.0")
            started = time.monotonic()
            response = httpx.post(url + "/webhook", content=body, timeout=30,
                                  headers={"X-Hub-Signature-256": sign(body, secret)})
            assert response.status_code == 202, response.text
            assert response.json()["sources"] == ["demo"]

            def committed() -> bool:
                out = subprocess.run(["git", "log", "--format=%s", "main"], cwd=bare, check=True,
                                     capture_output=True, text=True).stdout
                return len(out.splitlines()) == 2

            wait_for(committed, 120, "the webhook-triggered commit", log)
            to_commit = time.monotonic() - started
            shown = subprocess.run(["git", "show", "main:apps/web.yaml"], cwd=bare, check=True,
                                   capture_output=True, text=True).stdout
            assert shown == DEPLOYMENT.format(host=registry.host).replace("web:1.0.0", "web:1.1.0")
            peak = vm_hwm_mib(proc.pid)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
            assert code == 0, log.read_text()[-4000:]
            text = log.read_text()
            assert "Traceback" not in text and "HTTP handler" not in text, text[-4000:]
            assert secret not in text
            return {"slowest_hostile_answer_seconds": round(slowest, 3),
                    "webhook_to_commit_seconds": round(to_commit, 3), "peak_rss_mib": round(peak, 1)}
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        registry.stop()


def slow_and_unframed_webhooks_are_counted(tmp: Path) -> dict[str, float]:
    """411 and 408 answers to /webhook are counted in /metrics under their own results; see the module doc.

    An in-process ``HttpServer`` with short deadlines (0.5 s), so the slow cases take about a second.
    """
    from image_updater.httpserver import HttpServer, Limits
    from image_updater.metrics import Metrics

    secret = "slow-" + os.urandom(16).hex()

    class Backend:
        def __init__(self) -> None:
            self.triggered: list[str] = []

        def alive(self) -> bool:
            return True

        def ready(self) -> bool:
            return True

        def sources_for(self, events: Any) -> list[str]:
            return ["demo"]

        def trigger(self, sources: Any, *, reason: str = "webhook", events: Any = ()) -> list[str]:
            self.triggered.extend(sources)
            return list(sources)

    backend = Backend()
    metrics = Metrics()

    async def scenario() -> dict[str, float]:
        server = HttpServer(backend, metrics=metrics, listen="127.0.0.1:0", webhook_secret=secret,
                            limits=Limits(head_timeout=0.5, body_timeout=0.5))
        await server.start()
        host, port = server.address

        async def raw(data: bytes) -> bytes:
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(data)
                await writer.drain()
                return await asyncio.wait_for(reader.read(65536), 30)
            finally:
                writer.close()

        post = b"POST /webhook HTTP/1.1\r\nHost: x\r\n"
        cases = [
            (post + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 411),
            (post + b"\r\n", 411),  # no Content-Length
            (post, 408),  # the head never ends
            (b"POST /webhook?token=x HTTP/1.1\r\nHost: x\r\nX-Slow: ", 408),  # stalls inside a header
            (post + b"Content-Length: 100\r\n\r\n{", 408),  # the body never comes
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", 408),  # not /webhook: not counted there
        ]
        started = time.monotonic()
        try:
            for data, expected in cases:
                answer = await raw(data)
                assert answer.startswith(b"HTTP/1.1 %d " % expected), (data, answer[:200])
            health = await raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert health.startswith(b"HTTP/1.1 200 "), health[:200]
        finally:
            await server.close()
        return {"seconds": round(time.monotonic() - started, 3)}

    figures = asyncio.run(scenario())
    text = metrics.render().decode()
    counted = {result: metric(text, "image_updater_webhook_requests_total", result=result)
               for result in ("length_required", "timeout")}
    assert counted == {"length_required": 2.0, "timeout": 3.0}, text
    samples = re.findall(r'^image_updater_webhook_requests_total\{result="\w+"\} (\S+)$', text, re.MULTILINE)
    total = sum(map(float, samples))
    assert total == 5.0, text  # every /webhook answer once, the /healthz ones not at all
    assert backend.triggered == []
    return figures
