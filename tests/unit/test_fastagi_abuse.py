"""The FastAGI server against bad clients, over real TCP on loopback (127.0.2.20, a free port).

Every case ends with a good client getting its answer from the same server: one bad client
never stalls the event loop or another session. Waits are bounded (counts and timeouts);
nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from referee.agi.daemon import TRANSFER_GUARD, transfer_guard
from referee.agi.fastagi import FastAgiServer, Limits
from referee.agi.policy_source import PolicySource
from referee.agi.protocol import AgiRequest, HeaderLimits
from referee.testing.fake_asterisk import agi_env, call, split_args

HOST = "127.0.2.20"

# Every test on asyncio's loop, then on uvloop's (conftest.py): referee fastagi runs on either.
pytestmark = pytest.mark.usefixtures("either_event_loop")
EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "policy.toml")
BOB = {"SIPREFERREDBYHDR": "<sip:1002@lab.test>"}


@pytest.fixture(scope="module", autouse=True)
def enough_file_descriptors() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 4500, "these tests need ~4500 descriptors"


def make_server(**limits: object) -> FastAgiServer:
    source = PolicySource(EXAMPLE)
    source.load()
    return FastAgiServer({TRANSFER_GUARD: transfer_guard(source)}, Limits(**limits))  # type: ignore[arg-type]


def with_server(test: Callable[[FastAgiServer, int], Awaitable[None]], **limits: object) -> FastAgiServer:
    async def main() -> FastAgiServer:
        server = make_server(**limits)
        _, port = await server.start(HOST, 0)
        try:
            await test(server, port)
        finally:
            await server.close()
        return server

    return asyncio.run(main())


async def good_client(port: int, source: str | None = None) -> None:
    channel = await call(HOST, port, agi_env("1003"), BOB, source=source)
    assert channel.allowed == "1"
    assert channel.variables["REFEREE_TARGET"] == "sip:1003@127.0.0.20:5060"


async def closed_by_server(reader: asyncio.StreamReader, bound: float = 10.0) -> bool:
    """True once the server has closed the connection (EOF or reset), within ``bound`` seconds."""
    try:
        for _ in range(1000):  # drain whatever the server sent, up to its close
            if not await asyncio.wait_for(reader.read(4096), bound):
                return True
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    return False


async def wait_until(condition: Callable[[], bool], rounds: int = 400) -> bool:
    for _ in range(rounds):
        if condition():
            return True
        await asyncio.sleep(0.025)
    return condition()


async def raw(
    port: int, data: bytes, *, close_write: bool = False, source: str | None = None
) -> asyncio.StreamReader:
    """Send ``data``; the writer is kept open (a collected StreamWriter would close the socket)."""
    reader, writer = await asyncio.open_connection(
        HOST, port, local_addr=None if source is None else (source, 0)
    )
    KEEP.append(writer)
    writer.write(data)
    await writer.drain()
    if close_write:
        writer.write_eof()
    return reader


KEEP: list[asyncio.StreamWriter] = []


@pytest.fixture(autouse=True)
def _close_kept_writers() -> None:
    KEEP.clear()


GARBAGE = {
    "no newline, longer than a line": (b"\x00\xff" * 6000, "bad_requests", "header line too long"),
    "an HTTP request": (b"GET / HTTP/1.1\r\nHost: 127.0.2.20\r\n\r\n", "bad_requests", "not an AGI header"),
    "a binary header name": (b"agi_network: yes\nagi_\xff\xfe: x\n\n", "bad_requests", "not an AGI header"),
    "a blank line first": (b"\n", "bad_requests", "empty header"),
    "too many lines": (
        b"".join(b"agi_x%d: y\n" % i for i in range(300)) + b"\n",
        "bad_requests",
        "too many header lines",
    ),
    "too many bytes": (
        b"".join(b"agi_v%d: %s\n" % (i, b"x" * 4000) for i in range(12)) + b"\n",
        "bad_requests",
        "header too large",
    ),
    "a line without a colon": (b"agi_network yes\n\n", "bad_requests", "not an AGI header"),
    "no such route": (b"agi_network: yes\nagi_network_script: rm-rf\n\n", "unknown_routes", "no route"),
}


@pytest.mark.parametrize("case", list(GARBAGE))
def test_garbage_is_dropped_and_the_server_goes_on(case: str) -> None:
    data, counter, why = GARBAGE[case]

    async def test(server: FastAgiServer, port: int) -> None:
        reader = await raw(port, data)
        assert await closed_by_server(reader)
        assert await wait_until(lambda: getattr(server.stats, counter) == 1)
        assert why in server.stats.last_error
        await good_client(port)

    server = with_server(test)
    assert server.stats.completed == 1
    assert server.stats.active == 0


@pytest.mark.parametrize(
    "sent",
    [b"", b"agi_network: yes\nagi_network_script: transfer-guard\n", b"agi_network: yes\nagi_netw"],
    ids=["nothing", "header without its blank line", "half a line"],
)
def test_a_client_closing_mid_header_does_not_stall_the_loop(sent: bytes) -> None:
    async def test(server: FastAgiServer, port: int) -> None:
        reader = await raw(port, sent, close_write=True)
        assert await closed_by_server(reader)
        assert await wait_until(lambda: server.stats.bad_requests == 1)
        assert "connection closed" in server.stats.last_error
        await good_client(port)  # panoramisk's Application.handler would spin here forever

    with_server(test)


def test_a_trickling_client_is_cut_at_the_header_timeout() -> None:
    header = b"".join(b"agi_v%d: slow\n" % i for i in range(40)) + b"\n"

    async def test(server: FastAgiServer, port: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        sent = 0
        try:
            for byte in header:  # one byte every 20 ms: always active, never done in time
                writer.write(bytes([byte]))
                await writer.drain()
                sent += 1
                await asyncio.sleep(0.02)
                if reader.at_eof():
                    break
        except ConnectionError:
            pass
        assert sent < len(header), "the server let a slowloris finish its header"
        assert await closed_by_server(reader)
        assert server.stats.timeouts == 1
        await good_client(port)

    with_server(test, header=HeaderLimits(timeout=0.5))


def test_a_client_that_never_answers_a_command_is_cut_at_the_session_timeout() -> None:
    header = b"agi_network: yes\nagi_network_script: transfer-guard\nagi_extension: 1003\n\n"

    async def test(server: FastAgiServer, port: int) -> None:
        reader = await raw(port, header)
        first = await asyncio.wait_for(reader.readline(), 10)
        assert first.startswith(b"GET VARIABLE")  # the guard asked; we never answer
        assert await closed_by_server(reader)
        assert server.stats.timeouts == 1
        await good_client(port)

    with_server(test, session_timeout=0.5)


def test_a_channel_hanging_up_mid_session_ends_only_that_session() -> None:
    header = b"agi_network: yes\nagi_network_script: transfer-guard\nagi_extension: 1003\n\n"

    async def test(server: FastAgiServer, port: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(header)
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"GET VARIABLE")
        writer.write(b"HANGUP\n")
        await writer.drain()
        assert await closed_by_server(reader)
        assert server.stats.handler_errors == 0
        await good_client(port)

    with_server(test)


def test_a_good_client_is_answered_while_500_slow_clients_hold_their_sessions() -> None:
    async def test(server: FastAgiServer, port: int) -> None:
        slow = []
        for _ in range(500):
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"agi_network: yes\nagi_netw")  # and then nothing
            slow.append((reader, writer))
        assert await wait_until(lambda: server.stats.active == 500)
        await good_client(port)
        await asyncio.gather(*(good_client(port) for _ in range(20)))
        assert server.stats.active == 500, "the slow clients were still connected while good ones were served"
        for _, writer in slow:
            writer.close()
        assert await wait_until(lambda: server.stats.active == 0)

    # One source address for all (the per-address share is another test's): the total cap alone.
    server = with_server(test, max_connections=1024, max_per_address=1024, header=HeaderLimits(timeout=60))
    assert server.stats.completed == 21
    assert server.stats.bad_requests == 500


def test_slow_clients_are_closed_by_the_server_after_the_header_timeout() -> None:
    async def test(server: FastAgiServer, port: int) -> None:
        readers = [await raw(port, b"agi_network: yes\n") for _ in range(200)]
        closed = await asyncio.gather(*(closed_by_server(r) for r in readers))
        assert all(closed)
        assert server.stats.timeouts == 200
        await good_client(port)

    with_server(test, header=HeaderLimits(timeout=0.5))


def test_thousands_of_connections_never_exceed_the_cap() -> None:
    cap, total = 200, 3000

    async def test(server: FastAgiServer, port: int) -> None:
        gate = asyncio.Semaphore(256)

        async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
            async with gate:
                try:
                    return await asyncio.wait_for(asyncio.open_connection(HOST, port), 30)
                except (ConnectionError, TimeoutError):
                    return None

        conns = [c for c in await asyncio.gather(*(connect() for _ in range(total))) if c is not None]
        assert len(conns) > total // 2
        assert await wait_until(lambda: server.stats.accepted >= len(conns))
        assert server.stats.peak <= cap
        assert server.stats.active == cap
        assert server.stats.over_cap == server.stats.accepted - cap
        # At the cap, a new client is refused at once (Asterisk falls back, fail closed) ...
        refused, _ = await asyncio.open_connection(HOST, port)
        assert await closed_by_server(refused)
        # ... and once the idle connections go, a good client is served again.
        for _, writer in conns:
            writer.close()
        assert await wait_until(lambda: server.stats.active == 0)
        await good_client(port)

    server = with_server(test, max_connections=cap, max_per_address=cap, header=HeaderLimits(timeout=60))
    assert server.stats.peak <= cap
    assert server.stats.completed == 1


def test_200_concurrent_sessions_all_get_their_own_answer() -> None:
    async def test(server: FastAgiServer, port: int) -> None:
        extens = [("1003", "1"), ("09001234567", "0"), ("2001", "1"), ("0012125550100", "0")] * 50
        channels = await asyncio.gather(*(call(HOST, port, agi_env(e), BOB) for e, _ in extens))
        assert [c.allowed for c in channels] == [want for _, want in extens]
        assert server.stats.peak <= 200

    server = with_server(test)
    assert server.stats.completed == 200


def test_a_failing_route_is_logged_and_only_its_session_ends() -> None:
    async def broken(request: AgiRequest) -> None:
        await request.get_variable("X")
        raise RuntimeError("route bug")

    async def main() -> FastAgiServer:
        source = PolicySource(EXAMPLE)
        source.load()
        server = FastAgiServer({"broken": broken, TRANSFER_GUARD: transfer_guard(source)})
        _, port = await server.start(HOST, 0)
        try:
            channel = await call(HOST, port, agi_env("1003", script="broken"), {"X": "1"})
            assert channel.commands == [["GET", "VARIABLE", "X"]]
            assert channel.allowed is None  # nothing set: the dialplan's REFEREE_ALLOWED=0 stands
            await good_client(port)
        finally:
            await server.close()
        return server

    server = asyncio.run(main())
    assert server.stats.handler_errors == 1
    assert server.stats.last_error == "route failed"
    assert server.stats.completed == 1


def test_a_latin1_caller_id_name_does_not_cost_the_transfer() -> None:
    header = (
        b"agi_network: yes\nagi_network_script: transfer-guard\nagi_extension: 1003\n"
        b"agi_calleridname: Jos\xe9 M\xfcller\n\n"
    )

    async def test(server: FastAgiServer, port: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(header)
        variables = dict(BOB)
        for _ in range(20):
            line = (await asyncio.wait_for(reader.readline(), 10)).decode()
            if not line:
                break
            words = split_args(line.rstrip("\n"))
            if words[:2] == ["SET", "VARIABLE"]:
                variables[words[2]] = words[3]
                writer.write(b"200 result=1\n")
            else:
                value = variables.get(words[2])
                writer.write(b"200 result=0\n" if value is None else f"200 result=1 ({value})\n".encode())
        writer.close()
        assert variables["REFEREE_ALLOWED"] == "1"
        assert server.stats.bad_requests == 0

    with_server(test)


def test_one_address_holding_its_share_never_locks_out_the_pbx() -> None:
    """300 slow clients from one address take at most their share (half the cap by default); the PBX's
    address is served every time, and the extra slow ones are closed at once."""
    attacker, pbx = "127.0.2.40", "127.0.2.41"

    async def test(server: FastAgiServer, port: int) -> None:
        slow = []
        for _ in range(300):
            reader, writer = await asyncio.open_connection(HOST, port, local_addr=(attacker, 0))
            writer.write(b"agi_network: yes\nagi_netw")  # and then nothing
            slow.append((reader, writer))
        assert await wait_until(lambda: server.stats.accepted == 300)
        assert server.stats.active == 100
        assert server.stats.over_cap == 200
        assert await closed_by_server(slow[-1][0])  # over its share: closed at once
        for _ in range(20):
            await good_client(port, source=pbx)
        await asyncio.gather(*(good_client(port, source=pbx) for _ in range(20)))
        assert server.stats.active == 100, "the slow clients were still connected while the PBX was served"
        for _, writer in slow:
            writer.close()
        assert await wait_until(lambda: server.stats.active == 0)

    server = with_server(test, max_connections=200, header=HeaderLimits(timeout=60))
    assert server.stats.completed == 40


def test_with_an_allow_list_other_addresses_are_closed_at_once() -> None:
    async def test(server: FastAgiServer, port: int) -> None:
        stranger = await raw(port, b"agi_network: yes\n", source="127.0.2.50")
        assert await closed_by_server(stranger)
        assert (server.stats.over_cap, server.stats.active) == (1, 0)
        await good_client(port, source="127.0.2.51")

    server = with_server(test, allow=frozenset({"127.0.2.51"}))
    assert server.stats.completed == 1
