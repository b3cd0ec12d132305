"""Smoke test of tests/bench/agi_server_pair.py with tiny counts: both servers answer, a line per round."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from agi_guard_ratio import fastagi_server
from agi_server_pair import HOST, rounds

SRC = Path(__file__).resolve().parents[2] / "src"


def test_two_servers_are_measured_side_by_side() -> None:
    with ExitStack() as stack:
        servers = {
            "this": stack.enter_context(fastagi_server(host=HOST)),
            "other": stack.enter_context(fastagi_server(host=HOST, src=SRC)),
        }
        assert servers["this"][0] != servers["other"][0]
        lines = rounds(servers, 4, 2)
    assert [line.split(":")[0] for line in lines] == ["round 1", "round 2"]
    assert all("this/other CPU" in line for line in lines)
