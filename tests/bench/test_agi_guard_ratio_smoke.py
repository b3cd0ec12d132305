"""Smoke test of tests/bench/agi_guard_ratio.py with tiny counts: answers and structure, never times."""

from __future__ import annotations

import asyncio
import socket

import pytest
from agi_guard_ratio import (
    HOST,
    ONE_ROUND_TRIP,
    ROUND_TRIPS,
    TARGET,
    Options,
    fastagi_sequential,
    fastagi_server,
    light_arrivals,
    process_agi,
    report,
    steady_arrivals,
)
from agi_rate_client import PHASES

from referee.agi.guard import OUTPUT_VARIABLES


@pytest.mark.parametrize(("client", "server_loop"), [("light", "auto"), ("asyncio", "asyncio")])
def test_every_kind_of_session_is_allowed_and_reported(client: str, server_loop: str) -> None:
    async def main() -> None:
        with fastagi_server(loop=server_loop) as (port, _pid):
            one = await fastagi_sequential(port, 3, ONE_ROUND_TRIP, client=client)
            older = await fastagi_sequential(port, 3, ROUND_TRIPS, client=client)
            steady = await steady_arrivals(port, rate=100, seconds=0.1, client=client)
        process = await process_agi(2)
        for result, n in ((one, 3), (older, 3), (steady, 10), (process, 2)):
            assert len(result.seconds) == len(result.answers) == n
            assert result.allowed() == n
            for answer in result.answers:
                assert answer["REFEREE_TARGET"] == TARGET
                assert set(answer) == set(OUTPUT_VARIABLES)
            assert result.p50() > 0 and result.p99() >= result.p50()
        # One round trip: one SET VARIABLE; the older dialplan's: GETs until the referrer, then one SET each.
        assert one.commands == steady.commands[:3] == [1, 1, 1] and process.commands == [1, 1]
        assert older.commands == [2 + len(OUTPUT_VARIABLES)] * 3
        options = Options(rate=100, seconds=0.1, client=client, server_loop=server_loop)
        lines = report({"one": one, "older": older, "process": process, "rate": steady}, options)
        assert any(line.startswith("ratio of medians, process AGI / FastAGI") for line in lines)
        assert steady.offered == len(steady.late) == 10
        # The light client times each session's phases (whose side made a tail); the asyncio one cannot.
        assert len(steady.phases) == (10 if client == "light" else 0)
        assert all(set(p) == set(PHASES) and min(p.values()) >= 0 for p in steady.phases)
        assert any(line.startswith("steady arrivals, slowest 1%") for line in lines) == (client == "light")

    asyncio.run(main())


def test_the_light_client_counts_a_refused_connection_as_a_failed_session() -> None:
    with socket.socket() as probe:  # a port nobody listens on (bound, never listening)
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
        result = light_arrivals(port, rate=100, seconds=0.05)
    assert result.offered == len(result.seconds) == 5
    assert result.allowed() == 0 and result.commands == [0] * 5
    assert result.phases == []  # no session got as far as an answer
