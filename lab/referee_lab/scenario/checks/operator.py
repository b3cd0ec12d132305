"""``[operator]`` in scenario.toml: a transfer an operator drives through the orchestrator's HTTP API.

For such a scenario the check uses the PBX host's orchestrator (the lab runs one per PBX, see
:mod:`referee_lab.hosts`), waits until it reports the PBX connected, and, from a thread beside the phones:

1. waits until the PBX has reported the ``when`` events over AMI (the call to transfer is bridged);
2. ``POST /transfers`` (``flow``, ``pbx``, ``channel``, ``exten``, ``context``); a 404 or 409 (the
   orchestrator has not seen the channel or its bridge yet: it reads the same events) is asked again;
3. attended: once ``GET /transfers/{id}`` says ``answered``, ``POST /transfers/{id}/complete``;
4. waits for a final state.

After the phones ``referee transfers show ID --json --db <the site's audit database>`` must show the
transfer in ``record_state`` with the ``flow`` asked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from referee.api.client import ApiError, ApiUnreachable
from referee.events import FINAL_STATES
from referee_lab.scenario.checks.ami import Pattern, patterns
from referee_lab.scenario.context import Run
from referee_lab.scenario.orchestrator import Orchestrator

OWNS = ("operator",)


@dataclass
class Outcome:
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    transfer_id: int | None = None


@dataclass
class OperatorCheck:
    pbx: str
    flow: str
    channel: str
    exten: str
    when: tuple[Pattern, ...]
    context: str = "referee-transfer"
    record_state: str = "completed"
    # This run's: reset by start().
    _orchestrator: Orchestrator | None = field(default=None, init=False, repr=False, compare=False)
    _driver: threading.Thread | None = field(default=None, init=False, repr=False, compare=False)
    _outcome: Outcome = field(default_factory=Outcome, init=False, repr=False, compare=False)

    def start(self, run: Run) -> None:
        self._driver, self._outcome = None, Outcome()
        recorder = run.ami(self.pbx)
        self._orchestrator = orchestrator = Orchestrator(run, self.pbx)
        orchestrator.ready()

        def _drive() -> None:
            result = drive(self, recorder.wait_for, orchestrator.api, run.scenario.timeout)
            self._outcome.notes[:], self._outcome.problems[:] = result.notes, result.problems
            self._outcome.transfer_id = result.transfer_id

        self._driver = threading.Thread(target=_drive, name="operator", daemon=True)
        self._driver.start()

    def stop(self, run: Run) -> None:
        out = self._outcome
        if self._driver is not None:
            self._driver.join(15)
            if self._driver.is_alive():
                out.problems.append("operator: still driving the transfer after the phones ended")
        if self._orchestrator is None or out.transfer_id is None:
            return
        try:
            record = self._orchestrator.record(out.transfer_id)
        except (RuntimeError, ValueError) as exc:
            out.problems.append(f"audit: {exc}")
            return
        out.problems += record_problems(self, out.transfer_id, record)
        out.notes.append(
            f"audit: record {record.get('id')} {record.get('flow')} {record.get('origin')} "
            f"{record.get('state')} {record.get('result') or ''}".rstrip()
        )

    def problems(self, run: Run) -> list[str]:
        return list(self._outcome.problems)

    def notes(self, run: Run) -> list[str]:
        return list(self._outcome.notes)


def load(scenario: str, data: Mapping[str, Any]) -> OperatorCheck | None:
    """The ``[operator]`` table."""
    raw = data.get("operator")
    if raw is None:
        return None
    missing = [k for k in ("pbx", "flow", "channel", "exten", "when") if k not in raw]
    if missing:
        raise ValueError(f"scenario {scenario}: [operator] needs {', '.join(missing)}")
    if raw["flow"] not in ("blind", "attended"):
        raise ValueError(f"scenario {scenario}: [operator] flow must be blind or attended")
    return OperatorCheck(
        pbx=str(raw["pbx"]),
        flow=str(raw["flow"]),
        channel=str(raw["channel"]),
        exten=str(raw["exten"]),
        when=patterns(scenario, "[operator]", raw["when"]),
        context=str(raw.get("context", "referee-transfer")),
        record_state=str(raw.get("record_state", "completed")),
    )


Api = Callable[[str, str, dict[str, Any] | None], dict[str, Any]]


def _state(answer: Mapping[str, Any]) -> str:
    live = answer.get("live")
    return str(live["state"] if isinstance(live, dict) else answer.get("state", ""))


def _wait_state(api: Api, transfer_id: int, wanted: frozenset[str], deadline: float) -> str:
    state = ""
    while time.monotonic() < deadline:
        state = _state(api("GET", f"/transfers/{transfer_id}", None))
        if state in wanted:
            return state
        time.sleep(0.1)
    return state


def drive(
    spec: OperatorCheck,
    wait_for: Callable[[Sequence[Mapping[str, str]], float], Mapping[str, str] | None],
    api: Api,
    timeout: float,
) -> Outcome:
    """Steps 1-4 of the module docstring; what happened in ``notes``, what went wrong in ``problems``."""
    out = Outcome()
    deadline = time.monotonic() + timeout
    when = [dict(p) for p in spec.when]
    if wait_for(when, timeout) is None:
        shown = " and ".join(", ".join(f"{k}: {v}" for k, v in p.items()) for p in when)
        out.problems.append(f"operator: no AMI event {shown} on {spec.pbx}: no transfer asked")
        return out
    body = {"flow": spec.flow, "pbx": spec.pbx, "channel": spec.channel, "exten": spec.exten}
    body["context"] = spec.context
    post_deadline = min(deadline, time.monotonic() + 10)
    try:
        while True:
            try:
                answer = api("POST", "/transfers", body)
                break
            except ApiError as exc:
                if exc.status in (404, 409) and time.monotonic() < post_deadline:
                    time.sleep(0.1)
                    continue
                out.problems.append(f"operator: POST /transfers: {exc.status} {exc.message}")
                return out
        out.transfer_id = int(answer["id"])
        out.notes.append(
            f"operator: POST /transfers {spec.flow} {spec.channel} -> {spec.exten}: "
            f"transfer {out.transfer_id} {answer.get('state')}"
        )
        if spec.flow == "attended":
            state = _wait_state(api, out.transfer_id, FINAL_STATES | {"answered"}, deadline)
            if state != "answered":
                out.problems.append(
                    f"operator: transfer {out.transfer_id} {state or 'unknown'}, not answered"
                )
                return out
            done = api("POST", f"/transfers/{out.transfer_id}/complete", None)
            out.notes.append(f"operator: POST /transfers/{out.transfer_id}/complete: {done.get('state')}")
        state = _wait_state(api, out.transfer_id, FINAL_STATES, deadline)
        out.notes.append(f"operator: transfer {out.transfer_id} ended {state or 'unknown'}")
    except ApiError as exc:
        out.problems.append(f"operator: {exc.status} {exc.message}")
    except ApiUnreachable as exc:
        out.problems.append(f"operator: {exc}")
    return out


def record_problems(spec: OperatorCheck, transfer_id: int, record: Mapping[str, Any]) -> list[str]:
    """The audit record of the operator's transfer, as ``referee transfers show ID --json`` prints it."""
    if record.get("id") != transfer_id:
        return [f"audit: no record {transfer_id}"]
    problems = []
    if record.get("state") != spec.record_state:
        problems.append(f"audit: record {transfer_id} is {record.get('state')}, expected {spec.record_state}")
    if record.get("flow") != spec.flow:
        problems.append(f"audit: record {transfer_id} flow {record.get('flow')}, expected {spec.flow}")
    return problems
