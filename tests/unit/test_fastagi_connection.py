"""The FastAGI server's connections (referee.agi.connection), over real TCP on loopback (127.0.5.30).

What the asyncio.Protocol design must get right on its own, besides test_fastagi_abuse's limits: a
header that arrives in pieces, bytes sent right after it, the deadline handed from the header to the
session, flow control both ways, and close() or a reset in every phase. Each session's outcome is
read from the ``on_session`` observer. Waits are bounded; nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest

from referee.agi.fastagi import FastAgiServer, Handler, Limits
from referee.agi.protocol import AgiRequest, HeaderLimits

HOST = "127.0.5.30"

# Every test on asyncio's loop, then on uvloop's (conftest.py): referee fastagi runs on either.
pytestmark = pytest.mark.usefixtures("either_event_loop")
HEADER = b"agi_network: yes\nagi_network_script: echo\nagi_extension: 1003\nagi_callerid: 1002\n\n"


class Recorder:
    """The routes' side of each session, and the server's outcomes."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.values: list[str | None] = []
        self.started = 0
        self.chunks = 0  # written by the big route
        self.cancelled = 0

    def ended(self, outcome: str, seconds: float) -> None:
        assert seconds >= 0
        self.outcomes.append(outcome)

    async def echo(self, request: AgiRequest) -> None:
        """Ask one variable, set it back: one command, one result, one more."""
        self.headers.append(dict(request.headers))
        value = await request.get_variable("X")
        self.values.append(value)
        await request.set_variable("ECHO", value or "")

    async def many(self, request: AgiRequest) -> None:
        """Ask X 3000 times, after a pause in which the client has sent all its answers."""
        await asyncio.sleep(0.2)
        for _ in range(3000):
            self.values.append(await request.get_variable("X"))

    async def big(self, request: AgiRequest) -> None:
        """Write 16 MiB, waiting for room as a StreamWriter's user does (far more than the sockets hold)."""
        self.started += 1
        for _ in range(256):
            request.writer.write(b"x" * 65536)
            self.chunks += 1
            await request.writer.drain()

    async def forever(self, request: AgiRequest) -> None:
        self.started += 1
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


def run(
    test: Callable[[FastAgiServer, int, Recorder], Awaitable[None]], **limits: object
) -> tuple[FastAgiServer, Recorder]:
    recorder = Recorder()
    routes: dict[str, Handler] = {
        "echo": recorder.echo,
        "many": recorder.many,
        "big": recorder.big,
        "forever": recorder.forever,
    }
    server = FastAgiServer(routes, Limits(**limits), on_session=recorder.ended)  # type: ignore[arg-type]

    async def main() -> None:
        _, port = await server.start(HOST, 0)
        try:
            await test(server, port, recorder)
        finally:
            await server.close()

    asyncio.run(main())
    return server, recorder


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)


async def until_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends, up to its close (a reset counts as a close)."""
    data = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 10):
            data += chunk
    except ConnectionError:
        pass
    return data


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the server did not get there")


def test_a_header_arriving_a_byte_at_a_time_is_parsed_and_answered() -> None:
    async def test(server: FastAgiServer, port: int, recorder: Recorder) -> None:
        reader, writer = await connect(port)
        for byte in HEADER:  # one segment each: TCP_NODELAY, and a pause between them
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.002)
        assert await asyncio.wait_for(reader.readline(), 10) == b'GET VARIABLE "X"\n'
        writer.write(b"200 result=1 (seen)\n")
        assert await asyncio.wait_for(reader.readline(), 10) == b'SET VARIABLE "ECHO" "seen"\n'
        writer.write(b"200 result=1\n")
        assert await until_eof(reader) == b""
        writer.close()

    server, recorder = run(test)
    assert recorder.headers == [
        {"agi_network": "yes", "agi_network_script": "echo", "agi_extension": "1003", "agi_callerid": "1002"}
    ]
    assert recorder.values == ["seen"]
    assert recorder.outcomes == [""]
    assert (server.stats.completed, server.stats.active) == (1, 0)


def test_results_sent_with_the_header_reach_the_route() -> None:
    async def test(server: FastAgiServer, port: int, recorder: Recorder) -> None:
        reader, writer = await connect(port)
        writer.write(HEADER + b"200 result=1 (early)\n200 result=1\n")  # one write, before any command
        sent = await until_eof(reader)
        assert sent == b'GET VARIABLE "X"\nSET VARIABLE "ECHO" "early"\n'
        writer.close()

    _, recorder = run(test)
    assert recorder.values == ["early"]
    assert recorder.outcomes == [""]


def test_the_header_deadline_does_not_cut_a_route_waiting_for_its_result() -> None:
    """The header's 0.2 s is over while the route waits; the session's 60 s is what holds then."""

    async def test(server: FastAgiServer, port: int, recorder: Recorder) -> None:
        reader, writer = await connect(port)
        writer.write(HEADER)
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"GET VARIABLE")
        await asyncio.sleep(1.0)  # five header deadlines
        writer.write(b"200 result=1 (late)\n200 result=1\n")
        assert (await until_eof(reader)).startswith(b"SET VARIABLE")
        writer.close()

    server, recorder = run(test, header=HeaderLimits(timeout=0.2), session_timeout=60)
    assert recorder.outcomes == [""]
    assert recorder.values == ["late"]
    assert server.stats.timeouts == 0


def test_the_session_deadline_cuts_a_route_and_counts_a_timeout() -> None:
    async def test(server: FastAgiServer, port: int, recorder: Recorder) -> None:
        reader, writer = await connect(port)
        writer.write(HEADER.replace(b"echo", b"forever"))
        assert await until_eof(reader) == b""
        writer.close()
        await until(lambda: bool(recorder.outcomes))

    server, recorder = run(test, header=HeaderLimits(timeout=60), session_timeout=0.3)
    assert recorder.outcomes == ["timeout"]
    assert recorder.cancelled == 1
    assert (server.stats.timeouts, server.stats.last_error) == (1, "timed out")


def test_a_flood_of_results_is_read_in_order_under_flow_control() -> None:
    """3,000 results (far over twice the 100-byte line bound) arrive while the route sleeps: reading
    pauses and resumes as the route takes them, and the route gets every one, in order."""

    async def test(server: FastAgiServer, port: int, recorder: Recorder) -> None:
        reader, writer = await connect(port)
        writer.write(HEADER.replace(b"echo", b"many"))
        writer.write(b"".join(b"200 result=1 (%d)\n" % i for i in range(3000)))
        sent = await until_eof(reader)
        assert sent.count(b'GET VARIABLE "X"\n') == 3000
        writer.close()

    _, recorder = run(test, max_line=100)
    assert recorder.values == [str(i) for i in range(3000)]
    assert recorder.outcomes == [""]


async def stuck_in_drain(port: int, recorder: Recorder) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client of the big route that does not read: the server's buffers fill and the route waits."""
    reader, writer = await connect(port)
    writer.write(HEADER.replace(b"echo", b"big"))
    await until(lambda: recorder.started == 1)
    await asyncio.sleep(0.3)
    assert 0 < recorder.chunks < 256, "the route did not wait for room"
    return reader, writer


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with linger 0: a RST, not a FIN."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def test_a_route_writing_more_than_the_client_reads_waits_for_room() -> None:
    async def test(server: FastAgiServer, port: int, recorder: Recorder) -> None:
        reader, writer = await stuck_in_drain(port, recorder)
        assert len(await until_eof(reader)) == 256 * 65536
        writer.close()

    _, recorder = run(test)
    assert recorder.outcomes == [""]


def test_a_reset_while_the_route_waits_for_room_is_a_hangup() -> None:
    async def test(server: FastAgiServer, port: int, recorder: Recorder) -> None:
        _, writer = await stuck_in_drain(port, recorder)
        reset(writer)
        await until(lambda: bool(recorder.outcomes))

    server, recorder = run(test)
    assert recorder.outcomes == ["hangup"]
    assert server.stats.active == 0


def test_a_result_line_over_the_bound_ends_the_session_as_a_route_error() -> None:
    async def test(server: FastAgiServer, port: int, recorder: Recorder) -> None:
        reader, writer = await connect(port)
        writer.write(HEADER + b"200 result=1 (" + b"x" * 200)
        assert await until_eof(reader) == b'GET VARIABLE "X"\n'
        writer.close()
        await until(lambda: bool(recorder.outcomes))

    server, recorder = run(test, max_line=100)
    assert recorder.outcomes == ["error"]
    assert server.stats.handler_errors == 1


def test_a_reset_mid_header_is_a_hangup_and_a_reset_mid_route_too() -> None:
    async def test(server: FastAgiServer, port: int, recorder: Recorder) -> None:
        reader, writer = await connect(port)
        writer.write(b"agi_network: yes\n")
        await writer.drain()
        reset(writer)
        await until(lambda: len(recorder.outcomes) == 1)
        reader, writer = await connect(port)
        writer.write(HEADER)
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"GET VARIABLE")
        reset(writer)
        await until(lambda: len(recorder.outcomes) == 2)

    server, recorder = run(test)
    assert recorder.outcomes == ["hangup", "hangup"]
    assert server.stats.active == 0
    assert server.stats.last_error.startswith("channel gone")


def test_close_ends_sessions_mid_header_and_mid_route_as_errors() -> None:
    async def test(server: FastAgiServer, port: int, recorder: Recorder) -> None:
        slow_reader, slow_writer = await connect(port)
        slow_writer.write(b"agi_network: yes\n")  # and no more
        busy_reader, busy_writer = await connect(port)
        busy_writer.write(HEADER.replace(b"echo", b"forever"))
        await until(lambda: server.stats.active == 2 and recorder.started == 1)
        await server.close()
        assert recorder.outcomes == ["error", "error"]
        assert recorder.cancelled == 1
        assert await until_eof(slow_reader) == b""
        assert await until_eof(busy_reader) == b""
        slow_writer.close()
        busy_writer.close()

    server, recorder = run(test, header=HeaderLimits(timeout=60))
    assert recorder.outcomes == ["error", "error"]  # close() in run() found nothing left to end
    assert (server.stats.active, server.stats.handler_errors, server.stats.timeouts) == (0, 0, 0)
