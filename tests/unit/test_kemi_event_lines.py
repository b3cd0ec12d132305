"""The hot path's event lines (referee.kemi.event_log) are events.to_json's, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from referee import events
from referee.kemi.event_log import EventLog, decision_line, response_line

DATA = Path(__file__).parent / "data" / "proxy"

DECISIONS = [
    events.ReferDecision(
        time=1764614400.123456,
        call_id="abc@127.0.1.32",
        cseq=2,
        referrer="sip:1002@lab.test",
        src="127.0.1.32",
        allowed=True,
        status=202,
        reason="Accepted",
        rule="extension",
        refer_to="<sip:1003@lab.test>",
        forwarded_refer_to="<sip:1003@127.0.1.20:5060>",
        decision={"target": "sip:1003@127.0.1.20:5060", "tenant": "lab.test", "replaces": None},
        policy_version="v1",
    ),
    # refused before the policy: no summary, no Refer-To; quotes, controls, non-ASCII and a NUL to escape
    events.ReferDecision(
        time=5,
        call_id='q"uo\\te\x00\r\n',
        cseq=0,
        referrer="sip:ünï@lab.test",
        src="",
        allowed=False,
        status=400,
        reason="Missing Refer-To \u2028",
        rule="bad-input",
        subscription=False,
        replaces_pbx="pbx2",
    ),
    events.ReferDecision(
        time=1.5,
        call_id="c",
        cseq=1,
        referrer="",
        src="s",
        allowed=False,
        status=403,
        reason="No",
        rule="r",
        decision={"trace": [{"rule": "a", "matched": False}], "nested": {"k": [1, 2.5, None]}},
    ),
    # a summary naming a copied field: to_dict's merge decides, the fast line must too
    events.ReferDecision(
        time=1.0,
        call_id="c",
        cseq=1,
        referrer="",
        src="",
        allowed=True,
        status=202,
        reason="A",
        rule="r",
        decision={"status": 1, "x": 2},
    ),
]

RESPONSES = [
    events.ReferResponse(1764614400.5, "abc@127.0.1.32", 2, 202),
    events.ReferResponse(7, 'é"\x01', 3, 408, "Request Timeout", local=True),
    events.ReferResponse(7.25, "c", 3, 202, subscription=False),
]


def recorded() -> list[events.Event]:
    lines = [line for path in sorted(DATA.glob("*.jsonl")) for line in path.read_text().splitlines() if line]
    found = [events.from_dict(json.loads(line)) for line in lines]
    return [e for e in found if isinstance(e, (events.ReferDecision, events.ReferResponse))]


@pytest.mark.parametrize("event", DECISIONS)
def test_decision_line_is_to_json(event: events.ReferDecision) -> None:
    assert decision_line(event) == events.to_json(event)


@pytest.mark.parametrize("event", RESPONSES)
def test_response_line_is_to_json(event: events.ReferResponse) -> None:
    assert response_line(event) == events.to_json(event)


def test_recorded_proxy_events_encode_alike() -> None:
    found = recorded()
    assert any(isinstance(e, events.ReferDecision) for e in found)
    assert any(isinstance(e, events.ReferResponse) for e in found)
    for event in found:
        fast = decision_line(event) if isinstance(event, events.ReferDecision) else response_line(event)
        assert fast == events.to_json(event)


def test_event_log_writes_the_same_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(str(path))
    written: list[events.Event] = [*DECISIONS, *RESPONSES, events.PbxHealth(1.0, "pbx1", "sip:x", True)]
    for event in written:
        log.write(event)
    assert path.read_bytes() == b"".join(
        (events.to_json(e) + "\n").encode("utf-8", "replace") for e in written
    )
