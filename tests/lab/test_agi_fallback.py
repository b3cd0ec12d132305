"""The process-AGI fallback on a real Asterisk: pbx1's FastAGI guard stopped, transfers still decided.

pbx1's ``[referee-guard]`` asks ``agi://127.0.0.20:4573/transfer-guard?...``; with the daemon stopped the
connection is refused, AGI() ends with AGISTATUS=FAILURE, and the dialplan runs
``agi-bin/referee_transfer_guard.py`` (the stdlib AGI loop, no pyst2) with the same query. Two scenarios
run meanwhile: ``fastagi_guard_rejects`` (an AMI blind transfer to a premium-rate number, refused 403 by
the rule ``prefixes:deny:+449``) and ``blind_transfer`` (bob's REFER to carol, allowed). The process AGI's
own log lines (its stderr, which Asterisk passes to its console log) show that it decided both. The
daemon is started again at the end, so later lab tests see the lab as it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from referee_lab import chroot, scenario, services, topology

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
PBX = "pbx1"


def _run(name: str, state: chroot.LabState) -> None:
    result = scenario.run(scenario.load(REPO / "tests" / "scenarios" / name), state, topology.load())
    print(result.ladder_text, *result.notes, sep="\n")
    assert result.passed, f"{name}: {result.error}"


def _grown(path: Path, since: int) -> list[str]:
    with path.open("rb") as log:
        log.seek(since)
        return log.read().decode(errors="replace").splitlines()


def test_the_process_agi_decides_while_fastagi_is_down(lab: object) -> None:
    topo = topology.load()
    state = chroot.LabState.load()
    assert state is not None
    # pbx1's console (Asterisk's stdout and stderr, where an AGI script's stderr goes) and its messages.log.
    logs = [services.LOG_DIR / f"{PBX}.log", Path(state.rootfs) / "var/log/asterisk/messages.log"]
    sizes = [log.stat().st_size if log.exists() else 0 for log in logs]
    fastagi = state.pids[f"fastagi-{PBX}"]
    services.stop_fastagi(PBX, state)
    try:
        assert not chroot.alive(fastagi)
        _run("fastagi_guard_rejects", state)
        _run("blind_transfer", state)
    finally:
        restarted = services.start_fastagi(PBX, topo, state)
    assert restarted != fastagi and chroot.alive(restarted)
    lines = [
        line for log, size in zip(logs, sizes, strict=True) if log.exists() for line in _grown(log, size)
    ]
    decided = [line for line in lines if "referee-agi INFO transfer" in line]
    assert any("REJECT 403" in line and "prefixes:deny:+449" in line for line in decided), lines[-40:]
    assert any("ALLOW rule pbx1-extensions" in line and "sip:1003@" in line for line in decided), lines[-40:]
    assert any("did not answer" in line and "using the process AGI" in line for line in lines), lines[-40:]
