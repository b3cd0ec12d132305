"""Run one scenario against the running lab: register the phones, start the checks, play the phones,
stop the checks, and judge the run from its capture, the proxy's events and the PBXs' AMI events.

The runner knows no check by name (:mod:`referee_lab.scenario.checks`); it leaves no process behind.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from referee_lab import chroot, ladder
from referee_lab.provision import REPO
from referee_lab.scenario import capture, proxy_log, sipp
from referee_lab.scenario.checks import Check, Gate
from referee_lab.scenario.context import Run
from referee_lab.scenario.model import Scenario
from referee_lab.topology import Topology

RUNS_DIR = REPO / "var" / "lab" / "runs"
IN_CHROOT_RUNS = "/run/referee-lab/runs"


@dataclass
class PhoneResult:
    role: str
    returncode: int | None
    log: Path
    timed_out: bool = False
    held: str = ""  # why a check never let it start


@dataclass
class ScenarioResult:
    scenario: Scenario
    passed: bool
    seconds: float
    pcap: Path
    svg: Path
    ladder_text: str
    phones: list[PhoneResult] = field(default_factory=list)
    error: str = ""
    notes: list[str] = field(default_factory=list)


def _register(run: Run, run_dir: str, procs: dict[str, subprocess.Popen[bytes]]) -> str:
    """Register every phone of the scenario, played or only registered (digest auth); what went wrong."""
    for role in dict.fromkeys([*(p.role for p in run.scenario.phones), *run.scenario.registered]):
        log = run.out_dir / f"{role}-register.log"
        reg = sipp.start(run.state, run.topo, role, sipp.REGISTER, run_dir, log)
        procs[f"{role}-register"] = reg
        late = sipp.wait_all({role: reg}, 15)
        if late or reg.returncode != 0:
            return f"{role} could not register (sipp exit {reg.returncode}); see {log}"
    return ""


def _play(run: Run, run_dir: str, procs: dict[str, subprocess.Popen[bytes]]) -> list[PhoneResult]:
    """Start the phones in order, wait for all of them."""
    results = []
    gates = [c for c in run.scenario.checks if isinstance(c, Gate)]
    for spec in run.scenario.phones:
        log = run.out_dir / f"{spec.name}.log"
        # A check may hold a phone back until something happened (a node killed, back up...).
        held = next((why for g in gates if (why := g.hold(run, spec.name, run.scenario.timeout))), "")
        results.append(PhoneResult(spec.name, None, log, held=held))
        if held:
            continue
        procs[spec.name] = sipp.start(
            run.state, run.topo, spec.role, f"{run_dir}/{spec.name}.xml", run_dir, log, spec
        )
        time.sleep(spec.delay)
    played = [r for r in results if not r.held]
    late = sipp.wait_all({r.role: procs[r.role] for r in played}, run.scenario.timeout)
    for r in played:
        r.returncode = procs[r.role].returncode
        r.timed_out = r.role in late
    return results


def _why(r: PhoneResult) -> str:
    if r.held:
        return f"not started: {r.held}"
    return "timed out" if r.timed_out else f"exit {r.returncode}"


def _phones_error(results: list[PhoneResult]) -> str:
    failed = [f"{r.role} ({_why(r)})" for r in results if r.returncode != 0 or r.timed_out or r.held]
    return "failed: " + ", ".join(failed) if failed or not results else ""


def run(scenario: Scenario, state: chroot.LabState, topo: Topology) -> ScenarioResult:
    """Register the phones, run the role scenarios and the checks, capture, draw the ladder."""
    root = Path(state.rootfs)
    out_dir = RUNS_DIR / scenario.name
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    run_dir = f"{IN_CHROOT_RUNS}/{scenario.name}"
    host_run_dir = root / run_dir.lstrip("/")
    shutil.rmtree(host_run_dir, ignore_errors=True)
    host_run_dir.mkdir(parents=True)
    # The scenario files as they are in the repository now (the role installs a copy for the Vagrant phones).
    for xml in scenario.path.glob("*.xml"):
        shutil.copy2(xml, host_run_dir / xml.name)

    svg = out_dir / f"{scenario.name}.svg"
    start = time.monotonic()
    # Where this run's proxy events start: the lines earlier runs left in the file are not this run's.
    current = Run(scenario, topo, state, out_dir, proxy_log.position(proxy_log.path_in(root)))
    pcap = current.pcap
    results: list[PhoneResult] = []
    procs: dict[str, subprocess.Popen[bytes]] = {}
    started: list[Check] = []
    dump = capture.start(pcap, out_dir / "tcpdump.log", capture.capture_filter(topo))
    # tcpdump runs outside the chroot: recorded, so that `lab down` stops it even if this process dies.
    current.track("tcpdump", dump.pid)
    try:
        error = _register(current, run_dir, procs)
        if not error:
            for check in scenario.checks:
                started.append(check)
                check.start(current)
            results = _play(current, run_dir, procs)
            error = _phones_error(results)
    finally:
        try:
            for p in procs.values():
                capture.stop(p)
            time.sleep(0.3)  # let the last packets (and AMI events) reach the capture
            for check in reversed(started):
                check.stop(current)
        finally:  # even if a check could not stop: no connection or tcpdump left behind
            current.close_ami()
            capture.stop(dump, signal.SIGINT)
            current.untrack("tcpdump")
            for f in host_run_dir.glob("*.log"):
                shutil.copy2(f, out_dir / f.name)
    seconds = time.monotonic() - start
    current.messages = ladder.read_pcap(pcap, topo.node_names())
    current.proxy_events = proxy_log.read(current.events_file, current.events_start)
    notes = [line for check in started for line in check.notes(current)]
    problems = [p for check in started for p in check.problems(current)]
    lost = capture.dropped(out_dir / "tcpdump.log")
    if lost:  # what the checks read is incomplete: a failure may be the capture's, not the transfer's
        (problems if problems else notes).append(f"capture: tcpdump dropped {lost} packets")
    error = "; ".join(filter(None, [error, *problems]))
    order = ladder.column_order(current.messages, topo.node_order())
    text = ladder.render_text(current.messages, order)
    ladder.write_svg(current.messages, order, svg, title=f"{scenario.name}: {scenario.summary}")
    return ScenarioResult(scenario, not error, seconds, pcap, svg, text, results, error, notes)
