"""The daemon's HTTP endpoints: ``/healthz``, ``/readyz``, ``/metrics``, ``POST /webhook`` and, through a
``PageHandler``, the status page.

HTTP/1.1 itself is uvicorn's (h11 parser), running in the daemon's own event loop beside the APScheduler
AsyncIOScheduler; this module is one plain ASGI callable. Why uvicorn on h11 and not aiohttp's server,
measured on the daemon's own imports (httpx, which already loads h11, the scheduler, pydantic): importing
``aiohttp.web`` adds 165-230 ms and 10.9 MiB of RSS, ``uvicorn`` with its h11 protocol 26-40 ms and 2.3 MiB
(Starlette on top would add nothing we need: the routes are five). The project's budget for the change was
+10 MB and +0.1 s of start-up; only uvicorn fits it.

What uvicorn does not bound, a subclass of its h11 protocol does, before h11 sees the request head: a
deadline for the head (408 and close: uvicorn has none), its size (431 over ``max_head``; h11's own cap is
the same figure), more than 100 fields (431), and what h11 tolerates where request smuggling starts (400:
bare LF or CR, NUL, folded lines, duplicate framing or authentication headers - h11 merges equal
``Content-Length`` copies). It also drops a connection whose answer is not read within ``write_timeout``
(asyncio's ``close`` would wait for the buffer forever) and tells the handler when a client closes its side
mid-body (uvicorn ignores EOF). The ASGI side answers 505 to other HTTP versions, 400 to a target that is
not an absolute path, 413 on a declared larger ``Content-Length`` without reading a byte (with
``Expect: 100-continue`` before the client sends it: uvicorn sends 100 only when the body is read), 411 to
chunked uploads or no length (as before), 408 to a slow body, 503 over the connection cap, and 429 with
``Retry-After`` over the per-client token bucket on ``/webhook``. Every answer is ``Connection: close``: one
request per connection, so nothing idles on keep-alive.

``/webhook`` exists only when a shared secret is configured (404 otherwise, never open). An unauthenticated
request gets 401, a malformed one 400; neither changes anything. The secret check happens before the body
is parsed, so the parser only ever sees bodies from someone holding the secret; it still bounds what it
parses (``image_updater.webhooks``: size and nesting depth). Every answer to a request whose request line
names ``/webhook`` is counted once in ``image_updater_webhook_requests_total``, whichever side gave it
(uvicorn's own 400 for a head h11 cannot parse included); a client that resets the connection mid-body is
counted as ``bad_request`` without an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from image_updater.errors import ConfigError, _ClientGone, _HttpError
from image_updater.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from image_updater.metrics import Metrics, WebhookResult
from image_updater.sharding import FORWARDED_HEADER
from image_updater.webhooks import MalformedWebhook, PushEvent, authenticate, parse_push_events

__all__ = ["Backend", "HttpServer", "Limits", "PageHandler", "Throttle", "parse_listen"]

log = logging.getLogger("image_updater.http")

PageHandler = Callable[
    [str, str, Mapping[str, str]], Awaitable[tuple[int, list[tuple[str, str]], bytes] | None]
]
"""``await pages(method, path_with_query, headers_lowercased)`` for a GET or HEAD of any path that is not
one of the server's own: (status, headers, body), or None for 404. HEAD answers carry no body."""

# Headers that decide how the request is framed or authenticated must not appear twice: a second copy is
# how request smuggling and signature confusion start.
_SINGLE_HEADERS = frozenset({
    "content-length", "transfer-encoding", "host", "authorization", "x-hub-signature-256", "x-signature-256",
    "expect",
})
_MAX_HEADERS = 100
# a LF without CR, a CR without LF, a NUL, or a line starting with whitespace (obs-fold)
_BAD_HEAD = re.compile(rb"(?<!\r)\n|\r(?!\n)|\x00|\r\n[ \t]")
_EOF = "image_updater.eof"  # set in the scope's state when the client closed its side before the body ended
# The result label of an answer to /webhook, when the handler did not name a more precise one.
_RESULTS: dict[int, WebhookResult] = {
    200: "ignored", 202: "accepted", 400: "bad_request", 401: "unauthorized", 404: "disabled",
    405: "method_not_allowed", 408: "timeout", 411: "length_required", 413: "too_large", 429: "throttled",
    431: "too_large", 500: "error", 503: "unavailable", 505: "bad_request",
}
_PHRASES = {
    200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required", 413: "Content Too Large",
    429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
    503: "Service Unavailable", 505: "HTTP Version Not Supported",
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
class Throttle:
    """A token bucket per client address on ``/webhook``: ``burst`` requests at once, refilled over
    ``per_seconds`` (10 per 10 s: a registry sends one notification per push)."""

    burst: int = 10
    per_seconds: float = 10.0
    max_clients: int = 4096  # addresses remembered; the least recently seen is forgotten first


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int = 1 << 20  # registry notifications are a few KiB; GitHub caps its payloads at 25 MiB
    max_head: int = 16 << 10  # request line and headers together
    head_timeout: float = 10.0
    body_timeout: float = 30.0
    write_timeout: float = 10.0
    max_connections: int = 64
    # None: no throttling (a library default; the daemon passes Throttle(), see image_updater.daemon)
    throttle: Throttle | None = None


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


def _bind(listen: str) -> socket.socket:
    host, port = parse_listen(listen)
    if host is None:
        if socket.has_dualstack_ipv6():
            return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
        return socket.create_server(("", port))
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    return socket.create_server(address[:2], family=family)


class _Buckets:
    """Token buckets by client address, bounded in number."""

    def __init__(self, throttle: Throttle) -> None:
        self.throttle = throttle
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # peer -> (tokens, at)

    def take(self, peer: str) -> float:
        """Take a token for ``peer``: 0 when granted, else the seconds until one is there."""
        rate = self.throttle.burst / self.throttle.per_seconds
        now = time.monotonic()
        tokens, at = self._buckets.pop(peer, (float(self.throttle.burst), now))
        tokens = min(float(self.throttle.burst), tokens + (now - at) * rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / rate
        self._buckets[peer] = (tokens, now)
        while len(self._buckets) > self.throttle.max_clients:
            self._buckets.popitem(last=False)
        return wait


def _protocol_class(limits: Limits, on_webhook_refused: Callable[[int], None]) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the deadline for the request head that uvicorn lacks."""

    class _Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None
        _abort_timer: asyncio.TimerHandle | None = None
        _seen_request = False
        _lost = False

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head = bytearray()  # the request head as received, for the checks h11 does not make
            # uvicorn's per-request messages (a head h11 refuses, a failing handler) into the package's
            # log handler and format, not Python's last-resort handler on stderr
            self.logger = log.getChild("protocol")

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._head_timer = self.loop.call_later(limits.head_timeout, self._head_timed_out)

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            self._lost = True
            if self._abort_timer is not None:
                self._abort_timer.cancel()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._abort_later()  # every answer is Connection: close

        def _abort_later(self) -> None:
            """asyncio's close() waits for the write buffer to drain, however long a client does not read:
            after ``write_timeout``, drop the connection and what it still buffers."""
            if self._abort_timer is None and not self._lost:
                self._abort_timer = self.loop.call_later(limits.write_timeout, self._abort)

        def _abort(self) -> None:
            if not self._lost:
                log.info("%s: answer not read within %g s, connection dropped",
                         self.client[0] if self.client else "?", limits.write_timeout)
                self.transport.abort()

        def data_received(self, data: bytes) -> None:
            if not self._seen_request and len(self._head) <= limits.max_head:
                # h11 is lenient where smuggling starts: it takes a bare LF as a line end and joins folded
                # header lines. Until the head is complete, check what came so far.
                self._head += data
                end = self._head.find(b"\r\n\r\n")
                head = bytes(self._head[: end + 2] if end >= 0 else self._head.removesuffix(b"\r"))
                problem = _head_problem(head, complete=end >= 0, max_head=limits.max_head)
                if problem is not None:
                    self._refuse(*problem)
                    return
            super().data_received(data)

        def handle_events(self) -> None:
            super().handle_events()  # (h11 refuses a non-ASCII target before uvicorn decodes it)
            # uvicorn types ``cycle`` as always set; it is None until the first request head is complete
            if getattr(self, "cycle", None) is not None:
                self._seen_request = True
                self._cancel_head_timer()

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self._seen_request or self.transport.is_closing():
                return
            self._refuse(408, b"request head not received in time")

        def eof_received(self) -> bool:  # type: ignore[override]  # asyncio.Protocol allows bool
            # A client that half-closes still gets its answer. When its body is incomplete, it never will
            # be: tell the handler (waiting for more body, or about to answer without reading it).
            if not self._seen_request:
                return False
            if self.cycle.more_body:
                self.scope["state"][_EOF] = True
                self.cycle.message_event.set()
            return True

        def send_400_response(self, msg: str) -> None:  # what h11 cannot parse
            if not self._seen_request:  # once the app has the request, the app counts its answer
                self._count_refusal(400)
            super().send_400_response(msg)
            self._abort_later()

        def _count_refusal(self, status: int) -> None:
            if _names_webhook(bytes(self._head)):
                on_webhook_refused(status)

        def _refuse(self, status: int, message: bytes) -> None:
            """Answer before h11 has a request (it cannot answer one it has not seen) and close."""
            self._cancel_head_timer()
            self._count_refusal(status)
            self._seen_request = True  # nothing more is read from this connection
            body = message + b"\n"
            self.transport.write(
                b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
                b"Cache-Control: no-store\r\nConnection: close\r\n\r\n%s"
                % (status, _PHRASES[status].encode(), len(body), body)
            )
            self.transport.close()
            self._abort_later()

    return _Protocol


def _head_problem(head: bytes, *, complete: bool, max_head: int) -> tuple[int, bytes] | None:
    """What h11 lets through and we refuse: (status, message), or None."""
    if len(head) > max_head:
        return 431, b"request head too large"
    if _BAD_HEAD.search(head):
        return 400, b"bare CR, LF or NUL, or a folded line in the request head"
    if complete:
        names = [line.partition(b":")[0].strip().lower() for line in head.split(b"\r\n")[1:] if line]
        if len(names) > _MAX_HEADERS:
            return 431, b"too many header fields"
        for name in _SINGLE_HEADERS:
            if names.count(name.encode()) > 1:  # h11 merges equal copies of Content-Length
                return 400, b"duplicate " + name.encode() + b" header"
    return None


def _names_webhook(head: bytes) -> bool:
    """Whether a (possibly incomplete) request head targets ``/webhook``: decides what the metric counts."""
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    return len(parts) >= 2 and parts[1].partition(b"?")[0] == b"/webhook"


class HttpServer:
    """Serves the endpoints for ``backend`` on ``listen`` until ``close``."""

    def __init__(
        self, backend: Backend, *, metrics: Metrics, listen: str = "127.0.0.1:8080",
        webhook_secret: str | None = None, limits: Limits | None = None, pages: PageHandler | None = None,
        forward: Callable[[bytes, Mapping[str, str]], None] | None = None,
    ) -> None:
        self.backend = backend
        # sharding: hands an authenticated push notification that no peer forwarded to the other replicas
        self.forward = forward
        self.metrics = metrics
        self.listen = listen
        self.limits = limits or Limits()
        self.pages = pages
        self._secret = webhook_secret or None
        self._buckets = _Buckets(self.limits.throttle) if self.limits.throttle else None
        self._server: uvicorn.Server | None = None
        self._socket: socket.socket | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); useful with port 0."""
        assert self._socket is not None
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def connections(self) -> int:
        """Open client connections."""
        return len(self._server.server_state.connections) if self._server is not None else 0

    async def start(self) -> None:
        sock = _bind(self.listen)
        protocol = _protocol_class(
            self.limits, lambda status: self.metrics.webhook(_RESULTS.get(status, "bad_request"))
        )
        config = uvicorn.Config(
            self._app, http=protocol, interface="asgi3", lifespan="off", log_config=None, access_log=False,
            proxy_headers=False,  # the throttle keys on the peer address: X-Forwarded-For must not move it
            h11_max_incomplete_event_size=self.limits.max_head, server_header=False, date_header=False,
            timeout_keep_alive=1, timeout_graceful_shutdown=5,
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        try:
            await server.startup(sockets=[sock])
        except BaseException:
            sock.close()
            raise
        self._server, self._socket = server, sock
        host_, port_ = self.address
        shown = f"[{host_}]:{port_}" if ":" in host_ else f"{host_}:{port_}"
        log.info(
            "listening on http://%s (/healthz /readyz /metrics%s)", shown,
            " /webhook" if self._secret else "; /webhook disabled: no http.webhook_secret_env",
        )

    async def close(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        await server.shutdown(sockets=[self._socket] if self._socket else None)

    # -- the ASGI application ------------------------------------------------------------------------

    async def _app(
        self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        raw_path: bytes = scope["raw_path"]
        is_webhook = raw_path == b"/webhook"
        method: str = scope["method"]
        client = scope.get("client")
        peer = str(client[0]) if client else "?"
        try:
            request = self._request(scope, peer)
            response = await self._dispatch(request, receive, scope)
        except _HttpError as exc:
            response = _text(exc.status, str(exc))
        except _ClientGone:  # nobody left to answer
            if is_webhook:
                self.metrics.webhook("bad_request")
            return
        except Exception:
            # a bug must not cost the client its answer (nor the metric its count)
            log.exception("HTTP handler for %s %r failed", method, raw_path)
            response = _text(500, "internal error")
        if is_webhook:
            self.metrics.webhook(response.result or _RESULTS.get(response.status, "error"))
        with contextlib.suppress(TimeoutError, OSError):  # a client that does not read: uvicorn closes it
            await asyncio.wait_for(self._send(send, response, head_only=method == "HEAD"),
                                   self.limits.write_timeout)
        log.debug("%s %s %r -> %d", peer, method, raw_path, response.status)

    def _request(self, scope: MutableMapping[str, Any], peer: str) -> _Request:
        version: str = scope["http_version"]
        if not version.startswith("1."):
            raise _HttpError(505, "only HTTP/1.x is supported")
        raw_path: bytes = scope["raw_path"]
        if not raw_path.startswith(b"/") or any(b < 0x21 or b > 0x7E for b in raw_path):
            raise _HttpError(400, "the request target must be an absolute path")
        # the protocol refused more than _MAX_HEADERS fields and duplicate _SINGLE_HEADERS already
        headers: dict[str, str] = {}
        for name_bytes, value_bytes in scope["headers"]:
            try:  # h11 lets bytes 0x80-0xff through in values
                key, value = name_bytes.decode("ascii"), value_bytes.decode("ascii")
            except UnicodeDecodeError:
                raise _HttpError(400, "non-ASCII bytes in the request head") from None
            if key in headers:
                headers[key] += ", " + value
            else:
                headers[key] = value
        query: bytes = scope["query_string"]
        return _Request(scope["method"], raw_path.decode("ascii"), query.decode("ascii"), headers, peer)

    async def _dispatch(
        self, request: _Request, receive: Callable[[], Awaitable[Any]], scope: Mapping[str, Any]
    ) -> _Response:
        if self.connections > self.limits.max_connections:
            return _text(503, "too many connections", headers={"Retry-After": "1"})
        if request.path == "/webhook":
            if self._secret is None:
                return _text(404, "not found: the webhook is disabled (no http.webhook_secret_env)")
            if request.method != "POST":
                return _text(405, "method not allowed", headers={"Allow": "POST"})
            if self._buckets is not None and (wait := self._buckets.take(request.peer)) > 0:
                log.warning("webhook from %s throttled: more than %d in %g s", request.peer,
                            self._buckets.throttle.burst, self._buckets.throttle.per_seconds)
                return _text(429, "too many webhooks from this address",
                             headers={"Retry-After": str(max(1, math.ceil(wait)))})
            return await self._webhook(request, receive, scope, self._secret)
        routes = {"/healthz": self._healthz, "/readyz": self._readyz, "/metrics": self._metrics}
        handler = routes.get(request.path)
        if handler is not None:
            if request.method not in ("GET", "HEAD"):
                return _text(405, "method not allowed", headers={"Allow": "GET, HEAD"})
            return handler()
        if self.pages is not None and request.method in ("GET", "HEAD"):
            target = request.path + ("?" + request.query if request.query else "")
            page = await self.pages(request.method, target, dict(request.headers))
            if page is not None:
                status, page_headers, body = page
                extra = {k: v for k, v in page_headers if k.lower() != "content-type"}
                content_type = next(
                    (v for k, v in page_headers if k.lower() == "content-type"), "text/html; charset=utf-8"
                )
                return _Response(status, body, content_type, extra)
        return _text(404, "not found")

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
        self, request: _Request, receive: Callable[[], Awaitable[Any]], scope: Mapping[str, Any], secret: str
    ) -> _Response:
        headers = request.headers
        if "transfer-encoding" in headers:
            # every registry's notifier sends a length; refusing chunked uploads keeps one framing only
            return _text(411, "send the body with Content-Length; chunked uploads are not accepted")
        length_text = headers.get("content-length")
        if length_text is None:
            return _text(411, "Content-Length required")
        if int(length_text) > self.limits.max_body:  # h11 accepts only digits there
            log.warning("webhook from %s refused: body of %s bytes exceeds %d", request.peer, length_text,
                        self.limits.max_body)
            return _text(413, f"body larger than {self.limits.max_body} bytes")
        try:  # h11 holds the client to its Content-Length, so the body is within max_body
            body = await asyncio.wait_for(self._read_body(receive, scope), self.limits.body_timeout)
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
        if events and self.forward is not None and FORWARDED_HEADER.lower() not in headers:
            self.forward(body, headers)  # returns at once; the peers act on the sources they own
        sources = self.backend.sources_for(events) if events else []
        reason = "webhook: " + ", ".join(sorted({f"{e.name}:{e.tag}" for e in events}))[:300]
        triggered = self.backend.trigger(sources, reason=reason, events=events) if sources else []
        if events and not triggered:
            log.info("%s: no source tracks it", reason)
        payload = {"events": [e.to_dict() for e in events], "sources": triggered}
        return _json(202 if triggered else 200, payload)

    async def _read_body(self, receive: Callable[[], Awaitable[Any]], scope: Mapping[str, Any]) -> bytes:
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunks.append(message.get("body", b""))
            if message.get("more_body", False) and scope.get("state", {}).get(_EOF):
                raise _HttpError(400, "the client closed the connection before sending the whole body")
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _send(
        self, send: Callable[[Any], Awaitable[None]], response: _Response, *, head_only: bool
    ) -> None:
        headers = [  # h11 keeps the names' case
            (b"Content-Type", response.content_type.encode("latin-1")),
            (b"Content-Length", str(len(response.body)).encode()),
            (b"Cache-Control", b"no-store"),
            (b"Connection", b"close"),
            *((k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()),
        ]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head_only else response.body})
