"""The daemon's HTTP endpoints: ``/healthz``, ``/readyz``, ``/metrics`` and ``POST /webhook``.

A deliberately small HTTP/1.1 server on ``asyncio.start_server``: one request per connection
(``Connection: close``), bodies only with ``Content-Length`` (no chunked uploads: every registry's notifier
sends a length), strict parsing of the request line and headers (no folded lines, no bare CR or LF, no
duplicate framing headers), limits everywhere: header block size, body size (413 without reading it), a
deadline for the head and one for the body (408), a cap on concurrent connections (503). Nothing here can
make a slow or hostile client hold the server.

``/webhook`` exists only when a shared secret is configured (404 otherwise, never open). An unauthenticated
request gets 401, a malformed one 400; neither changes anything. The secret check happens before the body
is parsed, so the parser only ever sees bodies from someone holding the secret; it still bounds what it
parses (``image_updater.webhooks``: size and nesting depth). Every answer to a request whose request line
names ``/webhook`` is counted once in ``image_updater_webhook_requests_total``, whatever stage produced it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol

from image_updater.errors import ConfigError, _HttpError
from image_updater.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from image_updater.metrics import Metrics, WebhookResult
from image_updater.webhooks import MalformedWebhook, PushEvent, authenticate, parse_push_events

__all__ = ["Backend", "HttpServer", "Limits", "parse_listen"]

log = logging.getLogger("image_updater.http")

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TARGET = re.compile(r"/[\x21-\x7e]*")
_VERSION = re.compile(r"HTTP/(\d)\.(\d)")
# Headers that decide how the request is framed or authenticated must not appear twice: a second copy is
# how request smuggling and signature confusion start.
_SINGLE_HEADERS = frozenset({
    "content-length", "transfer-encoding", "host", "authorization", "x-hub-signature-256", "x-signature-256",
    "expect",
})
_MAX_HEADERS = 100
# The result label of an answer to /webhook, when the handler did not name a more precise one.
_RESULTS: dict[int, WebhookResult] = {
    200: "ignored", 202: "accepted", 400: "bad_request", 401: "unauthorized", 404: "disabled",
    405: "method_not_allowed", 408: "timeout", 411: "length_required", 413: "too_large", 431: "too_large",
    500: "error", 503: "unavailable", 505: "bad_request",
}


class Backend(Protocol):
    """What the endpoints need from the daemon (``image_updater.daemon.Daemon``)."""

    def alive(self) -> bool: ...
    def ready(self) -> bool: ...
    def sources_for(self, events: Iterable[PushEvent]) -> list[str]: ...
    def trigger(
        self, sources: Iterable[str], *, reason: str = "webhook", events: Sequence[PushEvent] = ()
    ) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int = 1 << 20  # registry notifications are a few KiB; GitHub caps its payloads at 25 MiB
    max_head: int = 16 << 10  # request line and headers together
    head_timeout: float = 10.0
    body_timeout: float = 30.0
    write_timeout: float = 10.0
    max_connections: int = 64


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    peer: str


@dataclass(slots=True)
class _Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    # bytes of request body the client may still be sending; read and dropped before closing, so the
    # client sees our answer rather than a connection reset
    unread: int = 0
    # the webhook metric's result when the status alone does not say it (an authenticated body that does
    # not parse is "malformed", other 400s are "bad_request")
    result: WebhookResult | None = None


def parse_listen(listen: str) -> tuple[str | None, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (all interfaces) -> (host, port)."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"http.listen must be host:port, got {listen!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"http.listen: write an IPv6 address in brackets, got {listen!r}")
    return (host or None), int(port_text)


def _json(status: int, payload: dict[str, Any], **kwargs: Any) -> _Response:
    return _Response(status, json.dumps(payload).encode() + b"\n", "application/json", **kwargs)


def _text(status: int, message: str, **kwargs: Any) -> _Response:
    return _Response(status, message.encode() + b"\n", **kwargs)


def _names_webhook(request_line: bytes) -> bool:
    """Whether a (possibly malformed) request line targets ``/webhook``: decides what the metric counts."""
    parts = request_line.rstrip(b"\r\n").split(b" ")
    return len(parts) >= 2 and parts[1].partition(b"?")[0] == b"/webhook"


class HttpServer:
    """Serves the endpoints for ``backend`` on ``listen`` until ``close``."""

    def __init__(
        self, backend: Backend, *, metrics: Metrics, listen: str = "127.0.0.1:8080",
        webhook_secret: str | None = None, limits: Limits | None = None,
    ) -> None:
        self.backend = backend
        self.metrics = metrics
        self.listen = listen
        self.limits = limits or Limits()
        self._secret = webhook_secret or None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); useful with port 0."""
        assert self._server is not None and self._server.sockets
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self) -> None:
        host, port = parse_listen(self.listen)
        self._server = await asyncio.start_server(
            self._on_connection, host, port, limit=self.limits.max_head, reuse_address=True,
        )
        host_, port_ = self.address
        shown = f"[{host_}]:{port_}" if ":" in host_ else f"{host_}:{port_}"
        log.info(
            "listening on http://%s (/healthz /readyz /metrics%s)", shown,
            " /webhook" if self._secret else "; /webhook disabled: no http.webhook_secret_env",
        )

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=5.0)
        await self._server.wait_closed()
        self._server = None

    # -- connection handling -------------------------------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self.limits.max_connections:
            with contextlib.suppress(Exception):
                await self._send(writer, _text(503, "too many connections"), head_only=False)
            await self._close(writer)
            return
        self._connections.add(task)
        try:
            await self._serve_one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away or stalled while we answered: nothing left to tell it
        except Exception:
            log.exception("HTTP handler failed")
        finally:
            self._connections.discard(task)
            await self._close(writer)

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        peer_text = str(peer[0]) if isinstance(peer, tuple) else "?"
        lines: list[bytes] = []  # filled as they arrive: a stalled head still shows its request line
        try:
            await self._read_head(reader, lines)
        except asyncio.IncompleteReadError:
            return  # closed before sending a full head (port scanners, TCP health checks)
        except _HttpError as exc:  # 408 (too slow) or 431 (too large)
            await self._answer(writer, _text(exc.status, str(exc)), lines[:1], head_only=False)
            return
        try:
            request = self._parse_head(b"".join(lines), peer_text)
        except _HttpError as exc:
            await self._answer(writer, _text(exc.status, str(exc)), lines[:1], head_only=False)
            return
        try:
            response = await self._dispatch(request, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            raise  # the client went away or stalled: no answer to give
        except Exception:
            # a bug must not cost the client its answer (nor the metric its count)
            log.exception("HTTP handler for %s %s failed", request.method, request.path)
            response = _text(500, "internal error")
        await self._answer(writer, response, lines[:1], head_only=request.method == "HEAD")
        if response.unread:
            await self._discard(reader, response.unread, writer)
        log.debug("%s %s %s -> %d", peer_text, request.method, request.path, response.status)

    async def _read_head(self, reader: asyncio.StreamReader, lines: list[bytes]) -> None:
        """Read the request line and headers into ``lines`` (each with its CRLF, the empty line last).

        One deadline and one size cap for the whole head; raises ``_HttpError`` 408 or 431.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.head_timeout
        size = 0
        while not lines or lines[-1] != b"\r\n" or len(lines) == 1:
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\r\n"), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise _HttpError(408, "request head not received in time") from None
            except asyncio.LimitOverrunError:
                raise _HttpError(431, "request head too large") from None
            size += len(line)
            if size > self.limits.max_head:
                raise _HttpError(431, "request head too large")
            if len(lines) > _MAX_HEADERS + 1:  # the request line, the headers, and this is not the end
                raise _HttpError(431, "too many header fields")
            lines.append(line)

    def _parse_head(self, head: bytes, peer: str) -> _Request:
        try:
            text = head[:-4].decode("ascii")
        except UnicodeDecodeError:
            raise _HttpError(400, "non-ASCII bytes in the request head") from None
        lines = text.split("\r\n")
        if any(ch in line for line in lines for ch in "\r\n\0"):
            raise _HttpError(400, "bare CR, LF or NUL in the request head")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]):
            raise _HttpError(400, "malformed request line")
        method, target, version = parts
        match = _VERSION.fullmatch(version)
        if match is None:
            raise _HttpError(400, "malformed HTTP version")
        if match.group(1) != "1":
            raise _HttpError(505, "only HTTP/1.x is supported")
        if not _TARGET.fullmatch(target):
            raise _HttpError(400, "the request target must be an absolute path")
        if len(lines) - 1 > _MAX_HEADERS:
            raise _HttpError(431, "too many header fields")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not _TOKEN.fullmatch(name):  # also rejects obs-fold (leading whitespace)
                raise _HttpError(400, "malformed header field")
            key = name.lower()
            value = value.strip(" \t")
            if key in headers:
                if key in _SINGLE_HEADERS:
                    raise _HttpError(400, f"duplicate {name} header")
                headers[key] += ", " + value
            else:
                headers[key] = value
        path, _, query = target.partition("?")
        return _Request(method, path, query, headers, peer)

    async def _dispatch(
        self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> _Response:
        if request.path == "/webhook":
            if self._secret is None:
                return _text(404, "not found: the webhook is disabled (no http.webhook_secret_env)")
            if request.method != "POST":
                return _text(405, "method not allowed", headers={"Allow": "POST"})
            return await self._webhook(request, reader, writer, self._secret)
        routes = {"/healthz": self._healthz, "/readyz": self._readyz, "/metrics": self._metrics}
        handler = routes.get(request.path)
        if handler is None:
            return _text(404, "not found")
        if request.method not in ("GET", "HEAD"):
            return _text(405, "method not allowed", headers={"Allow": "GET, HEAD"})
        return handler()

    def _healthz(self) -> _Response:
        if self.backend.alive():
            return _text(200, "ok")
        return _text(503, "scheduler not running")

    def _readyz(self) -> _Response:
        if self.backend.ready():
            return _text(200, "ready")
        return _text(503, "not ready: no pass has finished yet")

    def _metrics(self) -> _Response:
        return _Response(200, self.metrics.render(), METRICS_CONTENT_TYPE)

    async def _webhook(
        self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: str
    ) -> _Response:
        headers = request.headers
        if "transfer-encoding" in headers:
            return _text(411, "send the body with Content-Length; chunked uploads are not accepted")
        length_text = headers.get("content-length")
        if length_text is None:
            return _text(411, "Content-Length required")
        if not length_text.isdigit():
            return _text(400, "invalid Content-Length")
        length = int(length_text)
        if length > self.limits.max_body:
            log.warning("webhook from %s refused: body of %d bytes exceeds %d", request.peer, length,
                        self.limits.max_body)
            return _text(413, f"body larger than {self.limits.max_body} bytes", unread=length)
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await asyncio.wait_for(writer.drain(), self.limits.write_timeout)
        try:
            body = await asyncio.wait_for(reader.readexactly(length), self.limits.body_timeout)
        except TimeoutError:
            return _text(408, "request body not received in time")
        if not authenticate(secret, body, headers, request.query):
            log.warning("webhook from %s refused: missing or wrong signature or token", request.peer)
            return _text(401, "unauthorized", headers={"WWW-Authenticate": 'Bearer realm="image-updater"'})
        try:
            events = parse_push_events(body, headers.get("content-type"), max_bytes=self.limits.max_body)
        except MalformedWebhook as exc:
            log.warning("webhook from %s refused: %s", request.peer, exc)
            return _json(400, {"error": str(exc)}, result="malformed")
        if not self.backend.alive():
            return _json(503, {"error": "shutting down"}, headers={"Retry-After": "30"})
        sources = self.backend.sources_for(events) if events else []
        reason = "webhook: " + ", ".join(sorted({f"{e.name}:{e.tag}" for e in events}))[:300]
        triggered = self.backend.trigger(sources, reason=reason, events=events) if sources else []
        if events and not triggered:
            log.info("%s: no source tracks it", reason)
        payload = {"events": [e.to_dict() for e in events], "sources": triggered}
        return _json(202 if triggered else 200, payload)

    # -- writing -------------------------------------------------------------------------------------

    async def _answer(
        self, writer: asyncio.StreamWriter, response: _Response, request_line: list[bytes], *, head_only: bool
    ) -> None:
        """Count an answer to ``/webhook`` (before sending: a client that hangs up was still answered)."""
        if request_line and _names_webhook(request_line[0]):
            self.metrics.webhook(response.result or _RESULTS.get(response.status, "error"))
        await self._send(writer, response, head_only=head_only)

    async def _send(self, writer: asyncio.StreamWriter, response: _Response, *, head_only: bool) -> None:
        reason = HTTPStatus(response.status).phrase
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            "Cache-Control: no-store",
            "Connection: close",
            *(f"{k}: {v}" for k, v in response.headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
        if not head_only:
            writer.write(response.body)
        await asyncio.wait_for(writer.drain(), self.limits.write_timeout)

    async def _discard(self, reader: asyncio.StreamReader, budget: int, writer: asyncio.StreamWriter) -> None:
        """Read and drop what the client still sends (bounded in bytes and time) before closing."""
        if writer.can_write_eof():
            writer.write_eof()
        budget = min(budget, 4 * self.limits.max_body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        with contextlib.suppress(TimeoutError, ConnectionError):
            while budget > 0:
                left = max(0.0, deadline - loop.time())
                chunk = await asyncio.wait_for(reader.read(min(budget, 65536)), left)
                if not chunk:
                    break
                budget -= len(chunk)

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
