"""AMI, per PBX: events the PBX must report during the run (``[[expect.ami]]``) and actions the runner
sends it once it reported given events (``[[actions.ami]]``).

``[[expect.ami]]``: ``pbx``, ``match`` (the fields that find the event: ``{ Event = "BlindTransfer" }``)
and ``carry`` (the fields the event found must have to pass: ``{ Result = "Success" }``), so a failure
says what the PBX did report ("Event: BlindTransfer found, Result was Fail") rather than that nothing
matched. A value ``prefix*`` matches by prefix (:func:`referee_lab.ami.matches`).

``[[actions.ami]]``: ``pbx``, ``when`` (an event pattern or a list of them: the events to wait for),
``delay`` (seconds after them, default 0) and the action's own fields (``Action = "BlindTransfer"``,
``Channel = "{Channel}"``: ``{Field}`` is filled in from the event matching the first pattern). The PBX
must answer each action ``Success``.

The runner logs in to each PBX named here (from the PBX's own address) before the phones call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from referee.orchestrator.amitext import AmiMessage
from referee_lab import ami
from referee_lab.scenario.context import Run

OWNS = ("expect.ami", "actions.ami")

Pattern = tuple[tuple[str, str], ...]


def _shown(fields: Pattern) -> str:
    return ", ".join(f"{k}: {v}" for k, v in fields)


@dataclass(frozen=True)
class Expectation:
    pbx: str
    match: Pattern
    carry: Pattern = ()

    def problem(self, events: Sequence[AmiMessage]) -> str:
        """What is wrong with the PBX's events (empty when one is found and carries every field)."""
        found = [e for e in events if ami.matches(e, dict(self.match))]
        if not found:
            return f"no AMI event on {self.pbx} with {_shown(self.match)}"
        if any(ami.matches(e, dict(self.carry)) for e in found):
            return ""

        def wrong(event: AmiMessage) -> list[str]:
            return [k for k, v in self.carry if not ami.matches(event, {k: v})]

        nearest = min(reversed(found), key=lambda e: len(wrong(e)))  # fewest wrong fields, else the last
        was = ", ".join(f"{k} was {nearest.get(k, 'missing')}" for k in wrong(nearest))
        many = f" ({len(found)} such events, the nearest)" if len(found) > 1 else ""
        return f"AMI {self.pbx}: {_shown(self.match)} found{many}, {was}; expected {_shown(self.carry)}"


@dataclass(frozen=True)
class AmiCheck:
    expectations: tuple[Expectation, ...] = ()
    actions: tuple[ami.Action, ...] = ()

    @property
    def pbxs(self) -> list[str]:
        return list(dict.fromkeys([a.pbx for a in self.actions] + [e.pbx for e in self.expectations]))

    def start(self, run: Run) -> None:
        for pbx in self.pbxs:
            run.ami(pbx).schedule([a for a in self.actions if a.pbx == pbx])

    def stop(self, run: Run) -> None:
        pass  # the run closes the AMI connections its checks share, once every check stopped

    def problems(self, run: Run) -> list[str]:
        problems = []
        for pbx in dict.fromkeys(a.pbx for a in self.actions):
            recorder = run.recorders[pbx]
            problems += ami.action_problems(pbx, recorder.sent, recorder.unsent, recorder.errors)
        return problems + self.unmet(run.ami_events)

    def unmet(self, events: Mapping[str, Sequence[AmiMessage]]) -> list[str]:
        return [p for e in self.expectations if (p := e.problem(events.get(e.pbx, ())))]

    def notes(self, run: Run) -> list[str]:
        notes = []
        for pbx in self.pbxs:
            notes += [
                f"AMI {pbx}: {e['Event']} {e.get('Result', '')} "
                f"{e.get('TransferTargetChannel') or e.get('Extension', '')}"
                for e in run.ami_events.get(pbx, ())
                if e.get("Event") in ("AttendedTransfer", "BlindTransfer")
            ]
            notes += [
                f"AMI {pbx}: sent {s.action.get('Action')} "
                + " ".join(f"{k}={v}" for k, v in s.action.items() if k not in ("Action", "ActionID"))
                + f": {s.response.get('Response', 'no response')} {s.response.get('Message', '')}".rstrip()
                for s in run.recorders[pbx].sent
            ]
        return notes


def patterns(scenario: str, table: str, when: object) -> tuple[Pattern, ...]:
    """``when``: one event pattern (a table) or a list of them."""
    found = [when] if isinstance(when, dict) else when
    if not found or not isinstance(found, list) or not all(isinstance(p, dict) for p in found):
        raise ValueError(f"scenario {scenario}: {table} needs `when`, the event(s) to wait for")
    return tuple(_pattern(p) for p in found)


def _pattern(raw: Mapping[str, Any]) -> Pattern:
    return tuple((str(k), str(v)) for k, v in raw.items())


def _expectation(scenario: str, raw: Mapping[str, Any]) -> Expectation:
    if unknown := sorted(set(raw) - {"pbx", "match", "carry"}):
        raise ValueError(
            f"scenario {scenario}: [[expect.ami]] takes pbx, match and carry, not {', '.join(unknown)} "
            '(match = { Event = "BlindTransfer" }, carry = { Result = "Success" })'
        )
    match, carry = raw.get("match"), raw.get("carry", {})
    if "pbx" not in raw or not isinstance(match, dict) or not match or not isinstance(carry, dict):
        raise ValueError(f"scenario {scenario}: [[expect.ami]] needs `pbx` and a `match` table")
    return Expectation(pbx=str(raw["pbx"]), match=_pattern(match), carry=_pattern(carry))


def _action(scenario: str, raw: Mapping[str, Any]) -> ami.Action:
    when = patterns(scenario, "an [[actions.ami]]", raw.get("when"))
    fields = {str(k): str(v) for k, v in raw.items() if k not in ("pbx", "when", "delay")}
    if "pbx" not in raw or "Action" not in fields:
        raise ValueError(f"scenario {scenario}: an [[actions.ami]] needs `pbx` and `Action`")
    return ami.Action(
        pbx=str(raw["pbx"]), when=when, fields=tuple(fields.items()), delay=float(str(raw.get("delay", 0)))
    )


def load(scenario: str, data: Mapping[str, Any]) -> AmiCheck | None:
    expected = data.get("expect", {}).get("ami", ())
    actions = data.get("actions", {}).get("ami", ())
    if not expected and not actions:
        return None
    return AmiCheck(
        expectations=tuple(_expectation(scenario, e) for e in expected),
        actions=tuple(_action(scenario, a) for a in actions),
    )
