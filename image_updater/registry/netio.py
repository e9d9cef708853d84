"""The registry client's network streams: asyncio's own transports, and the errors of a request that got no
(complete) answer.

An ``asyncio.Protocol`` buffers what arrives and a stream hands it to the HTTP/1.1 layer (``http11``) with one
exception per failure: ``ConnectError``/``ConnectTimeout`` while connecting or starting TLS,
``ReadError``/``ReadTimeout``, ``WriteError``/``WriteTimeout``, each raised ``from`` the original, so a
certificate failure stays findable in the chain. The classes carry httpcore's names and hierarchy (the
registry client spoke to httpcore's pools before ``http11``; a test's httpcore stand-in has its exceptions
translated by name, ``wire``). TLS is asyncio's (``loop.start_tls``; TLS in TLS through an HTTPS proxy
included). TCP_NODELAY is set, as anyio and httpcore set it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

from image_updater.errors import (
    ConnectError,
    ConnectTimeout,
    LocalProtocolError,
    NetError,
    NetworkError,
    PoolTimeout,
    ProtocolError,
    ProxyError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    TimeoutException,
    UnsupportedProtocol,
    WriteError,
    WriteTimeout,
)

__all__ = [
    "AsyncioBackend",
    "ConnectError",
    "ConnectTimeout",
    "LocalProtocolError",
    "NetError",
    "NetworkError",
    "PoolTimeout",
    "ProtocolError",
    "ProxyError",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "Stream",
    "TimeoutException",
    "UnsupportedProtocol",
    "WriteError",
    "WriteTimeout",
]


# received bytes kept before the transport stops reading (until the HTTP layer has taken some): a registry
# that sends faster than we read cannot fill memory
_HIGH_WATER = 1024 * 1024


class _Protocol(asyncio.Protocol):
    """Buffers received bytes; one waiter at a time (a connection is read and written serially)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.lost: BaseException | None = None
        self.closed = False
        self.reading_paused = False
        self._reader: asyncio.Future[None] | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER and self.transport is not None and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost = exc
        self.eof = True
        self._wake_reader()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    # -- waiting ---------------------------------------------------------------------------------------------

    async def wait_readable(self, timeout: float | None) -> None:
        self._reader = asyncio.get_running_loop().create_future()
        try:
            await _wait(self._reader, timeout)
        finally:
            self._reader = None

    async def wait_drained(self, timeout: float | None) -> None:
        self._drained = asyncio.get_running_loop().create_future()
        try:
            await _wait(self._drained, timeout)
        finally:
            self._drained = None

    @property
    def paused(self) -> bool:
        return self._paused and not self.closed


async def _wait(waiter: asyncio.Future[None], timeout: float | None) -> None:
    """Until ``waiter`` is done; TimeoutError after ``timeout`` seconds (a timer, not an ``asyncio.timeout``
    scope: this is every read's path)."""
    handle = None if timeout is None else asyncio.get_running_loop().call_later(timeout, _expire, waiter)
    try:
        await waiter
    finally:
        if handle is not None:
            handle.cancel()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Stream:
    """One connection, plain or TLS: read, write, start TLS on it, close or abort it."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.buffer and not protocol.eof:
            try:
                await protocol.wait_readable(timeout)
            except TimeoutError as exc:
                raise ReadTimeout("timed out reading") from exc
        if protocol.buffer:
            data = bytes(protocol.buffer[:max_bytes])
            del protocol.buffer[:max_bytes]  # cheap: a bytearray drops its head by moving its start
            if protocol.reading_paused and len(protocol.buffer) <= _HIGH_WATER // 2:
                protocol.reading_paused = False
                if protocol.transport is not None:
                    protocol.transport.resume_reading()
            return data
        if protocol.lost is not None:
            raise ReadError(str(protocol.lost) or type(protocol.lost).__name__) from protocol.lost
        return b""  # end of stream: h11 tells a clean close from a cut one

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if protocol.closed or self._transport.is_closing():
            cause = protocol.lost
            raise WriteError("connection closed") from cause
        self._transport.write(buffer)
        if protocol.paused:
            try:
                await protocol.wait_drained(timeout)
            except TimeoutError as exc:
                raise WriteTimeout("timed out writing") from exc
            if protocol.closed:
                raise WriteError("connection closed") from protocol.lost

    async def aclose(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        """Drop the connection now, unsent bytes and all (a request cut short leaves it in no known state)."""
        self._transport.abort()

    @property
    def stale(self) -> bool:
        """An idle connection that got bytes or an end of stream: not reusable."""
        protocol = self._protocol
        return bool(protocol.buffer) or protocol.eof or protocol.closed

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> Stream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError as exc:
            self._transport.abort()
            raise ConnectTimeout("timed out in the TLS handshake") from exc
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            self._transport.abort()
            raise ConnectError(str(exc) or type(exc).__name__) from exc
        if transport is None:  # pragma: no cover - start_tls returns None only when the loop is closing
            raise ConnectError("TLS could not be started")
        assert isinstance(transport, asyncio.Transport)
        self._protocol.transport = transport  # pause and resume reading on the TLS transport from now on
        return Stream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # an idle pooled connection that got bytes or an EOF is not reusable (the pool asks before reuse)
            return self.stale
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


class AsyncioBackend:
    """TCP connections on ``loop.create_connection``."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None) -> Stream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(_Protocol, host, port)
        except TimeoutError as exc:
            raise ConnectTimeout(f"timed out connecting to {host}:{port}") from exc
        except OSError as exc:
            raise ConnectError(str(exc) or type(exc).__name__) from exc
        assert isinstance(transport, asyncio.Transport)
        raw = transport.get_extra_info("socket")
        if raw is not None and raw.family in (socket.AF_INET, socket.AF_INET6):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Stream(transport, protocol)
