"""Run the SIPp scenarios of tests/scenarios/ against the running lab, with a pcap of lo per run.

A scenario is a folder: ``scenario.toml`` (summary, description, the phones in start order) and one SIPp file
per phone role (``alice.xml``, ``bob.xml``...). The runner registers every phone of the scenario with the
sipp_phones role's ``register.xml`` (digest auth), starts the role scenarios in order inside the chroot, waits
for all of them, and captures the SIP packets with tcpdump on lo.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import threading
import time
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from referee.audit.store import AuditError
from referee_lab import ami, audit_expect, chroot, ladder, operator
from referee_lab.provision import REPO
from referee_lab.topology import Topology

SCENARIOS_DIR = REPO / "tests" / "scenarios"
RUNS_DIR = REPO / "var" / "lab" / "runs"
PHONES_DIR = "/opt/referee-lab"  # sipp_phones__dir
IN_CHROOT_RUNS = "/run/referee-lab/runs"
PROXY_EVENTS = "/var/log/referee/events.jsonl"  # kamailio__events_file


@dataclass(frozen=True)
class PhoneSpec:
    """One SIPp process: a phone ``role`` playing ``{file}.xml`` (default ``{role}.xml``).

    A phone with two call legs runs two processes: the second one names its own ``file``, listens on
    another ``port`` of the phone's address, and both pass values through SIPp's 3PCC twin socket
    (``twin``, ``-3pcc ADDR:PORT``: the process whose first twin command is ``recvCmd`` listens there,
    so it starts first). ``calls``: how many calls the process takes before it ends (``-m``), for one
    scenario file that answers two calls.
    """

    role: str
    delay: float = 0.5
    timeout: float = 60.0
    file: str = ""
    port: int | None = None
    twin: str = ""
    calls: int = 1

    @property
    def name(self) -> str:
        return self.file or self.role


@dataclass(frozen=True)
class Expect:
    """Checks beyond every phone's SIPp scenario passing (``[expect]`` in scenario.toml).

    - ``refer_statuses``: the proxy's REFER decisions in order (202 allowed, 403 refused...);
    - ``notify_to`` / ``notify_final``: the last NOTIFY sipfrag the phone got from the proxy, in CSeq order
      (NOTIFYs may overtake each other through the proxy's workers; their CSeq numbers cannot);
    - ``no_invite_after_refer_from``: nodes (``pbx1``...) that send no INVITE once the first REFER was
      captured (a refused transfer calls nobody);
    - ``invite_after_refer``: hops (``"pbx1>proxy"``...) that each carry an INVITE once the first REFER was
      captured (where the transfer's new call went);
    - ``no_invite_to``: Request-URI users (``09098790000``...) that no INVITE of the capture names (a
      transfer the PBX refused calls nobody, even one that never passed the proxy);
    - ``ami``: events the PBXs must report over AMI during the run, each a table naming its ``pbx`` and
      the fields an event must carry (``{pbx = "pbx1", Event = "AttendedTransfer", Result = "Success"}``;
      a value ``prefix*`` matches by prefix);
    - ``audit``: the audit record of the run's REFER (``[expect.audit]``: ``state``, ``flow``,
      ``proxy_status``, ``notify_final``; see :mod:`referee_lab.audit_expect`).
    """

    refer_statuses: tuple[int, ...] | None = None
    notify_to: str = ""
    notify_final: str = ""
    no_invite_after_refer_from: tuple[str, ...] = ()
    invite_after_refer: tuple[str, ...] = ()
    no_invite_to: tuple[str, ...] = ()
    ami: tuple[tuple[tuple[str, str], ...], ...] = ()
    audit: audit_expect.AuditExpect | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    summary: str
    description: str
    phones: tuple[PhoneSpec, ...]
    expect: Expect = Expect()
    actions: tuple[ami.Action, ...] = ()
    operator: operator.OperatorSpec | None = None


@dataclass
class PhoneResult:
    role: str
    returncode: int | None
    log: Path
    timed_out: bool = False


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


def discover(root: Path = SCENARIOS_DIR) -> list[Scenario]:
    return [load(p) for p in sorted(root.iterdir()) if (p / "scenario.toml").is_file()]


def load(path: Path) -> Scenario:
    data = tomllib.loads((path / "scenario.toml").read_text())
    phones = tuple(
        PhoneSpec(
            role=str(p["role"]),
            delay=float(p.get("delay", 0.5)),
            timeout=float(p.get("timeout", data.get("timeout", 60))),
            file=str(p.get("file", "")).removesuffix(".xml"),
            port=int(p["port"]) if "port" in p else None,
            twin=str(p.get("twin", "")),
            calls=int(p.get("calls", 1)),
        )
        for p in data["phones"]
    )
    names = [p.name for p in phones]
    if len(set(names)) != len(names):
        raise ValueError(f"scenario {path.name}: two phones play the same file; give one a `file`")
    for p in phones:
        if not (path / f"{p.name}.xml").is_file():
            raise ValueError(f"scenario {path.name}: no {p.name}.xml")
    raw = data.get("expect", {})
    statuses = raw.get("refer_statuses")
    expect = Expect(
        refer_statuses=tuple(int(s) for s in statuses) if statuses is not None else None,
        notify_to=str(raw.get("notify_to", "")),
        notify_final=str(raw.get("notify_final", "")),
        no_invite_after_refer_from=tuple(str(n) for n in raw.get("no_invite_after_refer_from", ())),
        invite_after_refer=tuple(str(h) for h in raw.get("invite_after_refer", ())),
        no_invite_to=tuple(str(u) for u in raw.get("no_invite_to", ())),
        ami=tuple(tuple((str(k), str(v)) for k, v in want.items()) for want in raw.get("ami", ())),
        audit=audit_expect.load(path.name, raw["audit"]) if "audit" in raw else None,
    )
    return Scenario(
        name=path.name,
        path=path,
        summary=str(data.get("summary", "")),
        description=str(data.get("description", "")).strip(),
        phones=phones,
        expect=expect,
        actions=tuple(_action(path.name, a) for a in data.get("actions", {}).get("ami", ())),
        operator=operator.load(path.name, data["operator"]) if "operator" in data else None,
    )


def _action(scenario: str, raw: dict[str, object]) -> ami.Action:
    """One ``[[actions.ami]]`` table: ``pbx``, ``when`` (a table or a list of tables: the events to wait
    for), ``delay`` (seconds after them, default 0) and the action's own fields (``Action =
    "BlindTransfer"``, ``Channel = "{Channel}"``...)."""
    when = raw.get("when")
    patterns = [when] if isinstance(when, dict) else when
    if not patterns or not isinstance(patterns, list) or not all(isinstance(p, dict) for p in patterns):
        raise ValueError(f"scenario {scenario}: an [[actions.ami]] needs `when`, the event(s) to wait for")
    fields = {str(k): str(v) for k, v in raw.items() if k not in ("pbx", "when", "delay")}
    if "pbx" not in raw or "Action" not in fields:
        raise ValueError(f"scenario {scenario}: an [[actions.ami]] needs `pbx` and `Action`")
    return ami.Action(
        pbx=str(raw["pbx"]),
        when=tuple(tuple((str(k), str(v)) for k, v in p.items()) for p in patterns),
        fields=tuple(fields.items()),
        delay=float(str(raw.get("delay", 0))),
    )


def _proxy_events(root: Path, offset: int) -> list[dict[str, object]]:
    path = root / PROXY_EVENTS.lstrip("/")
    if not path.is_file():
        return []
    with path.open("rb") as f:
        f.seek(offset)
        lines = f.read().decode(errors="replace").splitlines()
    events = []
    for line in lines:
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return events


def _events_offset(root: Path) -> int:
    path = root / PROXY_EVENTS.lstrip("/")
    return path.stat().st_size if path.is_file() else 0


def _describe(event: dict[str, object]) -> str:
    decision = event.get("decision")
    if not isinstance(decision, dict):
        return ""
    verdict = "allowed" if decision.get("allowed") else "refused"
    line = (
        f"proxy: REFER from {event.get('from')} to {event.get('refer_to')}: {verdict} "
        f"{decision.get('status')} {decision.get('reason')} [rule {decision.get('rule')}]"
    )
    if decision.get("allowed"):
        line += f" -> {event.get('forwarded_refer_to')}"
    return line


def _check(
    expect: Expect,
    messages: list[ladder.Message],
    events: list[dict[str, object]],
    ami_events: dict[str, list[dict[str, str]]] | None = None,
) -> list[str]:
    """Problems with the expectations (empty when they hold)."""
    problems = ami.unmet([dict(want) for want in expect.ami], ami_events or {})
    if expect.refer_statuses is not None:
        got = tuple(
            int(str(d.get("status")))
            for e in events
            if e.get("event") == "refer.decision" and isinstance(d := e.get("decision"), dict)
        )
        if got != expect.refer_statuses:
            problems.append(f"proxy REFER decisions {list(got)}, expected {list(expect.refer_statuses)}")
    if expect.notify_to:
        outcomes = ladder.notify_outcomes(messages, "proxy", expect.notify_to)
        final = outcomes[-1] if outcomes else "none"
        if final != expect.notify_final:
            problems.append(f"last NOTIFY to {expect.notify_to} was {final}, expected {expect.notify_final}")
    wants_refer = bool(expect.no_invite_after_refer_from or expect.invite_after_refer)
    if wants_refer and not any(m.is_request and m.label == "REFER" for m in messages):
        problems.append("no REFER captured")
    for hop in expect.invite_after_refer:
        src, _, dst = hop.partition(">")
        if not any(m.dst == dst for m in ladder.requests_after(messages, "REFER", "INVITE", src)):
            problems.append(f"no INVITE {src} -> {dst} after the REFER")
    for node in expect.no_invite_after_refer_from:
        if sent := ladder.requests_after(messages, "REFER", "INVITE", node):
            problems.append(f"{node} sent {len(sent)} INVITE(s) after the REFER (to {sent[0].dst} first)")
    for user in expect.no_invite_to:
        if sent := [
            m for m in messages if m.is_request and m.label == "INVITE" and ladder.uri_user(m.uri) == user
        ]:
            problems.append(f"{len(sent)} INVITE(s) to {user} ({sent[0].src} -> {sent[0].dst} first)")
    return problems


def refer_call_ids(messages: list[ladder.Message]) -> list[str]:
    """The Call-IDs of the REFERs captured, in capture order."""
    return list(
        dict.fromkeys(m.call_id for m in messages if m.is_request and m.label == "REFER" and m.call_id)
    )


def _audit(
    expect: audit_expect.AuditExpect,
    messages: list[ladder.Message],
    root: Path,
    out_dir: Path,
    events_start: tuple[int, int],
) -> tuple[list[str], list[str]]:
    """``[expect.audit]``: ingest this run's proxy events into the run folder's database, check the record
    of the captured REFER's Call-ID; (notes, problems)."""
    db = out_dir / "audit.sqlite3"
    try:
        audit_expect.ingest(db, root / PROXY_EVENTS.lstrip("/"), events_start)
        call_ids = refer_call_ids(messages)
        found = audit_expect.records(db, call_ids)
    except (AuditError, OSError) as exc:
        return [], [f"audit: ingest into {db} failed: {exc}"]
    return [audit_expect.describe(r) for r in found], audit_expect.problems(expect, call_ids, found)


def _is_uac(xml_file: Path) -> bool:
    """A SIPp scenario whose first message is sent (not received) is a client: it needs the remote host."""
    for element in ET.parse(xml_file).getroot():
        if element.tag in ("send", "recv"):
            return element.tag == "send"
    return False


def capture_filter(topo: Topology) -> str:
    """SIP between lab nodes only (other tests on this machine may use other loopback addresses)."""
    hosts = " or ".join(f"host {a}" for a in topo.node_names())
    return f"port 5060 and ({hosts})"


def _start_tcpdump(pcap: Path, log: Path, bpf: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            # --immediate-mode: without it libpcap hands packets over a buffer block at a time, and
            # the last block (the final BYEs) could still be in the kernel when tcpdump is stopped.
            ["tcpdump", "-i", "lo", "-n", "-s", "0", "-U", "--immediate-mode", "-w", str(pcap), bpf],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 10
    while b"listening on" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise RuntimeError(f"tcpdump did not start: {log.read_text(errors='replace')}")
        time.sleep(0.05)
    return proc


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _sipp(
    state: chroot.LabState,
    topo: Topology,
    role: str,
    scenario_file: str,
    run_dir: str,
    log: Path,
    spec: PhoneSpec | None = None,
) -> subprocess.Popen[bytes]:
    phone = topo.phone(role)
    name = spec.name if spec else role
    port = spec.port if spec and spec.port else phone.port
    argv = [
        "chroot",
        state.rootfs,
        "sipp",
        "-sf",
        scenario_file,
        "-inf",
        f"{PHONES_DIR}/phones/{role}.csv",
        "-i",
        phone.address,
        "-p",
        str(port),
        "-mi",
        phone.address,
        "-m",
        str(spec.calls if spec else 1),
        "-nostdin",
        "-aa",  # answer NOTIFY, INFO, OPTIONS and UPDATE the scenario does not wait for, like a phone
        "-timeout_error",
        "-trace_err",
        "-error_file",
        f"{run_dir}/{name}-errors.log",
        "-trace_msg",
        "-message_file",
        f"{run_dir}/{name}-messages.log",
    ]
    if port != phone.port:
        # Two SIPp processes on one address: keep the second one's media (RTP echo) ports apart too.
        argv += ["-mp", str(6000 + port - phone.port + 100)]
    if spec and spec.twin:
        argv += ["-3pcc", spec.twin]
    if _is_uac(Path(state.rootfs) / scenario_file.lstrip("/")):
        argv.insert(3, f"{topo.proxy_address}:{topo.proxy_port}")
    with log.open("ab") as out:
        out.write(("$ " + " ".join(argv) + "\n").encode())
        out.flush()
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _wait_all(procs: dict[str, subprocess.Popen[bytes]], timeout: float) -> set[str]:
    """Wait for every process; stop those still running after ``timeout`` and return their names.

    A SIPp stopped by a signal may exit 0 (no call failed, none succeeded either): it counts as failed.
    """
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs.values()):
        if time.monotonic() > deadline:
            late = {name for name, p in procs.items() if p.poll() is None}
            for p in procs.values():
                _stop(p)
            return late
        time.sleep(0.05)
    return set()


def run(scenario: Scenario, state: chroot.LabState, topo: Topology) -> ScenarioResult:
    """Register the phones, run the role scenarios, capture, draw the ladder; leaves no process behind."""
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

    pcap = out_dir / f"{scenario.name}.pcap"
    svg = out_dir / f"{scenario.name}.svg"
    start = time.monotonic()
    results: list[PhoneResult] = []
    error = ""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    events_from = _events_offset(root)
    # Where the audit ingest starts: the lines earlier runs left in the event file are not this run's.
    events_start = audit_expect.file_position(root / PROXY_EVENTS.lstrip("/"))
    recorders: dict[str, ami.AmiRecorder] = {}
    action_problems: list[str] = []
    orchestrator: operator.Orchestrator | None = None
    driver: threading.Thread | None = None
    outcome = operator.Outcome()
    ami_events: dict[str, list[dict[str, str]]] = {}
    dump = _start_tcpdump(pcap, out_dir / "tcpdump.log", capture_filter(topo))
    # tcpdump runs outside the chroot: record it, so that `lab down` stops it even if this process dies.
    state.pids["tcpdump"] = dump.pid
    state.save()
    try:
        for pbx in topo.pbxs:
            actions = [a for a in scenario.actions if a.pbx == pbx.name]
            wanted = scenario.operator is not None and scenario.operator.pbx == pbx.name
            if actions or wanted or any(dict(want).get("pbx") == pbx.name for want in scenario.expect.ami):
                recorders[pbx.name] = ami.AmiRecorder(
                    pbx.address, pbx.ami_port, topo.ami_user, topo.ami_secret, actions=actions
                )
        if unknown := {a.pbx for a in scenario.actions} - set(recorders):
            raise ValueError(f"scenario {scenario.name}: [[actions.ami]] for unknown PBX {sorted(unknown)}")
        if scenario.operator is not None:
            if scenario.operator.pbx not in recorders:
                raise ValueError(
                    f"scenario {scenario.name}: [operator] for unknown PBX {scenario.operator.pbx}"
                )
            orchestrator = operator.Orchestrator(out_dir, root / PROXY_EVENTS.lstrip("/"))
            # Outside the chroot, like tcpdump: recorded so that `lab down` stops it if this process dies.
            state.pids["orchestrator"] = orchestrator.pid
            state.save()
            orchestrator.ready(scenario.operator.pbx)
        roles = list(dict.fromkeys(p.role for p in scenario.phones))
        for role in roles:
            log = out_dir / f"{role}-register.log"
            reg = _sipp(state, topo, role, f"{PHONES_DIR}/register.xml", run_dir, log)
            procs[f"{role}-register"] = reg
            late = _wait_all({role: reg}, 15)
            if late or reg.returncode != 0:
                error = f"{role} could not register (sipp exit {reg.returncode}); see {log}"
                break
        if not error and orchestrator is not None and scenario.operator is not None:
            spec_op, recorder, api = scenario.operator, recorders[scenario.operator.pbx], orchestrator.api
            timeout = max(s.timeout for s in scenario.phones)

            def _drive() -> None:
                result = operator.drive(spec_op, recorder.wait_for, api, timeout)
                outcome.notes[:], outcome.problems[:] = result.notes, result.problems
                outcome.transfer_id = result.transfer_id

            driver = threading.Thread(target=_drive, name="operator", daemon=True)
            driver.start()
        if not error:
            for spec in scenario.phones:
                log = out_dir / f"{spec.name}.log"
                procs[spec.name] = _sipp(
                    state, topo, spec.role, f"{run_dir}/{spec.name}.xml", run_dir, log, spec
                )
                results.append(PhoneResult(spec.name, None, log))
                time.sleep(spec.delay)
            late = _wait_all(
                {r.role: procs[r.role] for r in results}, max(s.timeout for s in scenario.phones)
            )
            for r in results:
                r.returncode = procs[r.role].returncode
                r.timed_out = r.role in late
    finally:
        for p in procs.values():
            _stop(p)
        time.sleep(0.3)  # let the last packets (and AMI events) reach the capture
        if driver is not None:
            driver.join(15)
            if driver.is_alive():
                outcome.problems.append("operator: still driving the transfer after the phones ended")
        if orchestrator is not None:
            orchestrator.stop()
            state.pids.pop("orchestrator", None)
            state.save()
            if scenario.operator is not None and outcome.transfer_id is not None:
                try:
                    record = orchestrator.record(outcome.transfer_id)
                except (RuntimeError, ValueError) as exc:
                    outcome.problems.append(f"audit: {exc}")
                else:
                    outcome.problems += operator.record_problems(
                        scenario.operator, outcome.transfer_id, record
                    )
                    outcome.notes.append(
                        f"audit: record {record.get('id')} {record.get('flow')} {record.get('origin')} "
                        f"{record.get('state')} {record.get('result') or ''}".rstrip()
                    )
        for name, recorder in recorders.items():
            ami_events[name] = recorder.close()
            action_problems += ami.action_problems(name, recorder.sent, recorder.unsent, recorder.errors)
        _stop(dump, signal.SIGINT)
        state.pids.pop("tcpdump", None)
        state.save()
        for f in host_run_dir.glob("*.log"):
            shutil.copy2(f, out_dir / f.name)
    seconds = time.monotonic() - start
    passed = not error and bool(results) and all(r.returncode == 0 and not r.timed_out for r in results)
    if not passed and not error:
        failed = [
            f"{r.role} ({'timed out' if r.timed_out else f'exit {r.returncode}'})"
            for r in results
            if r.returncode != 0 or r.timed_out
        ]
        error = "failed: " + ", ".join(failed)
    messages = ladder.read_pcap(pcap, topo.node_names())
    events = _proxy_events(root, events_from)
    notes = [line for e in events if (line := _describe(e))]
    if scenario.expect.notify_to:
        outcomes = ladder.notify_outcomes(messages, "proxy", scenario.expect.notify_to)
        notes.append(
            f"NOTIFY sipfrags to {scenario.expect.notify_to}, by CSeq: {', '.join(outcomes) or 'none'}"
        )
    for name, pbx_events in ami_events.items():
        notes += [
            f"AMI {name}: {e['Event']} {e.get('Result', '')} "
            f"{e.get('TransferTargetChannel') or e.get('Extension', '')}"
            for e in pbx_events
            if e.get("Event") in ("AttendedTransfer", "BlindTransfer")
        ]
    for name, recorder in recorders.items():
        notes += [
            f"AMI {name}: sent {s.action.get('Action')} "
            + " ".join(f"{k}={v}" for k, v in s.action.items() if k not in ("Action", "ActionID"))
            + f": {s.response.get('Response', 'no response')} {s.response.get('Message', '')}".rstrip()
            for s in recorder.sent
        ]
    notes += outcome.notes
    problems = action_problems + outcome.problems + _check(scenario.expect, messages, events, ami_events)
    if scenario.expect.audit is not None:
        audit_notes, audit_problems = _audit(scenario.expect.audit, messages, root, out_dir, events_start)
        notes += audit_notes
        problems += audit_problems
    if problems:
        passed = False
        error = "; ".join(filter(None, [error, *problems]))
    order = ladder.column_order(messages, topo.node_order())
    text = ladder.render_text(messages, order)
    ladder.write_svg(messages, order, svg, title=f"{scenario.name}: {scenario.summary}")
    return ScenarioResult(scenario, passed, seconds, pcap, svg, text, results, error, notes)
