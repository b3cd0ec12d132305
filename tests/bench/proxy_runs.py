"""What the proxy benchmarks share: Kamailio's CPU from /proc, alternating runs, min/median/max lines."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


def kamailio_cpu_seconds(main_pid: int) -> float:
    """User + system CPU of Kamailio's main process and its children (all its workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    pids = [main_pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == main_pid:  # ppid
                pids.append(int(entry.name))
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


@dataclass(frozen=True)
class Run:
    """One run of one configuration: work items per second, Kamailio CPU microseconds per item."""

    rate: float
    cpu_us: float


def alternate(configs: Sequence[str], runs: int, run: Callable[[str, int], Run]) -> dict[str, list[Run]]:
    """``runs`` rounds, each running every configuration once in turn (A B C A B C ...), so that the
    machine's drift and noise fall on every configuration alike."""
    results: dict[str, list[Run]] = {name: [] for name in configs}
    for index in range(runs):
        for name in configs:
            results[name].append(run(name, index))
    return results


def spread(values: Sequence[float]) -> str:
    """``min / median / max`` of ``values``."""
    return f"{min(values):8.2f} / {statistics.median(values):8.2f} / {max(values):8.2f}"


def report(results: dict[str, list[Run]], baseline: str, unit: str) -> list[str]:
    """The lines a benchmark prints: each configuration's rate and CPU, then its ratios to ``baseline``
    run by run (run i of a configuration against run i of the baseline, which ran right before it)."""
    lines = [f"{'':28}{'min':>8} / {'median':>8} / {'max':>8}"]
    for name, runs in results.items():
        lines.append(f"{name:<28}{spread([r.rate for r in runs])}  {unit}/s")
        lines.append(f"{'':<28}{spread([r.cpu_us for r in runs])}  us Kamailio CPU per {unit}")
    base = results[baseline]
    for name, runs in results.items():
        if name == baseline:
            continue
        rate = [r.rate / b.rate for r, b in zip(runs, base, strict=True)]
        # A run too short for one clock tick of CPU (the smoke test's) has no CPU ratio.
        cpu = [r.cpu_us / b.cpu_us for r, b in zip(runs, base, strict=True) if b.cpu_us > 0]
        lines.append(f"{name + ' / ' + baseline:<28}{spread(rate)}  throughput ratio")
        lines.append(f"{'':<28}{spread(cpu) if cpu else '(runs too short)':>28}  CPU per {unit} ratio")
    return lines
