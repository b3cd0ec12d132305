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


def test_a_failed_run_says_why_its_calls_failed(tmp_path: Path) -> None:
    late_180 = (
        "2026-12-02\t02:49:43.464203\t1.2: Aborting call on unexpected message for Call-Id '39-1@h': "
        "while pausing (index 16), received 'SIP/2.0 180 Ringing\n"
    )
    notify_first = (
        "2026-12-02\t02:49:44.1\t1.3: Aborting call on unexpected message for Call-Id '40-1@h': "
        "while expecting '202' (index 21), received 'NOTIFY sip:1002@127.0.1.72:5060 SIP/2.0\n"
    )
    (tmp_path / "phone_1_errors.log").write_text(late_180 + "Via: x\n" + late_180 + notify_first)
    assert proxy_configs.failure_reasons(tmp_path).splitlines() == [
        "     2  while pausing (index 16), received 'SIP/2.0 180 Ringing",
        "     1  while expecting '202' (index 21), received 'NOTIFY sip:1002@127.0.1.72:5060 SIP/2.0",
    ]
