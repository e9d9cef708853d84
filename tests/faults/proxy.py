"""A fault-injecting HTTP reverse proxy for tests: real registry behind, chosen requests broken in front.

``FaultProxy(upstream)`` listens on a free 127.0.0.1 port and forwards every request to ``upstream`` (a
plain-HTTP origin such as the distribution registry fixture). Rules (:class:`Fault`) decide, per request and
reproducibly (one seeded ``random.Random`` behind a lock), whether to break it and how:

=================== ====================================================================================
kind                what the client sees
=================== ====================================================================================
``status``          an error answer of the rule's ``status`` (500, 502, 503, ...) without asking upstream
``rate_limit``      ``429 Too Many Requests``, with ``Retry-After: <retry_after>`` when that is set
``delay``           nothing for ``delay`` seconds (past the client's timeout), then the real answer
``reset``           the connection reset (RST) after the request was read, before any answer
``truncate``        the real status and headers, ``Content-Length`` larger than the half body sent, close
``invalid_json``    ``200`` with the real headers and a body that is not JSON
``huge_body``       ``200`` and a body of ``huge_size`` bytes (declared in Content-Length or streamed)
``digest_mismatch`` the real manifest changed (a build-time annotation added) under the real
                    ``Docker-Content-Digest``: what a tampering mirror or a corrupting cache would send
``body``            ``200`` with the real headers and ``body`` instead of the real body (a hostile answer)
=================== ====================================================================================

Rules match on a regular expression searched in the request target (path and query) and optionally the
method; ``times`` bounds how often a rule fires, ``probability`` makes it fire on a seeded coin. Body
faults (``truncate``, ``invalid_json``, ``huge_body``, ``digest_mismatch``, ``body``) fire only on ``GET``
requests that upstream answered with 200, so that a rule counts only the faults it really injected. The
first rule that fires wins. ``injected`` counts injections by :attr:`Fault.label`; ``requests`` counts
every request.

Threaded stdlib server: every connection gets its own thread and is closed after one exchange
(``Connection: close``), which keeps resets and truncations unambiguous. ``stop()`` wakes sleeping delays.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import urlsplit

__all__ = ["BODY_KINDS", "KINDS", "Fault", "FaultProxy"]

FaultKind = Literal[
    "status", "rate_limit", "delay", "reset", "truncate", "invalid_json", "huge_body", "digest_mismatch",
    "body",
]
KINDS: tuple[FaultKind, ...] = (
    "status", "rate_limit", "delay", "reset", "truncate", "invalid_json", "huge_body", "digest_mismatch",
    "body",
)
BODY_KINDS = frozenset({"truncate", "invalid_json", "huge_body", "digest_mismatch", "body"})

_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length",
})
_FORGED_CREATED = "2999-01-01T00:00:00Z"


@dataclass
class Fault:
    """One rule. ``path`` is a regex searched in the request target; ``times=None`` means unlimited."""

    kind: FaultKind
    path: str = ""
    method: str | None = None
    status: int = 503
    retry_after: str | None = None
    delay: float = 5.0
    huge_size: int = 32 * 1024 * 1024
    declare_length: bool = False
    body: bytes = b""
    times: int | None = None
    probability: float = 1.0
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        self._regex = re.compile(self.path)

    @property
    def label(self) -> str:
        """How the fault is counted: the kind, with the status for ``status`` and the header for 429s."""
        if self.kind == "status":
            return f"status_{self.status}"
        if self.kind == "rate_limit":
            return "rate_limit_retry_after" if self.retry_after is not None else "rate_limit"
        return self.kind

    def matches(self, method: str, target: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.kind in BODY_KINDS and method.upper() != "GET":
            return False
        return self._regex.search(target) is not None

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up mid-answer are what these tests are about; no tracebacks on stderr


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # -- request -------------------------------------------------------------------------------------------

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        proxy = self.server.proxy
        self.close_connection = True
        body = self._body()
        method, target = self.command, self.path
        proxy._count_request(method, target)
        fault = proxy._pick(method, target, body_faults=False)
        if fault is not None:
            if fault.kind == "reset":
                self._reset()
                return
            if fault.kind == "status":
                self._answer(fault.status, {}, _error_body(fault.status))
                return
            if fault.kind == "rate_limit":
                extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                self._answer(429, extra, _error_body(429))
                return
            if fault.kind == "delay" and proxy._stopped.wait(fault.delay):
                return
        try:
            status, reason, headers, payload = proxy._forward(method, target, self.headers, body)
        except OSError:
            self._answer(502, {}, _error_body(502))
            return
        body_fault = proxy._pick(method, target, body_faults=True) if status == 200 else None
        if body_fault is None:
            self._answer(status, headers, payload, reason=reason, head=method == "HEAD")
        elif body_fault.kind == "truncate":
            self._truncated(status, headers, payload)
        elif body_fault.kind == "invalid_json":
            self._answer(status, headers, b'{"name": "x", "tags": ["1.0.0", "1.1', reason=reason)
        elif body_fault.kind == "huge_body":
            self._huge(headers, body_fault)
        elif body_fault.kind == "body":
            self._answer(status, headers, body_fault.body, reason=reason)
        else:
            self._answer(status, headers, _tamper(payload), reason=reason)

    # -- answers -------------------------------------------------------------------------------------------

    def _send_head(
        self, status: int, headers: list[tuple[str, str]], length: int | None, reason: str = ""
    ) -> None:
        self.send_response(status, reason or None)
        for name, value in headers:
            self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()

    def _answer(
        self, status: int, headers: dict[str, str] | list[tuple[str, str]], body: bytes, *, reason: str = "",
        head: bool = False,
    ) -> None:
        items = list(headers.items()) if isinstance(headers, dict) else list(headers)
        if isinstance(headers, dict):
            items.append(("Content-Type", "application/json"))
        try:
            # a HEAD answer carries upstream's Content-Length (of the body it would have had)
            self._send_head(status, items, None if head else len(body), reason)
            if not head:
                self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            pass

    def _truncated(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        try:
            self._send_head(status, headers, len(body) + 1024)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
        except OSError:
            return
        self._shutdown()

    def _huge(self, headers: list[tuple[str, str]], fault: Fault) -> None:
        kept = [(k, v) for k, v in headers if k.lower() not in ("docker-content-digest", "etag")]
        try:
            self._send_head(200, kept, fault.huge_size if fault.declare_length else None)
            chunk = b'{"tags": [' + b'"x", ' * 10_000
            sent = 0
            while sent < fault.huge_size and not self.server.proxy._stopped.is_set():
                piece = chunk[: fault.huge_size - sent]
                self.wfile.write(piece)
                sent += len(piece)
            self.wfile.flush()
        except OSError:
            return
        self._shutdown()

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout turns close() into a RST instead of an orderly FIN
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def _shutdown(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _error_body(status: int) -> bytes:
    code = {429: "TOOMANYREQUESTS", 502: "UNAVAILABLE", 503: "UNAVAILABLE"}.get(status, "UNKNOWN")
    return json.dumps({"errors": [{"code": code, "message": f"injected fault {status}"}]}).encode()


def _tamper(body: bytes) -> bytes:
    """The manifest with a forged build time: same meaning to a careless client, another digest."""
    try:
        data = json.loads(body)
    except ValueError:
        return body + b" "
    if not isinstance(data, dict):
        return body + b" "
    found = data.get("annotations")
    annotations: dict[str, Any] = found if isinstance(found, dict) else {}
    data["annotations"] = {**annotations, "org.opencontainers.image.created": _FORGED_CREATED}
    return json.dumps(data).encode()


class FaultProxy:
    """The proxy; use as a context manager or call ``start``/``stop``. ``host`` is ``127.0.0.1:<port>``."""

    def __init__(self, upstream: str, *, seed: int = 0, rules: Iterable[Fault] = (), timeout: float = 30.0):
        parts = urlsplit(upstream if "://" in upstream else f"http://{upstream}")
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream_host: str = parts.hostname
        self.upstream_port: int = parts.port
        self.timeout = timeout
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._rules: list[Fault] = list(rules)
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self.log: list[tuple[str, str, str | None]] = []  # (method, target, fault label or None)
        self._stopped = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> Self:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fault-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    # -- rules ---------------------------------------------------------------------------------------------

    def set_rules(self, *rules: Fault) -> None:
        with self._lock:
            self._rules = list(rules)

    def add_rule(self, rule: Fault) -> None:
        with self._lock:
            self._rules.append(rule)

    def reseed(self, seed: int) -> None:
        """Restart the coin flips of probabilistic rules from ``seed``."""
        with self._lock:
            self._random.seed(seed)

    def clear(self) -> None:
        """No more faults: from now on every request is forwarded unchanged."""
        self.set_rules()

    @property
    def total_injected(self) -> int:
        with self._lock:
            return sum(self.injected.values())

    def _count_request(self, method: str, target: str) -> None:
        with self._lock:
            self.requests += 1

    def _pick(self, method: str, target: str, *, body_faults: bool) -> Fault | None:
        with self._lock:
            for rule in self._rules:
                if (rule.kind in BODY_KINDS) != body_faults or rule.exhausted:
                    continue
                if not rule.matches(method, target):
                    continue
                if rule.probability < 1.0 and self._random.random() >= rule.probability:
                    continue
                rule.fired += 1
                self.injected[rule.label] += 1
                self.log.append((method, target, rule.label))
                return rule
            if not body_faults:
                self.log.append((method, target, None))
            return None

    # -- forwarding ----------------------------------------------------------------------------------------

    def _forward(
        self, method: str, target: str, headers: Any, body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=self.timeout)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
            if body or method in ("POST", "PUT", "PATCH"):
                sent["Content-Length"] = str(len(body))
            conn.request(method, target, body=body or None, headers=sent)
            response = conn.getresponse()
            payload = b"" if method == "HEAD" else response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            if method == "HEAD":
                length = response.getheader("Content-Length")
                if length is not None:
                    kept.append(("Content-Length", length))
            return response.status, response.reason, kept, payload
        finally:
            conn.close()
