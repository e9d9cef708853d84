"""The registry client's HTTP/1.1: h11 on ``netio``'s asyncio streams, with idle connections kept per origin.

This is the part of httpcore the registry client used (its ``AsyncConnectionPool`` with ``http2=False``,
``retries=0``, no connection limit): httpcore's asyncio path takes its locks, events and cancel shields from
anyio, whose import and first use cost a one-shot ``plan`` ~15 ms of its ~0.25 s, and httpcore itself,
loaded whole (its sync pool, HTTP/2 and SOCKS classes) for the few it needs, ~10 ms more. h11, the HTTP/1.1
state machine under httpcore, stays: it is what parses and frames.

- ``Pool.request`` sends one request and returns once the answer's head is read; its body is read through
  ``Response.aiter_stream``. A connection goes back to the pool when its answer has been read to the end and
  h11 says both sides may go on (keep-alive); a response closed before its end, a cancelled request or any
  error closes its connection instead.
- An idle connection is reused for its origin, the most recent first, unless it has been idle for more than
  ``keepalive`` seconds (httpx's 5 s) or the server sent it something meanwhile (a close, as a keep-alive
  timeout): then it is closed, as are, now and then, those of other origins idle for longer. At most
  ``max_idle`` (100) are kept.
- A GET or HEAD on a reused connection that the server closed before sending a byte of its answer (the
  race of a keep-alive timeout with our request) is sent once more on a new connection, as Go's and
  browsers' clients do; anything else is the caller's to retry (``Session.call``).
- Through an HTTP(S) proxy (``ProxyRoute``): plain-HTTP requests in absolute form, HTTPS ones in a CONNECT
  tunnel, with the proxy's ``Proxy-Authorization`` (a proxy refusing the tunnel is ``ProxyError``).
- Timeouts are per step (connect, TLS, each read and write), as httpcore's were; the exchange's deadline is
  the caller's (``transport.exchange``).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import h11

from image_updater.registry.netio import (
    AsyncioBackend,
    LocalProtocolError,
    ProxyError,
    ReadError,
    RemoteProtocolError,
    Stream,
    WriteError,
)

__all__ = ["Pool", "ProxyRoute", "Response"]

_READ_BYTES = 64 * 1024  # per read, as httpcore
_MAX_HEAD = 100 * 1024  # h11's cap on an answer's head, as httpcore sets it
_RETRYABLE = frozenset({b"GET", b"HEAD"})


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    """An HTTP or HTTPS proxy: where it is, and its ``Proxy-Authorization`` value (None: no credentials)."""

    scheme: str  # "http" or "https"
    host: str
    port: int
    authorization: bytes | None = None

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


Origin = tuple[str, str, int]


class _Connection:
    """One stream and its h11 state machine. ``received``: bytes of the current answer have arrived."""

    __slots__ = ("h11", "idle_since", "received", "reused", "stream")

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
        self.idle_since = 0.0
        self.received = False
        self.reused = False

    async def next_event(self, seconds: float) -> object:
        """h11's next event, reading as it needs; h11's complaints become ``RemoteProtocolError``."""
        connection = self.h11
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as exc:
                raise RemoteProtocolError(str(exc) or "the server's answer is not valid HTTP/1.1") from exc
            if event is not h11.NEED_DATA:
                return event
            data = await self.stream.read(_READ_BYTES, seconds)
            if data:
                self.received = True
            try:
                connection.receive_data(data)  # b"": the end of the stream, which h11 judges
            except h11.RemoteProtocolError as exc:  # pragma: no cover - h11 raises from next_event
                raise RemoteProtocolError(str(exc)) from exc

    async def send(self, events: list[h11.Event], seconds: float) -> None:
        try:
            data = b"".join([self.h11.send(event) or b"" for event in events])
        except h11.LocalProtocolError as exc:
            raise LocalProtocolError(str(exc)) from exc
        await self.stream.write(data, seconds)

    async def head(self, seconds: float) -> h11.Response:
        """The answer's head; 1xx answers are skipped."""
        while True:
            event = await self.next_event(seconds)
            if isinstance(event, h11.Response):
                return event
            if isinstance(event, h11.ConnectionClosed):
                raise RemoteProtocolError("the server closed the connection without answering")
            if not isinstance(event, h11.InformationalResponse):  # pragma: no cover - h11 allows no other
                raise RemoteProtocolError(f"unexpected {type(event).__name__} before the answer")


class Response:
    """An answer whose head has been read: ``status``, ``headers`` (the raw lines) and the body to come."""

    __slots__ = ("_connection", "_done", "_origin", "_pool", "_seconds", "headers", "status")

    def __init__(
        self, status: int, headers: list[tuple[bytes, bytes]], connection: _Connection, pool: Pool,
        origin: Origin, seconds: float,
    ) -> None:
        self.status = status
        self.headers = headers
        self._connection: _Connection | None = connection
        self._pool = pool
        self._origin = origin
        self._seconds = seconds
        self._done = False

    async def aiter_stream(self) -> AsyncIterator[bytes]:
        """The body as it arrives (transfer coding undone by h11; content coding left to the caller)."""
        connection = self._connection
        if connection is None or self._done:
            return
        try:
            while True:
                event = await connection.next_event(self._seconds)
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:  # pragma: no cover - between a head and its end h11 gives Data or EndOfMessage
                    raise RemoteProtocolError(f"unexpected {type(event).__name__} in the answer's body")
        except BaseException:
            self._drop()
            raise
        self._done = True
        self._connection = None
        self._pool.release(self._origin, connection)

    async def aclose(self) -> None:
        """End the exchange: a body not read to its end costs the connection."""
        self._drop()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.stream.abort()


class Pool:
    """Connections to any number of origins, directly or through one proxy (``proxy``). ``ssl_context`` is
    called for the first TLS connection (a pass speaking plain HTTP never builds one)."""

    def __init__(
        self, ssl_context: Callable[[], ssl.SSLContext], proxy: ProxyRoute | None = None, *,
        keepalive: float = 5.0, max_idle: int = 100, backend: AsyncioBackend | None = None,
    ) -> None:
        self._ssl_context = ssl_context
        self._proxy = proxy
        self._keepalive = keepalive
        self._max_idle = max_idle
        self._backend = backend or AsyncioBackend()
        self._idle: dict[Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._pruned = time.monotonic()
        self._closed = False

    async def request(
        self, method: bytes, scheme: str, host: str, port: int, target: str,
        headers: list[tuple[bytes, bytes]], content: bytes | None, seconds: float,
    ) -> Response:
        """Send ``method target`` to ``scheme://host:port``; return once the answer's head is read."""
        origin = (scheme, host, port)
        if self._proxy is not None and scheme == "http":
            host_part = f"[{host}]" if ":" in host else host
            target = f"http://{host_part}:{port}{target}"  # absolute form, for the proxy
            if self._proxy.authorization is not None:
                headers = [*headers, (b"Proxy-Authorization", self._proxy.authorization)]
        try:
            events: list[h11.Event] = [
                h11.Request(method=method, target=target.encode("ascii"), headers=headers)
            ]
        except h11.LocalProtocolError as exc:
            raise LocalProtocolError(str(exc)) from exc
        if content:
            events.append(h11.Data(data=content))
        events.append(h11.EndOfMessage())
        while True:
            connection = self._take(origin)
            if connection is None:
                connection = await self._connect(origin, seconds)
            connection.received = False
            try:
                await connection.send(events, seconds)
                head = await connection.head(seconds)
            except (ReadError, WriteError, RemoteProtocolError):
                connection.stream.abort()
                if connection.reused and not connection.received and method in _RETRYABLE and not content:
                    continue  # closed by the server as we sent: once more, on a new connection
                raise
            except BaseException:
                connection.stream.abort()
                raise
            fields = list(head.headers.raw_items())
            return Response(head.status_code, fields, connection, self, origin, seconds)

    # -- idle connections ----------------------------------------------------------------------------------

    def _take(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if now - connection.idle_since > self._keepalive or connection.stream.stale:
                connection.stream.abort()
                continue
            connection.reused = True
            return connection
        return None

    def release(self, origin: Origin, connection: _Connection) -> None:
        """Keep ``connection`` for the next request to ``origin`` when h11 allows it; else close it."""
        state = connection.h11
        if self._closed or state.our_state is not h11.DONE or state.their_state is not h11.DONE:
            connection.stream.abort()
            return
        state.start_next_cycle()
        now = connection.idle_since = time.monotonic()
        if now - self._pruned > self._keepalive:
            self._prune(now)
        self._idle.setdefault(origin, []).append(connection)
        self._idle_count += 1
        if self._idle_count > self._max_idle:
            oldest = min(self._idle.values(), key=lambda kept: kept[0].idle_since if kept else float("inf"))
            oldest.pop(0).stream.abort()
            self._idle_count -= 1

    def _prune(self, now: float) -> None:
        """Close the idle connections of every origin that have outlived ``keepalive`` (a long-lived client
        asks some origins only once)."""
        self._pruned = now
        for origin, idle in list(self._idle.items()):
            fresh = [c for c in idle if now - c.idle_since <= self._keepalive]
            for connection in idle:
                if now - connection.idle_since > self._keepalive:
                    connection.stream.abort()
            self._idle_count -= len(idle) - len(fresh)
            if fresh:
                self._idle[origin] = fresh
            else:
                del self._idle[origin]

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle, self._idle_count = self._idle, {}, 0
        for connections in idle.values():
            for connection in connections:
                await connection.stream.aclose()

    # -- new connections -----------------------------------------------------------------------------------

    async def _connect(self, origin: Origin, seconds: float) -> _Connection:
        scheme, host, port = origin
        proxy = self._proxy
        if proxy is None:
            stream = await self._backend.connect_tcp(host, port, seconds)
        else:
            stream = await self._backend.connect_tcp(proxy.host, proxy.port, seconds)
        try:
            if proxy is not None and proxy.scheme == "https":
                stream = await stream.start_tls(self._context(), proxy.host, seconds)
            if proxy is not None and scheme == "https":
                await self._tunnel(stream, host, port, seconds)
            if scheme == "https":
                stream = await stream.start_tls(self._context(), host, seconds)
        except BaseException:
            stream.abort()
            raise
        return _Connection(stream)

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context()

    async def _tunnel(self, stream: Stream, host: str, port: int, seconds: float) -> None:
        """CONNECT ``host:port`` through the proxy on ``stream``; ``ProxyError`` unless it answers 2xx."""
        assert self._proxy is not None
        netloc = (f"[{host}]" if ":" in host else host) + f":{port}"
        headers = [(b"Host", netloc.encode("ascii")), (b"Accept", b"*/*")]
        if self._proxy.authorization is not None:
            headers.append((b"Proxy-Authorization", self._proxy.authorization))
        connection = _Connection(stream)
        request = h11.Request(method=b"CONNECT", target=netloc.encode("ascii"), headers=headers)
        await connection.send([request, h11.EndOfMessage()], seconds)
        head = await connection.head(seconds)
        if not 200 <= head.status_code < 300:
            reason = head.reason.decode("latin-1", "replace")[:80]
            raise ProxyError(f"the proxy answered CONNECT with {head.status_code} {reason}".rstrip())
        if connection.h11.trailing_data[0]:
            raise ProxyError("the proxy sent bytes before the tunnel's TLS handshake")

