"""Smoke test of tests/bench/agi_guard_ratio.py with tiny counts: answers and structure, never times."""

from __future__ import annotations

import asyncio

from agi_guard_ratio import CONCURRENT, fastagi_concurrent, fastagi_sequential, fastagi_server, process_agi

from referee.agi.guard import OUTPUT_VARIABLES


def test_fastagi_and_process_agi_sessions_are_allowed() -> None:
    async def main() -> None:
        with fastagi_server() as (port, _pid):
            sequential = await fastagi_sequential(port, 3)
            concurrent = await fastagi_concurrent(port, 1, sessions=20)
        process = await process_agi(2)
        for result, n in ((sequential, 3), (concurrent, 20), (process, 2)):
            assert len(result.seconds) == len(result.channels) == n
            for channel in result.channels:
                assert channel.allowed == "1"
                assert channel.variables["REFEREE_TARGET"] == "sip:1003@127.0.0.20:5060"
                assert channel.set_order == list(OUTPUT_VARIABLES)
                assert channel.commands[0] == ["GET", "VARIABLE", "REFEREE_DOMAIN"]
            assert result.p50() > 0 and result.p99() >= result.p50()

    asyncio.run(main())
    assert CONCURRENT == 200
