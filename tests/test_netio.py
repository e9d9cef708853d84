"""The registry pools' network backend (image_updater/registry/netio.py) against real sockets on 127.0.0.1:
the exceptions the HTTP/1.1 layer expects (``netio``'s), EOF, reuse checks, TLS with a verifying context. The
pool on top of it: tests/test_http11.py."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from image_updater.registry import netio
from image_updater.registry.netio import AsyncioBackend
from tests.servers import TLSFiles

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def server(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    started = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
    try:
        yield started.sockets[0].getsockname()[1]
    finally:
        started.close()
        await started.wait_closed()


def run(coroutine: Awaitable[None]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coroutine, 20)

    asyncio.run(bounded())


def test_echo_eof_and_reuse_check() -> None:
    async def echo_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        async with server(echo_once) as port:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
            sock = stream.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert stream.get_extra_info("server_addr")[1] == port
            assert stream.get_extra_info("is_readable") is False
            await stream.write(b"hello", timeout=5)
            assert await stream.read(2, timeout=5) == b"he"  # at most max_bytes, the rest kept
            assert await stream.read(100, timeout=5) == b"llo"
            assert await stream.read(100, timeout=5) == b""  # the server closed: end of stream
            assert stream.get_extra_info("is_readable") is True  # not reusable
            await stream.aclose()

    run(scenario())


def test_read_timeout_and_connect_errors() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        await asyncio.sleep(5)

    async def scenario() -> None:
        async with server(silent) as port:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
            await stream.write(b"x", timeout=5)
            with pytest.raises(netio.ReadTimeout):
                await stream.read(10, timeout=0.05)
            await stream.aclose()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            dead = probe.getsockname()[1]
        with pytest.raises(netio.ConnectError) as refused:
            await AsyncioBackend().connect_tcp("127.0.0.1", dead, timeout=5)
        assert isinstance(refused.value.__cause__, OSError)

    run(scenario())


def test_reset_reads_as_an_error_and_writes_after_close_fail() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()  # RST

    async def scenario() -> None:
        async with server(reset) as port:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
            await stream.write(b"x", timeout=5)
            with pytest.raises(netio.ReadError):
                while True:  # a clean EOF would end this loop with b""; an RST must raise
                    if await stream.read(10, timeout=5) == b"":
                        raise AssertionError("a reset read as a clean end of stream")
            with pytest.raises(netio.WriteError):
                await stream.write(b"y", timeout=5)

    run(scenario())


def test_tls_verifies_and_a_wrong_ca_is_a_connect_error_with_the_cause(tls_ca: TLSFiles) -> None:
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(tls_ca.cert_file, tls_ca.key_file)

    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"secret hello")
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        async with server(hello, served) as port:
            trusting = ssl.create_default_context(cafile=str(tls_ca.ca_file))
            plain = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
            stream = await plain.start_tls(trusting, server_hostname="127.0.0.1", timeout=5)
            assert stream.get_extra_info("ssl_object") is not None
            assert await stream.read(100, timeout=5) == b"secret hello"
            await stream.aclose()
            plain = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
            with pytest.raises(netio.ConnectError) as failed:
                await plain.start_tls(ssl.create_default_context(), server_hostname="127.0.0.1", timeout=5)
            assert isinstance(failed.value.__cause__, ssl.SSLCertVerificationError)

    run(scenario())


@pytest.mark.parametrize("tls", [False, True])
def test_a_fast_sender_is_read_in_full_under_backpressure(tls: bool, tls_ca: TLSFiles) -> None:
    blob = bytes(range(256)) * (12 * 1024)  # 3 MiB: past the high-water mark several times
    served = None
    if tls:
        served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        served.load_cert_chain(tls_ca.cert_file, tls_ca.key_file)

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(blob)
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        async with server(flood, served) as port:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
            if tls:
                trusting = ssl.create_default_context(cafile=str(tls_ca.ca_file))
                stream = await stream.start_tls(trusting, server_hostname="127.0.0.1", timeout=5)
            await asyncio.sleep(0.2)  # let it arrive before reading: reading pauses at the mark
            received = bytearray()
            while chunk := await stream.read(65536, timeout=5):
                received += chunk
            assert bytes(received) == blob
            await stream.aclose()

    run(scenario())
