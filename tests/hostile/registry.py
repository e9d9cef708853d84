"""Hostile registries and credential helpers, as plain functions (tests and bench scripts call the same ones).

Each scenario starts what it needs (a ``HostileServer`` on 127.0.0.1, the real distribution registry where a
healthy image is wanted, helper scripts in a temporary directory), runs the client against it, stops it
again, raises ``AssertionError`` when the behaviour is wrong and returns its measured figures as a dict.
Nothing here depends on pytest.

``HostileServer(route)`` is a small threaded HTTP/1.1 server speaking raw bytes: ``route(method, target)``
returns a ``Reply`` (status, headers, body, and optionally a drip interval: the body one byte at a time).
Every connection serves one exchange and is closed; every loop is bounded (request head size, drip length,
page counts) and ``stop()`` wakes dripping replies at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import socketserver
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.hostile.manifests import deployment

__all__ = [
    "HostileServer",
    "Reply",
    "credential_helper_hang_and_flood",
    "credential_helper_leak",
    "dripping_registry",
    "huge_and_quadratic_link_headers",
    "paged_tag_flood",
    "retry_after_forever",
    "secret_in_env_name_fields",
]

ROOT = Path(__file__).resolve().parents[2]
CANARY = "Canary-Helper-S3cret-7d1f"
_MAX_HEAD = 64 * 1024


@dataclass
class Reply:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    drip: float | None = None  # seconds between single body bytes


Route = Callable[[str, str], Reply]


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(10.0)
        head = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in head and len(head) < _MAX_HEAD:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                head += chunk
        if b"\r\n\r\n" not in head:
            return
        method, target = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
        self.server.log.append((method, target))
        reply = self.server.route(method, target)
        lines = [f"HTTP/1.1 {reply.status} X"]
        names = {name.lower() for name, _ in reply.headers}
        if "content-length" not in names:
            lines.append(f"Content-Length: {len(reply.body)}")
        lines += [f"{name}: {value}" for name, value in reply.headers]
        lines += ["Connection: close", "", ""]
        try:
            sock.sendall("\r\n".join(lines).encode("latin-1"))
            if reply.drip is None:
                sock.sendall(reply.body)
                return
            for i in range(len(reply.body)):  # bounded by the body's length, woken by stop()
                sock.sendall(reply.body[i : i + 1])
                if self.server.stopping.wait(reply.drip):
                    return
        except OSError:
            return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, route: Route) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.route = route
        self.stopping = threading.Event()
        self.log: list[tuple[str, str]] = []


class HostileServer:
    """``with HostileServer(route) as server: server.host`` -> ``127.0.0.1:<port>``."""

    def __init__(self, route: Route) -> None:
        self._server = _Server(route)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def log(self) -> list[tuple[str, str]]:
        return self._server.log

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _json(data: Any, *headers: tuple[str, str], status: int = 200) -> Reply:
    return Reply(status, [("Content-Type", "application/json"), *headers], json.dumps(data).encode())


def _not_found() -> Reply:
    return _json({"errors": [{"code": "NAME_UNKNOWN"}]}, status=404)


def _client(*options: Any, tmp: Path, **kwargs: Any) -> Any:
    from image_updater.registry import RegistryClient

    kwargs.setdefault("docker_config", tmp / "no-docker-config.json")
    return RegistryClient(list(options), **kwargs)


# ------------------------------------------------------------------------------------- 1. dripping bodies


def dripping_registry(tmp: Path, *, timeout: float = 3.0, drip: float = 2.0) -> dict[str, float]:
    """A registry dripping its tag list one byte every ``drip`` seconds, beside a healthy real registry.

    One pass over two files: the dripping image gets an error entry naming it within the request bound
    (``timeout + min(timeout, 2)``), and the healthy image is updated in the same pass.
    """
    from image_updater.checkout import apply_result, plan_directory
    from image_updater.registry import RegistryOptions, RetryPolicy
    from tests.servers import ImagePusher, RegistryServer

    body = json.dumps({"name": "team/drip", "tags": ["1.0.0", "9.9.9"]}).encode()

    def route(method: str, target: str) -> Reply:
        if target.startswith("/v2/team/drip/tags/list"):
            return Reply(200, [("Content-Type", "application/json")], body, drip=drip)
        return _not_found()

    root = tmp / "repo"
    root.mkdir(parents=True)
    with RegistryServer(work_dir=tmp / "real-registry") as real, HostileServer(route) as hostile:
        with ImagePusher(real.url) as pusher:
            pusher.push("team/healthy", "1.0.0", created=datetime(2024, 1, 1, tzinfo=UTC))
            pusher.push("team/healthy", "1.1.0", created=datetime(2024, 1, 2, tzinfo=UTC))
        (root / "drip.yaml").write_text(deployment("drip", f"{hostile.host}/team/drip:1.0.0", "semver:*"))
        healthy = deployment("healthy", f"{real.host}/team/healthy:1.0.0", "semver:*")
        (root / "healthy.yaml").write_text(healthy)
        client = _client(
            RegistryOptions(prefix=hostile.host, insecure=True, timeout=timeout),
            RegistryOptions(prefix=real.host, insecure=True),
            tmp=tmp, retry=RetryPolicy(attempts=4, initial=0.1, maximum=0.5),
        )

        async def one_pass() -> Any:
            async with client, asyncio.timeout(120):  # a hang fails the scenario, it does not hold it
                return await plan_directory(root, client=client)

        started = time.monotonic()
        try:
            planned = asyncio.run(one_pass())
        except TimeoutError:
            raise AssertionError("the pass with a dripping registry did not end within 120 s") from None
        seconds = time.monotonic() - started
        result = apply_result(root, planned)
    errors = [e for e in result.errors if e.image and "team/drip" in e.image]
    assert len(errors) == 1, result.errors
    message = errors[0].message
    assert hostile.host in message and "team/drip" in message, message
    assert "did not complete within" in message or "timed out" in message, message
    assert (root / "healthy.yaml").read_text() == healthy.replace("healthy:1.0.0", "healthy:1.1.0")
    assert "drip:1.0.0" in (root / "drip.yaml").read_text()
    return {"seconds": seconds, "bound_seconds": timeout + min(timeout, 2.0)}


# ------------------------------------------------------------------------------- 2. tag lists of many pages

_FLOOD_CHILD = """
import asyncio, json, resource, sys
from image_updater.errors import RegistryError
from image_updater.registry import RegistryClient, RegistryOptions

host, config = sys.argv[1], sys.argv[2]

def peak_mib():
    # VmHWM belongs to this process image; ru_maxrss would carry the parent's peak across fork and exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

async def main():
    client = RegistryClient([RegistryOptions(prefix=host, insecure=True, timeout=60)], docker_config=config)
    async with client:
        with client.one_pass():
            try:
                await client.list_tags(host + "/team/warm")
            except RegistryError:
                pass
            before = peak_mib()
            try:
                tags = await client.list_tags(host + "/team/flood")
                error = None
            except RegistryError as exc:
                tags, error = [], str(exc)
        cached = client.cache.tags(host + "/team/flood")
        print(json.dumps({"error": error and error[:500], "tags": len(tags), "cached": cached is not None,
                          "before_mib": before, "peak_mib": peak_mib()}))

asyncio.run(main())
"""


def paged_tag_flood(
    tmp: Path, *, tag_length: int = 100, tags_per_page: int = 80_000, pages: int = 40
) -> dict[str, float]:
    """A tag list of ``pages`` Link pages, each under the per-page cap (8 MiB by default, 320 MiB in all).

    The client (a child process, for its peak RSS) must stop at the per-repository cap with an error naming
    the repository, keep and cache nothing of it, and stay within bounded memory.
    """
    def page(number: int) -> bytes:
        prefix = f"p{number:04d}-"
        width = tag_length - len(prefix)
        tags = [f"{prefix}{i:0{width}d}" for i in range(tags_per_page)]
        return json.dumps({"name": "team/flood", "tags": tags}).encode()

    def route(method: str, target: str) -> Reply:
        if target.startswith("/v2/team/flood/tags/list"):
            number = int(target.rpartition("page=")[2]) if "page=" in target else 0
            if number >= pages:
                return _not_found()
            headers = [("Content-Type", "application/json")]
            if number + 1 < pages:
                headers.append(("Link", f'</v2/team/flood/tags/list?page={number + 1}>; rel="next"'))
            return Reply(200, headers, page(number))
        if target.startswith("/v2/team/warm/tags/list"):
            return _json({"name": "team/warm", "tags": ["1.0"]})
        return _not_found()

    with HostileServer(route) as server:
        started = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-c", _FLOOD_CHILD, server.host, str(tmp / "no-docker-config.json")],
            capture_output=True, text=True, timeout=300, cwd=ROOT,
        )
        seconds = time.monotonic() - started
        requested = sum(1 for _, target in server.log if "/team/flood/" in target)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    error = report["error"]
    assert error is not None, f"a {pages}-page tag list was accepted whole ({report['tags']} tags, {report})"
    assert "team/flood" in error and server.host in error and "for one repository" in error, error
    assert not report["cached"], "an oversized tag list was cached"
    assert requested < pages, f"all {pages} pages were read"
    return {
        "seconds": seconds,
        "pages_read": float(requested),
        "peak_rss_mib": report["peak_mib"],
        "rss_growth_mib": report["peak_mib"] - report["before_mib"],
    }


# ------------------------------------------------------------------------------------- 3. Link and headers


def huge_and_quadratic_link_headers(tmp: Path) -> dict[str, float]:
    """A 60 KB ``Link`` header built against regex backtracking, and a 96 KB header.

    The first is parsed in linear time (the event loop's longest stall is measured meanwhile) and its
    next page followed; the second is refused with an error naming the registry.
    """
    from image_updater.errors import RegistryError
    from image_updater.registry import RegistryOptions

    evil_link = "<a>; rel=" + " " * 60_000 + 'x, </v2/team/links/tags/list?page=2>; rel="next"'

    def route(method: str, target: str) -> Reply:
        if target.startswith("/v2/team/links/tags/list?page=2"):
            return _json({"name": "team/links", "tags": ["2.0"]})
        if target.startswith("/v2/team/links/tags/list"):
            return _json({"name": "team/links", "tags": ["1.0"]}, ("Link", evil_link))
        if target.startswith("/v2/team/huge/tags/list"):
            return _json({"name": "team/huge", "tags": ["1.0"]}, ("X-Padding", "a" * 96_000))
        return _not_found()

    with HostileServer(route) as server:
        client = _client(RegistryOptions(prefix=server.host, insecure=True, timeout=10), tmp=tmp)

        async def run() -> tuple[list[str], str | None, float]:
            stall = 0.0
            done = asyncio.Event()

            async def ticker() -> None:
                nonlocal stall
                last = time.monotonic()
                while not done.is_set():
                    await asyncio.sleep(0.01)
                    now = time.monotonic()
                    stall, last = max(stall, now - last), now

            async with client, asyncio.timeout(120):
                tick = asyncio.create_task(ticker())
                try:
                    tags = await client.list_tags(f"{server.host}/team/links")
                    try:
                        await client.list_tags(f"{server.host}/team/huge")
                        error = None
                    except RegistryError as exc:
                        error = str(exc)
                finally:
                    done.set()
                    await tick
            return tags, error, stall

        started = time.monotonic()
        try:
            tags, error, stall = asyncio.run(run())
        except TimeoutError:
            raise AssertionError("reading two tag lists took more than 120 s (event loop blocked?)") from None
        seconds = time.monotonic() - started
    assert tags == ["1.0", "2.0"], tags
    assert error is not None, "a 96 KB response header was accepted"
    assert server.host in error and "team/huge" in error and "headers" in error, error
    return {"seconds": seconds, "max_loop_stall_seconds": stall}


# ------------------------------------------------------------------------------------------ 4. Retry-After


def retry_after_forever(
    tmp: Path, *, retry_after: str = "1000000000", max_wait: float = 2.0
) -> dict[str, float]:
    """A registry answering its first request with 429 and an absurd ``Retry-After`` (seconds or a date).

    The first pass fails that image quickly (the wait is capped at ``max_wait`` and no longer than the
    request may take); a later pass, once the capped pause has expired, succeeds without a restart.
    """
    from image_updater.errors import RegistryError
    from image_updater.registry import RegistryOptions, RetryPolicy

    answered = threading.Event()

    def route(method: str, target: str) -> Reply:
        if target.startswith("/v2/team/slow/tags/list"):
            if not answered.is_set():
                answered.set()
                return _json({"errors": [{"code": "TOOMANYREQUESTS"}]}, ("Retry-After", retry_after),
                             status=429)
            return _json({"name": "team/slow", "tags": ["1.0", "1.1"]})
        return _not_found()

    with HostileServer(route) as server:
        image = f"{server.host}/team/slow"
        client = _client(
            RegistryOptions(prefix=server.host, insecure=True, timeout=1.0), tmp=tmp,
            retry=RetryPolicy(attempts=4, initial=0.05, maximum=0.2, max_wait=max_wait),
        )

        async def passes() -> tuple[str, float, list[str], int]:
            async with client, asyncio.timeout(60):
                started = time.monotonic()
                try:
                    with client.one_pass():
                        await client.list_tags(image)
                    raise AssertionError("the first pass did not see the 429")
                except RegistryError as exc:
                    first_error = str(exc)
                first_seconds = time.monotonic() - started
                for number in range(2, 200):  # later passes, until the capped pause expires
                    try:
                        with client.one_pass():
                            return first_error, first_seconds, await client.list_tags(image), number
                    except RegistryError:
                        await asyncio.sleep(0.2)
            raise AssertionError("the registry stayed silenced")

        started = time.monotonic()
        try:
            first_error, first_seconds, tags, number = asyncio.run(passes())
        except TimeoutError:
            raise AssertionError("the registry stayed silenced for 60 s") from None
        seconds = time.monotonic() - started
    assert "team/slow" in first_error and server.host in first_error, first_error
    assert tags == ["1.0", "1.1"], tags
    return {"first_pass_seconds": first_seconds, "seconds_until_answered": seconds, "passes": float(number)}


# ---------------------------------------------------------------------------------- 5. credential helpers


def _write_helper(directory: Path, name: str, script: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"docker-credential-{name}"
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(script))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@contextlib.contextmanager
def _path_with(directory: Path) -> Iterator[None]:
    before = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{directory}{os.pathsep}{before}"
    try:
        yield
    finally:
        os.environ["PATH"] = before


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage() + " " + " ".join(f"{k}={v}" for k, v in vars(record).items())
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.texts.append(text)


def credential_helper_leak(tmp: Path) -> dict[str, float]:
    """A helper that prints its JSON answer (the secret) and then fails, with a hostile stderr line.

    The image's error entry, the logs at every level and every report format name the helper and its exit
    code, show a sanitised stderr line, and never the secret.
    """
    from image_updater.checkout import plan_directory
    from image_updater.registry import RegistryOptions
    from image_updater.report import render

    bin_dir = tmp / "bin"
    _write_helper(bin_dir, "leaky", f"""\
        import sys
        sys.stdin.read()
        print('{{"ServerURL": "x", "Username": "robot", "Secret": "{CANARY}"}}')
        sys.stderr.write("\\x1b[31mfatal:\\x07 token {CANARY} rejected" + "!" * 500)
        sys.stderr.write("\\nsecond line {CANARY}\\n")
        sys.exit(3)
        """)

    def route(method: str, target: str) -> Reply:
        if target.startswith("/v2/"):
            return _json({"errors": [{"code": "UNAUTHORIZED"}]},
                         ("WWW-Authenticate", 'Basic realm="hostile"'), status=401)
        return _not_found()

    root = tmp / "repo"
    root.mkdir(parents=True)
    records = _Records()
    logger = logging.getLogger()
    old_level = logger.level
    with HostileServer(route) as server, _path_with(bin_dir):
        config = tmp / "docker-config.json"
        config.write_text(json.dumps({"credHelpers": {server.host: "leaky"}}))
        (root / "app.yaml").write_text(deployment("app", f"{server.host}/team/app:1.0", "semver:*"))
        client = _client(RegistryOptions(prefix=server.host, insecure=True, timeout=5), tmp=tmp,
                         docker_config=config)

        async def one_pass() -> Any:
            async with client, asyncio.timeout(60):
                return await plan_directory(root, client=client)

        logger.addHandler(records)
        logger.setLevel(logging.DEBUG)
        try:
            started = time.monotonic()
            planned = asyncio.run(one_pass())
            seconds = time.monotonic() - started
        finally:
            logger.removeHandler(records)
            logger.setLevel(old_level)
    result = planned.result
    assert len(result.errors) == 1, result.errors
    message = result.errors[0].message
    assert "docker-credential-leaky" in message and "exit code 3" in message, message
    assert "\\x1b" in message and "\x1b" not in message and "\x07" not in message, message
    assert len(message) < 500, message
    reports = [render(result, fmt) for fmt in ("table", "json", "markdown")]
    for where, text in [("error", message), *(("report", r) for r in reports),
                        *(("log", t) for t in records.texts)]:
        assert CANARY not in text, f"the helper's secret is in a {where}: {text[:300]}"
    return {"seconds": seconds}


def credential_helper_hang_and_flood(tmp: Path, *, helper_timeout: float = 2.0) -> dict[str, float]:
    """Helpers that never answer, that write 100 MB, and a failure asked for by many images at once.

    Each fails with a clear error within the helper timeout (generous: a hang is what breaks it), the flood
    is cut at the output cap, and a failing helper runs once however many images ask.
    """
    from image_updater.errors import RegistryAuthError
    from image_updater.registry.credentials import CredentialStore

    bin_dir = tmp / "bin"
    runs = tmp / "runs.txt"
    _write_helper(bin_dir, "hang", """\
        import time
        for _ in range(600):
            time.sleep(1)
        """)
    _write_helper(bin_dir, "flood", """\
        import sys
        block = b"x" * 65536
        for _ in range(1600):  # 100 MiB, bounded
            sys.stdout.buffer.write(block)
        """)
    _write_helper(bin_dir, "counted", f"""\
        import sys
        with open({str(runs)!r}, "a") as handle:
            handle.write("run\\n")
        sys.stderr.write("no keychain here\\n")
        sys.exit(1)
        """)
    figures: dict[str, float] = {}
    with _path_with(bin_dir):
        for name in ("hang", "flood", "counted"):
            config = tmp / f"{name}.json"
            config.write_text(json.dumps({"credHelpers": {"registry.example": name}}))
            store = CredentialStore(config, helper_timeout=helper_timeout)

            async def ask(store: CredentialStore = store) -> list[BaseException | Any]:
                async with asyncio.timeout(120):
                    return await asyncio.gather(
                        *(store.get("registry.example") for _ in range(20)), return_exceptions=True
                    )

            started = time.monotonic()
            answers = asyncio.run(ask())
            figures[f"{name}_seconds"] = time.monotonic() - started
            assert all(isinstance(a, RegistryAuthError) for a in answers), answers
            text = str(answers[0])
            expected = {"hang": "did not answer within", "flood": "wrote more than",
                        "counted": "failed with exit code 1: no keychain here"}[name]
            assert expected in text and f"docker-credential-{name}" in text, text
    figures["counted_runs"] = float(len(runs.read_text().splitlines()))
    assert figures["counted_runs"] == 1, f"the failing helper ran {figures['counted_runs']:.0f} times"
    return figures


# ------------------------------------------------------------------------------ 6. secrets in *_env fields


def secret_in_env_name_fields(tmp: Path) -> dict[str, float]:
    """A config with tokens pasted where variable names belong: refused, each field named, no value echoed."""
    from image_updater.errors import ConfigError
    from image_updater.settings import load_settings

    github = "ghp_" + "Zq8xK2mW9vL4nR7tY1bC5dF3gH6jP0sA1uE2"
    webhook = "x9Kq2mVb7Tz4Lw8Nc3Rp5Hd1Fg6Js0Ya"
    gitlab = "glpat-Ab3Cd5Ef7Gh9Ij1Kl3Mn"
    config = tmp / "config.yaml"
    config.write_text(textwrap.dedent(f"""\
        sources:
          - name: app
            url: https://git.example.com/team/app.git
            auth:
              token_env: {github}
        registries:
          - prefix: ghcr.io
            credentials: env:{github}
        http:
          webhook_secret_env: {webhook}
        """))
    try:
        load_settings(config, env={"IMAGE_UPDATER_SOURCES__0__AUTH__TOKEN_ENV": gitlab})
    except ConfigError as exc:
        message = str(exc)
    else:
        raise AssertionError("a config with secrets in *_env fields was accepted")
    for secret in (github, webhook, gitlab, github[4:20], webhook[:16]):
        assert secret not in message, message
    for path in ("sources[0].auth.token_env", "registries[0].credentials", "http.webhook_secret_env"):
        assert path in message, message
    assert message.count("looks like a secret") >= 3, message
    return {"problems": float(message.count("\n"))}
