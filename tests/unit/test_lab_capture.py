"""A run's capture says how many packets the kernel dropped before tcpdump read them (tcpdump's summary)."""

from __future__ import annotations

from pathlib import Path

from referee_lab.scenario import capture

SUMMARY = (
    "tcpdump: listening on lo, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n"
    "109 packets captured\n238 packets received by filter\n{} dropped by kernel\n"
)


def test_the_drops_tcpdump_reports_are_read(tmp_path: Path) -> None:
    log = tmp_path / "tcpdump.log"
    log.write_text(SUMMARY.format("20 packets"))
    assert capture.dropped(log) == 20
    log.write_text(SUMMARY.format("1 packet"))
    assert capture.dropped(log) == 1


def test_no_drop_no_summary_no_log(tmp_path: Path) -> None:
    log = tmp_path / "tcpdump.log"
    log.write_text(SUMMARY.format("0 packets"))
    assert capture.dropped(log) == 0
    log.write_text("tcpdump: listening on lo\n")  # stopped before its summary
    assert capture.dropped(log) == 0
    assert capture.dropped(tmp_path / "absent.log") == 0
