"""The proxy benchmarks' rate ends with the last call that went through (proxy_configs.last_call_end),
not with SIPp's exit, which a failed call's 2 s wait for a lost message can delay."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import proxy_configs


def test_the_last_successful_call_ends_the_run(tmp_path: Path) -> None:
    (tmp_path / "phone_1810_rtt.csv").write_text(
        "Date_ms;response_time_ms;rtd_no\n24.001;20;1\n1184;16;1\n1176;20;1\n\n"
    )
    assert proxy_configs.last_call_end(tmp_path) == 1.184


def test_no_call_through_no_end(tmp_path: Path) -> None:
    assert proxy_configs.last_call_end(tmp_path) is None
    (tmp_path / "phone_1_rtt.csv").write_text("Date_ms;response_time_ms;rtd_no\n")
    assert proxy_configs.last_call_end(tmp_path) is None


def test_a_call_is_timed_from_its_first_step_to_its_last() -> None:
    lines = proxy_configs.timed('<send>x</send>\n<recv response="200"/>').splitlines()
    assert lines[0] == '<nop start_rtd="1"/>' and lines[-1] == '<nop rtd="1"/>'
