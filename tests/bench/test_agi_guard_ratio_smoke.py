"""Smoke test of tests/bench/agi_guard_ratio.py with tiny counts: answers and structure, never times."""

from __future__ import annotations

import asyncio

from agi_guard_ratio import (
    ONE_ROUND_TRIP,
    ROUND_TRIPS,
    TARGET,
    fastagi_sequential,
    fastagi_server,
    process_agi,
    report,
    steady_arrivals,
)

from referee.agi.guard import OUTPUT_VARIABLES


def test_every_kind_of_session_is_allowed_and_reported() -> None:
    async def main() -> None:
        with fastagi_server() as (port, _pid):
            one = await fastagi_sequential(port, 3, ONE_ROUND_TRIP)
            older = await fastagi_sequential(port, 3, ROUND_TRIPS)
            steady = await steady_arrivals(port, rate=100, seconds=0.1)
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
        lines = report({"one": one, "older": older, "process": process, "rate": steady}, 100, 0.1)
        assert any(line.startswith("ratio of medians, process AGI / FastAGI") for line in lines)
        assert steady.offered == 10

    asyncio.run(main())
