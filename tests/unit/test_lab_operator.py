"""``[operator]``: a transfer the runner drives through the orchestrator's API. No root, no lab needed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from lab_fixtures import load_scenario

from referee.api.client import ApiError
from referee_lab.scenario.checks import operator
from referee_lab.scenario.checks.operator import OperatorCheck

RAW = {
    "pbx": "pbx1",
    "flow": "attended",
    "channel": "PJSIP/1002",
    "exten": "1003",
    "when": [{"Event": "BridgeEnter", "Channel": "PJSIP/1002-*"}],
}
SPEC = operator.load("t", {"operator": RAW})

assert SPEC is not None


def _load(raw: dict[str, Any]) -> OperatorCheck:
    loaded = operator.load("t", {"operator": raw})
    assert loaded is not None
    return loaded


def test_load_checks_the_table() -> None:
    assert SPEC.when == ((("Event", "BridgeEnter"), ("Channel", "PJSIP/1002-*")),)
    assert (SPEC.context, SPEC.record_state) == ("referee-transfer", "completed")
    with pytest.raises(ValueError, match="needs exten"):
        operator.load("t", {"operator": {k: v for k, v in RAW.items() if k != "exten"}})
    with pytest.raises(ValueError, match="blind or attended"):
        operator.load("t", {"operator": {**RAW, "flow": "threeway"}})
    assert _load({**RAW, "when": {"Event": "DialEnd"}}).when == ((("Event", "DialEnd"),),)


def test_scenario_toml_operator_table(tmp_path: Path) -> None:
    tables = (
        '[operator]\npbx = "pbx1"\nflow = "blind"\nchannel = "PJSIP/1002"\n'
        'exten = "1003"\nwhen = { Event = "BridgeEnter" }\nrecord_state = "failed"\n'
    )
    loaded = load_scenario(tmp_path, tables).check(OperatorCheck)
    assert loaded is not None
    assert (loaded.flow, loaded.record_state) == ("blind", "failed")


class FakeApi:
    """The orchestrator's API as the driver sees it: a 404 first (the channel not seen yet), then the
    transfer through ``states``, one per GET."""

    def __init__(self, states: list[str]) -> None:
        self.states = states
        self.calls: list[tuple[str, str, dict[str, Any] | None]] = []
        self.refused_once = False

    def __call__(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        self.calls.append((method, path, body))
        if path == "/transfers":
            if not self.refused_once:
                self.refused_once = True
                raise ApiError(404, "no channel 'PJSIP/1002' on pbx1", {})
            return {"id": 7, "state": "starting"}
        if path.endswith("/complete"):
            self.states = ["completed"]
            return {"id": 7, "state": "answered"}
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {"id": 7, "state": state, "live": {"state": state}}


def _seen(patterns: Sequence[Mapping[str, str]], timeout: float) -> Mapping[str, str] | None:
    return {"Event": "BridgeEnter"}


def test_drive_attended_asks_again_after_a_404_completes_once_answered() -> None:
    api = FakeApi(["starting", "ringback", "answered"])
    out = operator.drive(SPEC, _seen, api, timeout=10)
    assert out.problems == []
    assert out.transfer_id == 7
    posts = [(path, body) for method, path, body in api.calls if method == "POST"]
    assert posts == [
        (
            "/transfers",
            {**{k: RAW[k] for k in ("flow", "pbx", "channel", "exten")}, "context": "referee-transfer"},
        ),
    ] * 2 + [("/transfers/7/complete", None)]
    assert out.notes[-1] == "operator: transfer 7 ended completed"


def test_drive_reports_a_transfer_that_never_got_answered() -> None:
    out = operator.drive(SPEC, _seen, FakeApi(["starting", "failed"]), timeout=10)
    assert out.problems == ["operator: transfer 7 failed, not answered"]


def test_drive_asks_nothing_without_the_events() -> None:
    api = FakeApi(["answered"])
    out = operator.drive(SPEC, lambda patterns, timeout: None, api, timeout=1)
    assert api.calls == []
    assert out.problems == [
        "operator: no AMI event Event: BridgeEnter, Channel: PJSIP/1002-* on pbx1: no transfer asked"
    ]


def test_record_problems() -> None:
    record = {"id": 7, "flow": "attended", "state": "completed"}
    assert operator.record_problems(SPEC, 7, record) == []
    assert operator.record_problems(SPEC, 7, {**record, "state": "failed"}) == [
        "audit: record 7 is failed, expected completed"
    ]
    assert operator.record_problems(SPEC, 8, record) == ["audit: no record 8"]
