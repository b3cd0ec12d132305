"""Smoke run of the lab load benchmark (tests/bench/lab_load.py, `make bench-lab`): one blind and one
attended transfer through the shared lab, placed by the load runner's SIPp processes. No timing asserted:
both transfers complete, the audit holds one final record each, no SIPp call failed, CPU was sampled,
and no load process is left running.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from referee_lab import chroot, load, topology
from referee_lab.load_figures import report

pytestmark = pytest.mark.lab


def test_two_transfers_through_the_load_runner(lab: object) -> None:
    state = chroot.LabState.load()
    assert state is not None, "the lab fixture left no state"
    step = load.run_step(state, topology.load(), rate=1, seconds=2)
    assert step.attempted == 2
    assert len(step.latencies) == 2, step.latencies  # bob's REFER (attended) and alice's (blind)
    assert step.completed == 2, "\n".join(report(step))
    assert step.audit.ok and step.audit.one_final == 2, step.audit
    assert step.sipp_failed == 0 and all(c is not None for c in step.sipp.values()), step.sipp
    assert step.clean
    assert {"kamailio", "pbx1", "pbx2", "sipp"} <= set(step.cpu), step.cpu
    assert "load-tcpdump" not in (chroot.LabState.load() or state).pids
    sipps = [pid for pid in chroot.processes_in(Path(state.rootfs)) if _comm(pid) == "sipp"]
    assert sipps == [], f"SIPp left running: {sipps}"


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""
