"""End-to-end transfer latency in the lab: bob's REFER reaching the proxy -> the NOTIFY 200 reaching bob.

Not a timed test: runs ``attended_transfer`` and ``blind_transfer`` N times each (default 10, at most 50)
through the lab's scenario runner and prints, from each run's pcap, the seconds from bob's REFER (bob ->
proxy) to the NOTIFY whose sipfrag says 200 (proxy -> bob), then p50, p90 and max. The scenarios' own SIPp
pauses before the REFER and after the NOTIFY are not included. Brings the lab up (or reuses it) and always
takes it down at the end. Root.

    make bench-lab-latency    # or: .venv/bin/python tests/bench/lab_attended_latency.py [N]
"""

from __future__ import annotations

import math
import os
import signal
import sys

from referee_lab import chroot, ladder, scenario, services, topology

SCENARIOS = ("attended_transfer", "blind_transfer")
MAX_RUNS = 50


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def bench(name: str, runs: int, state: chroot.LabState, topo: topology.Topology) -> list[float]:
    by_name = {s.name: s for s in scenario.discover()}
    sc = by_name[name]
    names = topo.node_names()
    latencies: list[float] = []
    print(f"\n=== {name}: REFER (bob -> proxy) to NOTIFY 200 (proxy -> bob), {runs} runs")
    for i in range(1, runs + 1):
        res = scenario.run(sc, state, topo)
        latency = ladder.refer_to_notify_latency(ladder.read_pcap(res.pcap, names), "bob")
        verdict = "PASS" if res.passed else f"FAIL ({res.error})"
        shown = "n/a" if latency is None else f"{latency * 1000:7.1f} ms"
        print(f"  run {i:2}: {shown}  scenario {verdict} in {res.seconds:.1f} s", flush=True)
        if res.passed and latency is not None:
            latencies.append(latency)
    if latencies:
        ms = [v * 1000 for v in latencies]
        print(
            f"  {name}: n={len(ms)} p50 {percentile(ms, 50):.1f} ms, p90 {percentile(ms, 90):.1f} ms, "
            f"max {max(ms):.1f} ms"
        )
    return latencies


def lab_up(topo: topology.Topology) -> chroot.LabState | None:
    """The running lab's state, bringing it up first if it is not running."""
    state = chroot.LabState.load()
    if state is None or not state.pids:
        services.up(topo)
        state = chroot.LabState.load()
    return state


def main() -> int:
    if os.geteuid() != 0:
        raise SystemExit("lab_attended_latency: needs root (the lab)")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    runs = min(int(sys.argv[1]) if len(sys.argv) > 1 else 10, MAX_RUNS)
    topo = topology.load()
    try:
        state = lab_up(topo)
        if state is None:
            print("lab_attended_latency: the lab did not come up", file=sys.stderr)
            return 1
        results = {name: bench(name, runs, state, topo) for name in SCENARIOS}
    finally:
        report = services.down()
        print(f"lab down: stopped {len(report['stopped'])} process(es), unmounted {len(report['unmounted'])}")
    return 0 if all(len(v) == runs for v in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
