"""The figures of a lab load run, from what it left behind: pure, no lab needed (unit-tested without root).

- REFER -> NOTIFY 200 per transfer, from the captured messages (:mod:`referee_lab.ladder`);
- the audit: exactly one final record per REFER Call-ID, none stuck;
- SIPp's own call counters (its ``-trace_stat`` CSV);
- CPU seconds per lab process, from ``/proc/PID/stat`` samples.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from referee.audit.record import TransferRecord
from referee_lab.ladder import Message


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def refer_latencies(
    messages: Iterable[Message], referrers: set[str], proxy: str = "proxy"
) -> dict[str, float | None]:
    """Per REFER Call-ID: seconds from a referrer's first REFER to the proxy to the first NOTIFY whose
    sipfrag says 200 that the proxy delivers back in that dialog; None when that NOTIFY never came.

    Retransmissions do not count (first copies only); a NOTIFY before its REFER is ignored.
    """
    refer_at: dict[str, float] = {}
    done: dict[str, float] = {}
    for m in sorted(messages, key=lambda m: m.time):
        if not m.is_request or not m.call_id:
            continue
        if m.label == "REFER" and m.src in referrers and m.dst == proxy:
            refer_at.setdefault(m.call_id, m.time)
        elif m.src == proxy and m.dst in referrers and m.sipfrag.startswith("200") and m.call_id in refer_at:
            done.setdefault(m.call_id, m.time - refer_at[m.call_id])
    return {call_id: done.get(call_id) for call_id in refer_at}


@dataclass(frozen=True)
class AuditSummary:
    """What the audit holds for the run's REFERs."""

    refers: int
    one_final: int  # REFER Call-IDs with exactly one record, in a final state
    missing: list[str] = field(default_factory=list)  # no record at all
    duplicated: list[str] = field(default_factory=list)  # more than one record
    stuck: list[str] = field(default_factory=list)  # one record, not final
    states: dict[str, int] = field(default_factory=dict)  # state -> records (of the run's REFERs)
    completed: set[str] = field(default_factory=set)  # Call-IDs whose one record says completed

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicated or self.stuck)


def audit_summary(records: Iterable[TransferRecord], refer_call_ids: Iterable[str]) -> AuditSummary:
    """Check the records against the REFERs seen: one final record each, nothing missing or stuck."""
    by_call: dict[str, list[TransferRecord]] = {}
    for r in records:
        if r.call_id:
            by_call.setdefault(r.call_id, []).append(r)
    ids = list(dict.fromkeys(refer_call_ids))
    missing = [c for c in ids if c not in by_call]
    duplicated = [c for c in ids if len(by_call.get(c, [])) > 1]
    single = {c: by_call[c][0] for c in ids if len(by_call.get(c, [])) == 1}
    stuck = [c for c, r in single.items() if not r.final]
    states = Counter(str(r.state) for c in ids for r in by_call.get(c, []))
    return AuditSummary(
        refers=len(ids),
        one_final=len(single) - len(stuck),
        missing=missing,
        duplicated=duplicated,
        stuck=stuck,
        states=dict(sorted(states.items())),
        completed={c for c, r in single.items() if r.state == "completed"},
    )


@dataclass(frozen=True)
class SippCounts:
    """One SIPp process's cumulated call counters (the last line of its -trace_stat file)."""

    created: int = 0
    successful: int = 0
    failed: int = 0


def sipp_counts(stat_csv: str) -> SippCounts | None:
    """Read a SIPp ``-trace_stat`` file (``;``-separated, header first); None when it holds no figures."""
    lines = [line for line in stat_csv.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    row = dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))

    def number(name: str) -> int:
        try:
            return int(row.get(name, "0") or 0)
        except ValueError:
            return 0

    return SippCounts(number("TotalCallCreated"), number("SuccessfulCall(C)"), number("FailedCall(C)"))


def cpu_ticks(stat_line: str) -> tuple[str, int]:
    """(comm, utime + stime in clock ticks) of one ``/proc/PID/stat`` line (comm may hold spaces)."""
    head, _, tail = stat_line.rpartition(")")
    comm = head.partition("(")[2]
    fields = tail.split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15
    return comm, int(fields[11]) + int(fields[12])


@dataclass
class CpuMeter:
    """CPU seconds per named group of processes between the first and the last sample.

    A process seen in a later sample only (started meanwhile) counts from zero; one that exited keeps its
    last sampled figure, so sample often enough (and once before stopping the processes you started).
    """

    ticks_per_second: float
    first: dict[int, int] = field(default_factory=dict)
    last: dict[int, int] = field(default_factory=dict)
    group_of: dict[int, str] = field(default_factory=dict)
    started: float | None = None
    ended: float | None = None

    def sample(self, when: float, ticks: Mapping[int, tuple[str, int]]) -> None:
        """``ticks``: PID -> (group name, its cumulated ticks) at ``when``."""
        initial = self.started is None
        if initial:
            self.started = when
        self.ended = when
        for pid, (group, value) in ticks.items():
            self.group_of[pid] = group
            if initial:
                self.first[pid] = value
            else:
                self.first.setdefault(pid, 0)
            self.last[pid] = value

    def seconds(self) -> dict[str, float]:
        """Group -> CPU seconds used between the samples."""
        out: dict[str, float] = {}
        for pid, group in self.group_of.items():
            used = self.last[pid] - self.first[pid]
            out[group] = out.get(group, 0.0) + used / self.ticks_per_second
        return dict(sorted(out.items()))

    def percent(self) -> dict[str, float]:
        """Group -> percent of one core over the sampled interval (200 = both cores of this machine)."""
        wall = (self.ended or 0.0) - (self.started or 0.0)
        if wall <= 0:
            return {}
        return {group: 100 * used / wall for group, used in self.seconds().items()}


@dataclass(frozen=True)
class StepFigures:
    """One rate of a load run, all figures in."""

    rate: float
    seconds: float
    attempted: int  # calls the transferees' SIPp placed
    latencies: dict[str, float | None]  # REFER Call-ID -> REFER -> NOTIFY 200 (s)
    audit: AuditSummary
    sipp: dict[str, SippCounts | None]  # process name -> its counters (None: no stat file)
    cpu: dict[str, float]  # group -> percent of one core

    @property
    def completed(self) -> int:
        """Transfers with a NOTIFY 200 back to the referrer and one completed audit record."""
        return sum(1 for c, v in self.latencies.items() if v is not None and c in self.audit.completed)

    @property
    def failed(self) -> int:
        return max(self.attempted, len(self.latencies)) - self.completed

    @property
    def sipp_failed(self) -> int:
        return sum(c.failed for c in self.sipp.values() if c is not None)

    @property
    def clean(self) -> bool:
        """No failure anywhere: every call placed was transferred, no SIPp call failed, the audit is right."""
        missing_stats = any(c is None for c in self.sipp.values())
        return (
            self.attempted > 0
            and self.failed == 0
            and self.sipp_failed == 0
            and self.audit.ok
            and not missing_stats
        )

    def p(self, q: float) -> float | None:
        """The q-th percentile of REFER -> NOTIFY 200, in milliseconds."""
        found = percentile((v * 1000 for v in self.latencies.values() if v is not None), q)
        return found


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def report(step: StepFigures, goal_p99_ms: float = 50.0) -> list[str]:
    """The lines printed for one rate."""
    a = step.audit
    sipp = ", ".join(
        f"{name} {c.successful} ok/{c.failed} failed" if c else f"{name} no stats"
        for name, c in step.sipp.items()
    )
    cpu = ", ".join(f"{group} {pct:.0f}%" for group, pct in sorted(step.cpu.items(), key=lambda i: -i[1]))
    p99 = step.p(99)
    met = step.clean and p99 is not None and p99 <= goal_p99_ms
    lines = [
        f"rate {step.rate:g}/s for {step.seconds:.0f} s: {step.attempted} transfers placed, "
        f"{step.completed} completed, {step.failed} failed",
        f"  REFER -> NOTIFY 200: p50 {_ms(step.p(50))}, p99 {_ms(p99)}, max {_ms(step.p(100))} "
        f"({sum(1 for v in step.latencies.values() if v is not None)} of {len(step.latencies)} REFERs)",
        f"  audit: {a.refers} REFERs, {a.one_final} with exactly one final record; missing {len(a.missing)}, "
        f"duplicated {len(a.duplicated)}, stuck {len(a.stuck)}; states {a.states}",
        f"  SIPp: {sipp}",
        f"  CPU (% of one core; 200% = both): {cpu}",
        f"  goal (0 failures, p99 <= {goal_p99_ms:g} ms): {'met' if met else 'NOT met'}",
    ]
    for label, ids in (("missing", a.missing), ("duplicated", a.duplicated), ("stuck", a.stuck)):
        if ids:
            lines.append(f"  audit {label}: {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}")
    return lines
