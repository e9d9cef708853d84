"""The registry client's HTTP/1.1 pool (image_updater/registry/http11.py) against scripted servers on
127.0.0.1: keep-alive and when a connection is not reused, the one resend of a GET on a connection the server
closed, framing (chunked, HEAD, 1xx), broken answers, cancellation, and the idle cap. Proxies (absolute form,
CONNECT, 407) are tests/test_registry_proxy.py's; the whole client over the pool is every registry test's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from image_updater.registry import netio
from image_updater.registry.http11 import Pool, Response
from image_updater.registry.session import system_trust_context

# one connection's script: (reader, writer, index of the connection) -> None
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Served:
    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = asyncio.Event()


@asynccontextmanager
async def serve(script: Script) -> AsyncIterator[tuple[int, Served]]:
    served = Served()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = served.connections
        served.connections += 1
        try:
            await script(reader, writer, index)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            served.closed.set()

    started = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield started.sockets[0].getsockname()[1], served
    finally:
        started.close()
        await started.wait_closed()


async def read_request(reader: asyncio.StreamReader, served: Served | None = None) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    if served is not None:
        served.requests.append(head)
    return head


def keep_alive(served_ref: list[Served], answer: bytes = OK) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        while True:
            await read_request(reader, served_ref[0] if served_ref else None)
            writer.write(answer)
            await writer.drain()

    return script


def run(coroutine: Awaitable[None]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coroutine, 20)

    asyncio.run(bounded())


async def get(
    pool: Pool, port: int, method: bytes = b"GET", content: bytes | None = None, target: str = "/"
) -> tuple[Response, bytes]:
    headers = [(b"Host", f"127.0.0.1:{port}".encode())]
    if content is not None:
        headers.append((b"Content-Length", str(len(content)).encode()))
    response = await pool.request(method, "http", "127.0.0.1", port, target, headers, content, 5.0)
    body = b"".join([chunk async for chunk in response.aiter_stream()])
    await response.aclose()
    return response, body


def new_pool(keepalive: float = 5.0) -> Pool:
    return Pool(system_trust_context, keepalive=keepalive)


def test_a_kept_alive_connection_is_reused_and_the_request_is_framed() -> None:
    async def scenario() -> None:
        served: list[Served] = []
        async with serve(keep_alive(served)) as (port, state):
            served.append(state)
            pool = new_pool()
            for _ in range(3):
                response, body = await get(pool, port)
                assert (response.status, body) == (200, b"ok")
            _, body = await get(pool, port, b"POST", b'{"a": 1}')
            assert body == b"ok"
            await pool.aclose()
            assert state.connections == 1
            assert state.requests[0].startswith(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:")
            assert b"Content-Length: 8\r\n" in state.requests[3]

    run(scenario())


def test_a_body_left_unread_connection_close_and_an_expired_idle_one_are_not_reused() -> None:
    async def scenario() -> None:
        served: list[Served] = []
        async with serve(keep_alive(served)) as (port, state):
            served.append(state)
            pool = new_pool(keepalive=0.2)
            headers = [(b"Host", b"x")]
            response = await pool.request(b"GET", "http", "127.0.0.1", port, "/", headers, None, 5.0)
            await response.aclose()  # the body is still on the wire: the connection goes
            await get(pool, port)
            assert state.connections == 2
            await asyncio.sleep(0.3)  # idle longer than keepalive
            await get(pool, port)
            assert state.connections == 3
            await pool.aclose()

        async def close_after(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

        async with serve(close_after) as (port, state):
            pool = new_pool()
            assert (await get(pool, port))[1] == b"ok"
            assert (await get(pool, port))[1] == b"ok"
            assert state.connections == 2
            await pool.aclose()

    run(scenario())


def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        await read_request(reader)
        writer.write(OK)  # keep-alive by HTTP/1.1's default, then closed at once (a keep-alive timeout)
        await writer.drain()

    async def scenario() -> None:
        async with serve(answer_once) as (port, state):
            pool = new_pool()
            await get(pool, port)
            await state.closed.wait()
            await asyncio.sleep(0.05)  # the close reaches us: the idle connection is stale
            assert (await get(pool, port, b"POST", b"{}"))[1] == b"ok"  # not resent: never sent on it
            assert state.connections == 2
            await pool.aclose()

    run(scenario())


def test_a_get_is_sent_again_once_when_a_reused_connection_closes_unanswered_but_a_post_is_not() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        await read_request(reader)  # the next request on this connection: closed without an answer
        writer.transport.abort()

    async def scenario() -> None:
        async with serve(script) as (port, state):
            pool = new_pool()
            await get(pool, port)
            assert (await get(pool, port))[1] == b"ok"  # resent on connection 2
            assert state.connections == 2
            with pytest.raises((netio.RemoteProtocolError, netio.ReadError)):
                await get(pool, port, b"POST", b"{}")  # connection 2 reused; a POST is not resent
            assert state.connections == 2
            await pool.aclose()

    run(scenario())


def test_chunked_head_and_informational_answers() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nDocker-Content-Digest: sha256:x\r\n\r\n")
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        await reader.read()

    async def scenario() -> None:
        async with serve(script) as (port, state):
            pool = new_pool()
            assert (await get(pool, port))[1] == b"abcde"
            response, body = await get(pool, port, b"HEAD")
            assert body == b"" and (b"Docker-Content-Digest", b"sha256:x") in response.headers
            assert (await get(pool, port))[1] == b"ok"  # the same connection: HEAD had no body to read
            assert state.connections == 1
            await pool.aclose()

    run(scenario())


@pytest.mark.parametrize(
    ("answer", "when"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "body"),  # then closed: cut short
        (b"HELLO THERE\r\n\r\n", "head"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (200 * 1024) + b"\r\n\r\n", "head"),
        (b"", "head"),  # closed without a word
    ],
)
def test_broken_answers_are_remote_protocol_errors(answer: bytes, when: str) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()

    async def scenario() -> None:
        async with serve(script) as (port, _):
            pool = new_pool()
            headers = [(b"Host", b"x")]
            if when == "head":
                with pytest.raises(netio.RemoteProtocolError):
                    await pool.request(b"GET", "http", "127.0.0.1", port, "/", headers, None, 5.0)
            else:
                response = await pool.request(b"GET", "http", "127.0.0.1", port, "/", headers, None, 5.0)
                with pytest.raises(netio.RemoteProtocolError):
                    async for _chunk in response.aiter_stream():
                        pass
                await response.aclose()
            await pool.aclose()

    run(scenario())


def test_a_header_h11_refuses_is_a_local_protocol_error_and_nothing_is_sent() -> None:
    async def scenario() -> None:
        served: list[Served] = []
        async with serve(keep_alive(served)) as (port, state):
            served.append(state)
            pool = new_pool()
            with pytest.raises(netio.LocalProtocolError):
                bad = [(b"Host", b"x"), (b"Bad", b"a\r\nb")]
                await pool.request(b"GET", "http", "127.0.0.1", port, "/", bad, None, 5.0)
            assert state.connections == 0
            await pool.aclose()

    run(scenario())


def test_a_cancelled_request_closes_its_connection_and_a_slow_answer_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        await read_request(reader)
        await reader.read()  # answers nothing; returns when the client closes

    async def scenario() -> None:
        async with serve(silent) as (port, state):
            pool = new_pool()
            task = asyncio.create_task(get(pool, port))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(state.closed.wait(), 5)  # the server saw the connection go
            headers = [(b"Host", b"x")]
            with pytest.raises(netio.ReadTimeout):
                await pool.request(b"GET", "http", "127.0.0.1", port, "/", headers, None, 0.2)
            await pool.aclose()

    run(scenario())


def test_at_most_max_idle_connections_are_kept() -> None:
    async def scenario() -> None:
        served: list[Served] = []
        async with serve(keep_alive(served)) as (port, state):
            served.append(state)
            pool = Pool(system_trust_context, max_idle=1)
            await asyncio.gather(*(get(pool, port) for _ in range(3)))
            assert state.connections == 3
            await asyncio.gather(*(get(pool, port) for _ in range(2)))
            assert state.connections == 4  # one of the three was kept
            await pool.aclose()

    run(scenario())


def test_idle_connections_of_an_origin_not_asked_again_are_closed_after_keepalive() -> None:
    async def scenario() -> None:
        first: list[Served] = []
        second: list[Served] = []
        async with serve(keep_alive(first)) as (port_a, state_a), serve(keep_alive(second)) as (port_b, _):
            first.append(state_a)
            pool = new_pool(keepalive=0.2)
            await get(pool, port_a)
            await asyncio.sleep(0.3)
            await get(pool, port_b)  # its release prunes what idled past keepalive elsewhere
            await asyncio.wait_for(state_a.closed.wait(), 5)
            await pool.aclose()

    run(scenario())
