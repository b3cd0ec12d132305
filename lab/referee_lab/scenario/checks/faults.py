"""``[[faults]]``: crash and restart lab nodes during a run, to show what survives a fault.

Each table is one fault; a thread beside the phones does them in file order:

1. waits for its trigger: SIP messages in the run's capture (``after_sip = ["pbx1>proxy 202"]``: a
   message from pbx1 to the proxy whose label starts with ``202``), events of a PBX's AMI
   (``after_ami = { pbx = "pbx1", when = { Event = "BridgeEnter" } }``), both, or neither (at once: when
   the phones start, or once the previous fault is done); then ``delay`` seconds;
2. does ``action`` to ``node`` (``proxy``, ``pbx1``, ``pbx2``): ``kill`` (SIGKILL to the daemon's
   process group, a crash), ``start`` (start it again and wait until it listens) or ``restart``
   (SIGKILL, then start). With ``before_sip`` (hops like ``after_sip``), none of them may be in the
   capture yet when the node is killed (or started): the fault came in time for what it is to disturb;
3. with ``until`` (a PBX only): waits until the proxy's event file says the PBX is ``down`` or ``up``
   again (``pbx.health``: the dispatcher's OPTIONS probes), for up to ``until_timeout`` s (default 15);
4. lets the phones named in ``release`` start: the runner holds them back until then (:class:`Gate`).

Once the phones are done, every node a fault killed runs again (started if it is still down), so the
next scenario finds the whole lab. A fault that could not be done (its trigger never came, the action
or ``until`` failed) is a problem, and the phones it would have released are never started.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from referee.events import PbxHealth
from referee_lab import ladder, services
from referee_lab.scenario import proxy_log
from referee_lab.scenario.checks.ami import Pattern, patterns
from referee_lab.scenario.context import Run

OWNS = ("faults",)
KEYS = (
    "node",
    "action",
    "after_sip",
    "after_ami",
    "delay",
    "before_sip",
    "until",
    "until_timeout",
    "release",
)
ACTIONS = ("kill", "start", "restart")
PBXS = ("pbx1", "pbx2")
POLL = 0.2  # seconds between looks at the capture and the proxy's event file

_HOP = re.compile(r"(\w+)>(\w+) (\S.*)")


@dataclass(frozen=True)
class Hop:
    """A SIP message of the capture: from ``src`` to ``dst``, its label starting with ``what`` (a method,
    a status, or more of the label: ``202``, ``INVITE``, ``503 Service Unavailable (INVITE)``)."""

    src: str
    dst: str
    what: str

    def seen(self, messages: Sequence[ladder.Message]) -> bool:
        return any(
            m.src == self.src and m.dst == self.dst and (m.label + " ").startswith(self.what + " ")
            for m in messages
        )

    def __str__(self) -> str:
        return f"{self.src}>{self.dst} {self.what}"


@dataclass(frozen=True)
class Fault:
    node: str
    action: str
    after_sip: tuple[Hop, ...] = ()
    ami_pbx: str = ""
    after_ami: tuple[Pattern, ...] = ()
    delay: float = 0.0
    before_sip: tuple[Hop, ...] = ()
    until: str = ""  # "", "down" or "up"
    until_timeout: float = 15.0
    release: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.action} {self.node}"

    def trigger(self) -> str:
        said = [str(h) for h in self.after_sip]
        said += [f"AMI {self.ami_pbx} " + ", ".join(f"{k}: {v}" for k, v in p) for p in self.after_ami]
        return " and ".join(said)


class Nodes(Protocol):
    """What a fault does to the lab's daemons (:mod:`referee_lab.services`; fakes in the unit tests)."""

    def kill(self, node: str) -> int | None: ...
    def start(self, node: str) -> int: ...
    def running(self, node: str) -> bool: ...


@dataclass(frozen=True)
class LabNodes:
    """The running lab's daemons, with the run's own state (so that it records the new PIDs too)."""

    run: Run

    def kill(self, node: str) -> int | None:
        return services.kill(node, self.run.state)

    def start(self, node: str) -> int:
        return services.start(node, self.run.topo, self.run.state)

    def running(self, node: str) -> bool:
        return services.running(node, self.run.state)


class Stopped(Exception):
    """The phones are done: the faults still to come are not done."""


@dataclass
class FaultsCheck:
    faults: tuple[Fault, ...]
    nodes_for: Callable[[Run], Nodes] = LabNodes
    # This run's: reset by start().
    _nodes: Nodes | None = field(default=None, init=False, repr=False, compare=False)
    _driver: threading.Thread | None = field(default=None, init=False, repr=False, compare=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _released: dict[str, threading.Event] = field(default_factory=dict, init=False, repr=False)
    _refused: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _killed: list[str] = field(default_factory=list, init=False, repr=False)
    _notes: list[str] = field(default_factory=list, init=False, repr=False)
    _problems: list[str] = field(default_factory=list, init=False, repr=False)

    def start(self, run: Run) -> None:
        self._nodes = self.nodes_for(run)
        self._stopping.clear()
        self._released = {p: threading.Event() for f in self.faults for p in f.release}
        self._refused, self._killed, self._notes, self._problems = {}, [], [], []
        for fault in self.faults:  # log in now: the AMI's events are recorded from before the phones call
            if fault.ami_pbx:
                run.ami(fault.ami_pbx)
        self._driver = threading.Thread(target=self.drive, args=(run,), name="faults", daemon=True)
        self._driver.start()

    def hold(self, run: Run, phone: str, timeout: float) -> str:
        """The runner asks before it starts each phone: those a fault releases wait for it."""
        released = self._released.get(phone)
        if released is None:
            return ""
        if not released.wait(timeout):
            return f"no fault released it within {timeout:.0f} s"
        return self._refused.get(phone, "")

    def drive(self, run: Run) -> None:
        """Steps 1-4 of the module docstring, fault after fault; the first that fails ends the drive."""
        began = time.monotonic()
        for number, fault in enumerate(self.faults, 1):
            try:
                self._do(run, fault, began)
            except Stopped:
                self._problems.append(f"fault {number} ({fault}): not done, the phones ended first")
            except (RuntimeError, ValueError, OSError) as exc:
                self._problems.append(f"fault {number} ({fault}): {exc}")
            else:
                for phone in fault.release:
                    self._released[phone].set()
                continue
            for phone, released in self._released.items():
                if not released.is_set():
                    self._refused[phone] = f"fault {number} ({fault}) was not done"
                    released.set()
            return

    def _do(self, run: Run, fault: Fault, began: float) -> None:
        nodes = self._nodes
        assert nodes is not None
        deadline = time.monotonic() + run.scenario.timeout
        if fault.after_sip and not self._wait(lambda: _sip_seen(run, fault.after_sip), deadline):
            raise RuntimeError(f"no {fault.trigger()} in the capture")
        if fault.after_ami and not self._wait(lambda: _ami_seen(run, fault), deadline):
            raise RuntimeError(f"no {fault.trigger()}")
        if self._stopping.wait(fault.delay):
            raise Stopped
        since = proxy_log.position(run.events_file)
        at = time.monotonic()
        after = f", after {fault.trigger()}" if fault.trigger() else ""
        if fault.action in ("kill", "restart"):
            pid = nodes.kill(fault.node)
            self._killed.append(fault.node)
            self._notes.append(f"fault: {fault.node} killed (pid {pid}) at {at - began:.1f} s{after}")
            self._in_time(run, fault)
        if fault.action in ("start", "restart"):
            pid = nodes.start(fault.node)
            self._notes.append(f"fault: {fault.node} started (pid {pid}) in {time.monotonic() - at:.1f} s")
            if fault.action == "start":
                self._in_time(run, fault)
        if fault.until:
            up = fault.until == "up"
            until = time.monotonic() + fault.until_timeout
            if not self._wait(lambda: _health(run, fault.node, up, since) is not None, until):
                raise RuntimeError(
                    f"the proxy did not report {fault.node} {fault.until} ({fault.until_timeout:.0f} s)"
                )
            what = "kill" if fault.action == "kill" else "start"
            took = time.monotonic() - at
            self._notes.append(
                f"fault: the proxy reported {fault.node} {fault.until} {took:.1f} s after the {what}"
            )
        if fault.release:
            self._notes.append(f"fault: released {', '.join(fault.release)}")

    def _in_time(self, run: Run, fault: Fault) -> None:
        if late := [str(h) for h in fault.before_sip if _sip_seen(run, [h])]:
            raise RuntimeError(f"too late: {', '.join(late)} already captured")

    def _wait(self, condition: Callable[[], bool], deadline: float) -> bool:
        """Poll ``condition`` until it holds (True) or ``deadline`` (False); Stopped once the phones ended."""
        while not condition():
            if self._stopping.is_set():
                raise Stopped
            if time.monotonic() > deadline:
                return False
            self._stopping.wait(POLL)
        return True

    def stop(self, run: Run) -> None:
        self._stopping.set()
        if self._driver is not None:
            self._driver.join(60)  # a start in progress waits for the node to listen
            if self._driver.is_alive():
                self._problems.append("faults: still busy after the phones ended")
                return
        for node in dict.fromkeys(self._killed):
            if self._nodes is not None and not self._nodes.running(node):
                try:
                    pid = self._nodes.start(node)
                except (RuntimeError, ValueError, OSError) as exc:
                    self._problems.append(f"faults: {node} left down, and it did not start again: {exc}")
                    continue
                self._notes.append(f"faults: {node} left down by the run, started again (pid {pid})")

    def problems(self, run: Run) -> list[str]:
        return list(self._problems)

    def notes(self, run: Run) -> list[str]:
        return list(self._notes)


def _sip_seen(run: Run, hops: Sequence[Hop]) -> bool:
    """Whether the capture so far holds each of ``hops`` (tcpdump writes it packet by packet)."""
    try:
        messages = ladder.read_pcap(run.pcap, run.topo.node_names())
    except Exception:  # a packet half written: look again at the next poll
        return False
    return all(hop.seen(messages) for hop in hops)


def _ami_seen(run: Run, fault: Fault) -> bool:
    return run.ami(fault.ami_pbx).wait_for([dict(p) for p in fault.after_ami], 0) is not None


def _health(run: Run, pbx: str, up: bool, since: proxy_log.Position) -> PbxHealth | None:
    """The proxy's first ``pbx.health`` event saying ``pbx`` is up (or down) written after ``since``."""
    return next(
        (
            e
            for e in proxy_log.read(run.events_file, since)
            if isinstance(e, PbxHealth) and e.pbx == pbx and e.up == up
        ),
        None,
    )


def _hop(scenario: str, raw: object) -> Hop:
    found = _HOP.fullmatch(str(raw))
    if found is None:
        raise ValueError(
            f'scenario {scenario}: [[faults]] after_sip takes "SRC>DST WHAT" ("pbx1>proxy 202"), not {raw!r}'
        )
    return Hop(*found.groups())


def _fault(scenario: str, raw: Mapping[str, Any], phones: Sequence[str]) -> Fault:
    if unknown := sorted(set(raw) - set(KEYS)):
        raise ValueError(f"scenario {scenario}: [[faults]] does not know {', '.join(unknown)}")
    node, action, until = str(raw.get("node", "")), str(raw.get("action", "")), str(raw.get("until", ""))
    if node not in services.NODES:
        raise ValueError(f"scenario {scenario}: [[faults]] node must be one of {', '.join(services.NODES)}")
    if action not in ACTIONS:
        raise ValueError(f"scenario {scenario}: [[faults]] action must be one of {', '.join(ACTIONS)}")
    if until and (until not in ("down", "up") or node not in PBXS):
        raise ValueError(
            f"scenario {scenario}: [[faults]] until is down or up, for a PBX ({', '.join(PBXS)})"
        )
    release = tuple(str(p) for p in raw.get("release", ()))
    if unknown_phones := [p for p in release if p not in phones]:
        raise ValueError(
            f"scenario {scenario}: [[faults]] releases no phone of the file: {', '.join(unknown_phones)}"
        )
    ami_pbx, after_ami = "", tuple[Pattern, ...]()
    if (ami := raw.get("after_ami")) is not None:
        if not isinstance(ami, dict) or ami.get("pbx") not in PBXS:
            raise ValueError(f"scenario {scenario}: [[faults]] after_ami needs a pbx and `when`")
        ami_pbx, after_ami = str(ami["pbx"]), patterns(scenario, "[[faults]] after_ami", ami.get("when"))
    return Fault(
        node=node,
        action=action,
        after_sip=tuple(_hop(scenario, h) for h in raw.get("after_sip", ())),
        ami_pbx=ami_pbx,
        after_ami=after_ami,
        delay=float(raw.get("delay", 0)),
        before_sip=tuple(_hop(scenario, h) for h in raw.get("before_sip", ())),
        until=until,
        until_timeout=float(raw.get("until_timeout", 15)),
        release=release,
    )


def load(scenario: str, data: Mapping[str, Any]) -> FaultsCheck | None:
    raw = data.get("faults")
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"scenario {scenario}: faults are [[faults]] tables")
    phones = [str(p.get("file") or p.get("role", "")).removesuffix(".xml") for p in data.get("phones", ())]
    return FaultsCheck(faults=tuple(_fault(scenario, f, phones) for f in raw))
