"""Transfers under sustained load through the running lab: SIPp phones placing calls at a steady rate, each
call transferred, half blind (on pbx2), half attended (on pbx1).

The phones play the scenarios' own files (tests/scenarios), one SIPp process per phone socket, many calls
each (SIPp matches a call by Call-ID, the 3PCC twin commands too, so the files need no change):

- attended, pbx1: alice (port 5070) calls bob; bob holds her, his twin (5062) consults carol, bob REFERs
  alice with Replaces (``attended_transfer``);
- blind, pbx2: dave calls alice (1001: the proxy sends dave's call to his home PBX, pbx2, which dials alice
  through the proxy); alice REFERs dave to carol (``blind_transfer``'s bob.xml), pbx2 dials carol.

carol answers both kinds. Root: the lab must be up. Every process is stopped by its PID before returning.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from referee.audit.ingest import EventFileIngest
from referee.audit.store import open_store
from referee_lab import chroot, ladder
from referee_lab.load_figures import (
    CpuMeter,
    SippCounts,
    StepFigures,
    audit_summary,
    cpu_ticks,
    refer_latencies,
    sipp_counts,
)
from referee_lab.provision import REPO
from referee_lab.scenario import capture, proxy_log, sipp
from referee_lab.topology import Topology

SCENARIOS = REPO / "tests" / "scenarios"
OUT_DIR = REPO / "var" / "lab" / "load"
IN_CHROOT = "/run/referee-lab/load"
TWIN = "127.0.0.32:5099"  # bob's 3PCC twin socket, as in attended_transfer/scenario.toml
REFERRERS = ("alice", "bob")  # who sends the REFERs (blind: alice, attended: bob)
MAX_CALLS = 100_000  # a bound on any one step, whatever the rate and duration asked
OPEN_CALLS = 5_000  # SIPp -l: calls open at once per process


@dataclass(frozen=True)
class Leg:
    """One SIPp process: a phone socket playing one scenario file for ``calls`` calls."""

    name: str
    role: str
    source: str  # scenario folder / file, under tests/scenarios
    port: int
    calls: int
    rate: float = 0.0  # calls per second it places (a caller); 0: it answers
    twin: str = ""
    replace: tuple[tuple[str, str], ...] = ()  # text changes to the copy it plays

    @property
    def file(self) -> str:
        return f"{IN_CHROOT}/{self.name}.xml"


def plan(rate: float, seconds: float) -> list[Leg]:
    """The processes of one step, in start order (those that answer first, bob's twin before bob)."""
    if rate <= 0 or seconds <= 0:
        raise ValueError("rate and duration must be positive")
    attended = max(1, round(rate / 2 * seconds))
    blind = max(1, round(rate / 2 * seconds))
    if attended + blind > MAX_CALLS:
        raise ValueError(f"{attended + blind} transfers: more than {MAX_CALLS} in one step")
    return [
        Leg("carol", "carol", "attended_transfer/carol.xml", 5060, attended + blind),
        Leg("alice-refers", "alice", "blind_transfer/bob.xml", 5060, blind),
        Leg("bob-consult", "bob", "attended_transfer/bob_consult.xml", 5062, attended, twin=TWIN),
        Leg("bob", "bob", "attended_transfer/bob.xml", 5060, attended, twin=TWIN),
        Leg("alice-calls", "alice", "attended_transfer/alice.xml", 5070, attended, rate=rate / 2),
        Leg(
            "dave-calls",
            "dave",
            "blind_transfer/alice.xml",
            5060,
            blind,
            rate=rate / 2,
            replace=(("1002@", "1001@"), ('"alice"', '"dave"')),
        ),
    ]


def argv(root: str, topo: Topology, leg: Leg, media_port: int) -> list[str]:
    """The SIPp command of one leg (run in the chroot): counters in a stat file, errors only in a log."""
    phone = topo.phone(leg.role)
    cmd = ["chroot", root, "sipp"]
    if leg.rate or sipp.is_uac(Path(root) / leg.file.lstrip("/")):
        # a caller, or a scenario that sends first (bob's 3PCC twin): it needs the proxy's address
        cmd.append(f"{topo.proxy_address}:{topo.proxy_port}")
    cmd += [
        "-sf", leg.file,
        "-inf", f"{sipp.PHONES_DIR}/phones/{leg.role}.csv",
        "-i", phone.address, "-p", str(leg.port),
        "-mi", phone.address, "-mp", str(media_port),
        "-m", str(leg.calls), "-l", str(OPEN_CALLS),
        "-nostdin", "-aa",
        "-trace_err", "-error_file", f"{IN_CHROOT}/{leg.name}-errors.log",
        "-trace_stat", "-stf", f"{IN_CHROOT}/{leg.name}.csv", "-fd", "5",
    ]  # fmt: skip
    if leg.rate:
        # calls per 10 s, so that a fractional rate per second is kept
        cmd += ["-r", str(max(1, round(leg.rate * 10))), "-rp", "10000"]
    if leg.twin:
        cmd += ["-3pcc", leg.twin]
    return cmd


def group_of(pid: int, comm: str, state: chroot.LabState) -> str:
    """The CPU figure a lab process counts in: kamailio (all its workers), pbx1, pbx2, fastagi, sipp..."""
    for name, known in state.pids.items():
        if known == pid:
            return "fastagi" if name.startswith("fastagi") else name
    return "kamailio" if comm.startswith("kamailio") else comm


def read_ticks(pids: Mapping[int, str | None], state: chroot.LabState) -> dict[int, tuple[str, int]]:
    """PID -> (group, CPU ticks); ``pids`` maps a PID to its group, or None to name it from its comm."""
    out = {}
    for pid, group in pids.items():
        try:
            comm, ticks = cpu_ticks(Path(f"/proc/{pid}/stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile: its last sample stays
        out[pid] = (group or group_of(pid, comm, state), ticks)
    return out


def _register(state: chroot.LabState, topo: Topology, out: Path) -> None:
    for role in ("alice", "bob", "carol", "dave"):
        log = out / f"{role}-register.log"
        reg = sipp.start(state, topo, role, sipp.REGISTER, IN_CHROOT, log)
        if sipp.wait_all({role: reg}, 15) or reg.returncode != 0:
            raise RuntimeError(f"{role} could not register (sipp exit {reg.returncode}); see {log}")


def _stop_all(procs: Mapping[str, subprocess.Popen[bytes]]) -> None:
    """SIGUSR1 asks SIPp to stop placing calls and end (writing its stats); then SIGTERM, SIGKILL."""
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(p.poll() is None for p in procs.values()):
        time.sleep(0.1)
    for p in procs.values():
        capture.stop(p)


def run_step(
    state: chroot.LabState,
    topo: Topology,
    rate: float,
    seconds: float,
    drain: float = 40.0,
    log: Callable[[str], None] = print,
) -> StepFigures:
    """Place ``rate`` transfers per second for ``seconds``, wait (at most ``drain`` s more) for them to end,
    and read the figures. Leaves no process behind."""
    legs = plan(rate, seconds)
    root = Path(state.rootfs)
    out = OUT_DIR / f"rate-{rate:g}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    host_dir = root / IN_CHROOT.lstrip("/")
    shutil.rmtree(host_dir, ignore_errors=True)
    host_dir.mkdir(parents=True)
    for leg in legs:
        text = (SCENARIOS / leg.source).read_text()
        for old, new in leg.replace:
            text = text.replace(old, new)
        (host_dir / f"{leg.name}.xml").write_text(text)
    _register(state, topo, out)

    events_start = proxy_log.position(proxy_log.path_in(root))
    pcap = out / "refer-notify.pcap"
    referrer_hosts = " or ".join(f"host {topo.phone(r).address}" for r in REFERRERS)
    # only REFERs and NOTIFYs ("REFE", "NOTI" at the start of the UDP payload): a small capture at any rate
    bpf = (
        f"host {topo.proxy_address} and ({referrer_hosts}) and udp and "
        "(udp[8:4] = 0x52454645 or udp[8:4] = 0x4e4f5449)"
    )
    procs: dict[str, subprocess.Popen[bytes]] = {}
    meter = CpuMeter(float(os.sysconf("SC_CLK_TCK")))
    dump = capture.start(pcap, out / "tcpdump.log", bpf)
    state.pids["load-tcpdump"] = dump.pid  # `lab down` stops it even if this process dies
    state.save()
    began = time.monotonic()
    try:
        for i, leg in enumerate(legs):
            with (out / f"{leg.name}.log").open("wb") as sink:
                procs[leg.name] = subprocess.Popen(
                    argv(state.rootfs, topo, leg, 6000 + 200 * i),
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            time.sleep(0.3 if leg.rate == 0 else 0)
        deadline = time.monotonic() + seconds + drain
        next_note = time.monotonic() + 30
        callers = [procs[leg.name] for leg in legs if leg.rate]
        answering = {leg.name: procs[leg.name] for leg in legs if not leg.rate}
        while any(p.poll() is None for p in procs.values()) and time.monotonic() < deadline:
            gone = [n for n, p in answering.items() if p.poll() not in (None, 0)]
            placing = time.monotonic() - began < seconds and any(c.poll() is None for c in callers)
            if gone and placing:
                # a phone gone while calls are still placed: every later call fails; stop here
                log(f"  {', '.join(gone)} exited while the callers still place calls: step stopped")
                break
            watched: dict[int, str | None] = {pid: None for pid in chroot.processes_in(root)}
            watched[dump.pid] = "tcpdump"
            meter.sample(time.monotonic(), read_ticks(watched, state))
            if time.monotonic() > next_note:
                running = [n for n, p in procs.items() if p.poll() is None]
                log(f"  {time.monotonic() - began:.0f} s: running {', '.join(running)}")
                next_note += 30
            time.sleep(1.0)
    finally:
        _stop_all(procs)
        time.sleep(0.5)  # the last NOTIFYs and events
        capture.stop(dump, signal.SIGINT)
        state.pids.pop("load-tcpdump", None)
        state.save()
        for f in host_dir.glob("*"):
            if f.suffix in (".log", ".csv"):
                shutil.copy2(f, out / f.name)
    elapsed = time.monotonic() - began

    stats = {leg.name: sipp_counts(_read(out / f"{leg.name}.csv")) for leg in legs}
    # what the callers placed (their plan, when a caller left no counters)
    placed = sum(_created(stats[leg.name], leg.calls) for leg in legs if leg.rate)
    messages = ladder.read_pcap(pcap, topo.node_names())
    latencies = refer_latencies(messages, set(REFERRERS), topo.proxy_name)
    db = out / "audit.sqlite3"
    _ingest(db, proxy_log.path_in(root), events_start)
    store = open_store(str(db))
    try:
        records = store.records(limit=10 * MAX_CALLS)
    finally:
        store.close()
    log(f"  step ended after {elapsed:.0f} s; files in {out}")
    return StepFigures(
        rate=rate,
        seconds=seconds,
        attempted=placed,
        latencies=latencies,
        audit=audit_summary(records, latencies),
        sipp=stats,
        cpu=meter.percent(),
    )


def _created(counts: SippCounts | None, planned: int) -> int:
    return counts.created if counts else planned


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _ingest(db: Path, events: Path, start: proxy_log.Position) -> None:
    """Apply the event file's lines from ``start`` (:func:`proxy_log.position`) to a new database ``db``: the
    run's own audit, apart from the lab's PostgreSQL (which the scenarios' checks read)."""
    db.unlink(missing_ok=True)
    store = open_store(str(db))
    try:
        if start != (0, 0):
            store.set_ingest_offset(str(events), *start)
        EventFileIngest(store, str(events)).poll()
    finally:
        store.close()
