"""The HTTP layer alone: every malformed or abusive request gets a 4xx (or 503) with a message."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from http_raw import exchange

from referee.api.http import MAX_BODY, MAX_HEAD, HttpServer, Request, Response

HOST = "127.0.3.4"


async def echo(request: Request) -> Response:
    return Response(200, {"method": request.method, "path": request.path, "body": request.json()})


def with_server(test: Callable[[int, HttpServer], Awaitable[None]], **options: float) -> None:
    async def main() -> None:
        server = HttpServer(echo, **options)  # type: ignore[arg-type]
        _, port = await server.start(HOST, 0)
        try:
            await test(port, server)
        finally:
            await server.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_good_request() -> None:
    async def check(port: int, server: HttpServer) -> None:
        raw = (
            b'POST /x%20y?z=1 HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}'
        )
        status, headers, body = await exchange(HOST, port, raw)
        assert status == 200
        assert body == {"method": "POST", "path": "/x y", "body": {"a": 1}}
        assert headers["content-type"] == "application/json" and headers["connection"] == "close"

    with_server(check)


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (b"GARBAGE\r\n\r\n", 400, "malformed request line"),
        (b"GET x HTTP/1.1\r\n\r\n", 400, "malformed request line"),
        (b"GET //[ HTTP/1.1\r\n\r\n", 400, "malformed request target"),
        (
            b"GET /?" + b"&".join(b"a=1" for _ in range(51)) + b" HTTP/1.1\r\n\r\n",
            400,
            "malformed request target",
        ),
        (b"GET / HTTP/2.0\r\n\r\n", 505, "is not HTTP/1.0 or HTTP/1.1"),
        (b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400, "malformed header line"),
        (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400, "Content-Length must be a number"),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
            400,
            "repeated Content-Length",
        ),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n", 411, "chunked"),
        (b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1), 413, "exceeds"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n", 431, "exceed"),
        (
            b"POST / HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
            415,
            "application/json",
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{x",
            400,
            "not valid JSON",
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n\xff\xfe",
            400,
            "not valid JSON",
        ),
    ],
)
def test_bad_requests(raw: bytes, status: int, message: str) -> None:
    async def check(port: int, server: HttpServer) -> None:
        got, _, body = await exchange(HOST, port, raw)
        assert got == status
        assert message in body["error"]

    with_server(check)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n", "ended inside its headers"),
        (
            b"POST / HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{}",
            "shorter than",
        ),
    ],
)
def test_a_client_that_stops_sending_midway(raw: bytes, message: str) -> None:
    async def check(port: int, server: HttpServer) -> None:
        status, _, body = await exchange(HOST, port, raw, close_write=True)
        assert status == 400 and message in body["error"]

    with_server(check)


def test_a_client_that_connects_and_leaves_gets_nothing_and_breaks_nothing() -> None:
    async def check(port: int, server: HttpServer) -> None:
        _, writer = await asyncio.open_connection(HOST, port)
        writer.close()
        status, _, _ = await exchange(HOST, port, b"GET /ok HTTP/1.1\r\n\r\n")
        assert status == 200

    with_server(check)


def test_a_slow_client_times_out_without_stalling_others() -> None:
    async def check(port: int, server: HttpServer) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"GET /slow HTTP/1.1\r\n")  # and nothing more
        await writer.drain()
        status, _, _ = await exchange(HOST, port, b"GET /fast HTTP/1.1\r\n\r\n")
        assert status == 200  # served while the slow one is still pending
        data = await reader.read()
        assert data.startswith(b"HTTP/1.1 408 ")
        writer.close()

    with_server(check, read_timeout=0.2)


def test_connections_beyond_the_limit_get_503() -> None:
    async def check(port: int, server: HttpServer) -> None:
        held = [await asyncio.open_connection(HOST, port) for _ in range(2)]
        while server.open < 2:  # the server has accepted both
            await asyncio.sleep(0)
        status, _, body = await exchange(HOST, port, b"GET / HTTP/1.1\r\n\r\n")
        assert status == 503 and "too many connections" in body["error"]
        for _, writer in held:
            writer.close()

    with_server(check, max_connections=2, max_per_address=2)


def test_one_address_gets_a_quarter_of_the_connections_by_default() -> None:
    async def check(port: int, server: HttpServer) -> None:
        held = [await asyncio.open_connection(HOST, port, local_addr=("127.0.3.30", 0)) for _ in range(2)]
        while server.open < 2:
            await asyncio.sleep(0)
        status, headers, body = await exchange(HOST, port, b"GET / HTTP/1.1\r\n\r\n", source="127.0.3.30")
        assert status == 503 and "2 connections open from 127.0.3.30" in body["error"]
        assert headers["retry-after"] == "1"
        status, _, _ = await exchange(HOST, port, b"GET / HTTP/1.1\r\n\r\n", source="127.0.3.31")
        assert status == 200
        for _, writer in held:
            writer.close()

    with_server(check, max_connections=8)


def test_300_slow_clients_from_one_address_never_lock_out_another() -> None:
    """The starvation the global cap alone allowed: slow clients (a partial request line, then nothing)
    from one address hold its share of slots; a client from another address is served every time."""

    async def check(port: int, server: HttpServer) -> None:
        slow = []
        for _ in range(300):
            reader, writer = await asyncio.open_connection(HOST, port, local_addr=("127.0.3.40", 0))
            writer.write(b"GET /sl")
            slow.append((reader, writer))
        await asyncio.gather(*(w.drain() for _, w in slow))
        while server.open < 16:  # the slow address holds its whole share
            await asyncio.sleep(0.01)
        for number in range(20):
            status, _, body = await exchange(
                HOST, port, f"GET /good/{number} HTTP/1.1\r\n\r\n".encode(), source="127.0.3.41"
            )
            assert (status, body["path"]) == (200, f"/good/{number}")
        assert server.open == 16
        refused = [await r.read() for r, _ in slow[-10:]]  # over the address's share: answered 503
        assert all(answer.startswith(b"HTTP/1.1 503 ") for answer in refused)
        for _, writer in slow:
            writer.close()

    with_server(check, max_connections=64, read_timeout=25)
