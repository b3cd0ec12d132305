"""referee.events: every event kind survives its JSON form, and every bad line is refused with its reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from referee.events import (
    FINAL_STATES,
    KINDS,
    MAX_LINE,
    BadEvent,
    Event,
    NotifyOutcome,
    OperatorAction,
    PbxEvent,
    PbxHealth,
    ProxyReply,
    ReferDecision,
    ReferResponse,
    State,
    TransferMove,
    from_dict,
    from_json,
    to_json,
)

PROXY_DATA = Path(__file__).resolve().parent / "data" / "proxy"

EXAMPLES: list[Event] = [
    ReferDecision(
        time=1.5,
        call_id="c1@h",
        cseq=7,
        referrer="sip:1002@lab.test",
        src="127.0.1.32",
        allowed=True,
        status=202,
        reason="Accepted",
        rule="pbx1-extensions",
        refer_to="<sip:1003@lab.test>",
        forwarded_refer_to="<sip:1003@127.0.0.20:5060>",
        decision={"tenant": "lab.test", "replaces": None},
    ),
    ReferDecision(
        time=2.0,
        call_id="c2@h",
        cseq=3,
        referrer="sip:1002@lab.test",
        src="127.0.1.32",
        allowed=False,
        status=481,
        reason="Replaced Dialog Unknown",
        rule="replaces-unknown",
        subscription=False,
        replaces_pbx="pbx1",
    ),
    ReferResponse(time=3.0, call_id="c1@h", cseq=7, status=202),
    ReferResponse(time=3.5, call_id="c1@h", cseq=7, status=408, reason="Request Timeout", local=True),
    NotifyOutcome(
        time=4.0,
        call_id="c1@h",
        cseq=12,
        refer_cseq=7,
        subscription_state="terminated;reason=noresource",
        status=200,
        reason="OK",
    ),
    NotifyOutcome(time=4.5, call_id="c1@h", cseq=13, refer_cseq=None, error="no message/sipfrag body"),
    PbxEvent(time=5.0, pbx="pbx1", name="BlindTransfer", fields={"Result": "Success", "IsExternal": "Yes"}),
    OperatorAction(
        time=6.0,
        pbx="pbx1",
        action={"Action": "Atxfer", "Channel": "PJSIP/1002-00000001"},
        response="Error",
        message="No such channel",
    ),
    OperatorAction(time=6.5, pbx="pbx1", action={"Action": "Hangup"}, error="PBX pbx1 is not connected"),
    TransferMove(time=7.0, transfer_id=4, before=State.RINGBACK, after=State.COMPLETED, cause="BridgeEnter"),
    TransferMove(
        time=7.5,
        transfer_id=4,
        before=None,
        after=State.FAILED,
        cause="refer.decision",
        result="rejected 403",
    ),
    ReferResponse(time=8.0, call_id="c1@h", cseq=8, status=200, reason="OK", subscription=False),
    PbxHealth(time=8.0, pbx="pbx1", uri="sip:127.0.0.20:5060", up=False),
    ProxyReply(9.0, "INVITE", 503, "Service Unavailable", "c3@h", 1, pbx="pbx1", src="127.0.1.32"),
    ProxyReply(9.5, "BYE", 500, "Server Internal Error", "c4@h"),
]


def test_the_examples_cover_every_kind() -> None:
    assert {e.kind for e in EXAMPLES} == set(KINDS)


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: f"{e.kind}")
def test_every_kind_round_trips(event: Event) -> None:
    line = to_json(event)
    assert "\n" not in line
    assert from_json(line) == event
    assert from_json(line.encode()) == event
    assert from_dict(event.to_dict()) == event
    assert json.loads(line)["event"] == event.kind


def decision(**changes: Any) -> dict[str, Any]:
    raw = EXAMPLES[0].to_dict()
    raw.update(changes)
    return raw


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({k: v for k, v in decision().items() if k != "call_id"}, "no call_id"),
        ({k: v for k, v in decision().items() if k != "time"}, "no time"),
        (decision(decision={"status": 202}), "no allowed"),
        (decision(call_id=17), "call_id is not a string"),
        (decision(cseq="seven"), "cseq is not a number"),
        (decision(cseq=True), "cseq is not a number"),
        (decision(time="now"), "time is not a number"),
        (decision(decision="allowed"), "decision is not an object"),
        (decision(decision={"allowed": "yes", "status": 202}), "allowed is not true or false"),
        ({**EXAMPLES[6].to_dict(), "fields": {"Result": 1}}, "fields: not every value is a string"),
        ({**EXAMPLES[7].to_dict(), "action": {"Action": None}}, "action: not every value is a string"),
        ({**EXAMPLES[9].to_dict(), "after": "lost"}, "'lost' is not a valid State"),
        (decision(event="refer.maybe"), "unknown event kind 'refer.maybe'"),
        ({k: v for k, v in decision().items() if k != "event"}, "no event kind"),
        (decision(decision={"allowed": False, "status": 99}), "status 99 is not a SIP status"),
        ({**EXAMPLES[2].to_dict(), "status": 700}, "status 700 is not a SIP status"),
        ({**EXAMPLES[4].to_dict(), "status": 42}, "status 42 is not a SIP status"),
    ],
)
def test_a_bad_mapping_is_refused_with_its_reason(raw: dict[str, Any], reason: str) -> None:
    with pytest.raises(BadEvent) as refused:
        from_dict(raw)
    assert str(refused.value) == reason
    with pytest.raises(BadEvent) as refused_line:
        from_json(json.dumps(raw))
    assert str(refused_line.value) == reason


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "not JSON (Expecting value)"),
        ('{"event": "refer.response",', "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('"refer.decision"', "not a JSON object"),
        (b"\xff\xfe{}", "not UTF-8"),
        ("[" * 100000, f"line longer than {MAX_LINE} characters"),
        ('{"event": "refer.response", "x": "' + "y" * MAX_LINE + '"}', "line longer than"),
    ],
)
def test_a_bad_line_is_refused_with_its_reason(line: str | bytes, reason: str) -> None:
    with pytest.raises(BadEvent, match=reason.replace("(", r"\(").replace(")", r"\)")):
        from_json(line)


def test_a_line_nested_too_deeply_is_refused() -> None:
    with pytest.raises(BadEvent, match="nested too deeply"):
        from_json("[" * 20000 + "]" * 20000)


def test_cseqs_written_as_digits_are_numbers() -> None:
    event = from_dict(decision(cseq="7"))
    assert isinstance(event, ReferDecision) and event.cseq == 7
    outcome = from_dict({**EXAMPLES[4].to_dict(), "refer_cseq": ""})
    assert isinstance(outcome, NotifyOutcome) and outcome.refer_cseq is None


@pytest.mark.parametrize("path", sorted(PROXY_DATA.glob("*.jsonl")), ids=lambda p: p.name)
def test_every_recorded_proxy_line_parses(path: Path) -> None:
    lines = path.read_text().splitlines()
    assert lines
    for line in lines:
        event = from_json(line)
        assert event.kind == json.loads(line)["event"]
        assert event.kind in ("refer.decision", "refer.response", "refer.outcome")
        assert from_json(to_json(event)) == event


def test_a_recorded_decision_reads_its_target_and_flow() -> None:
    (line, *_) = (PROXY_DATA / "recorded_attended_refer.jsonl").read_text().splitlines()
    event = from_json(line)
    assert isinstance(event, ReferDecision)
    assert (event.allowed, event.status, event.rule, event.replaces) == (True, 202, "pbx1-extensions", True)
    assert event.target is not None and event.target.startswith("<sip:1003@127.0.0.20:5060?Replaces=")


def test_final_states() -> None:
    assert {s for s in State if s.final} == FINAL_STATES
    assert not State.RINGBACK.final


def test_a_move_describes_itself() -> None:
    assert EXAMPLES[9].describe() == "transfer 4: ringback -> completed on BridgeEnter"  # type: ignore[union-attr]
    assert EXAMPLES[10].describe() == "transfer 4: opened failed on refer.decision"  # type: ignore[union-attr]


def test_a_response_without_refer_sub_false_keeps_the_subscription() -> None:
    line = '{"time":1,"event":"refer.response","call_id":"c","cseq":2,"status":202}'
    assert from_json(line) == ReferResponse(1.0, "c", 2, 202, subscription=True)
    assert "subscription" not in to_json(ReferResponse(1.0, "c", 2, 202))
    assert '"subscription":false' in to_json(ReferResponse(1.0, "c", 2, 200, subscription=False))
