"""Ingest of the proxy's JSON-lines events (in the exact format referee.kemi writes them) through the
correlator, and the file follower."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from referee.audit import open_store
from referee.audit.correlate import Correlator
from referee.audit.ingest import EventFileIngest
from referee.audit.store import AuditStore
from referee.events import NotifyOutcome, PbxEvent, ReferDecision, ReferResponse, State, to_json
from referee.kemi import make_handler
from referee.testing.fake_ksr import FakeKSR

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "policy.toml")
CALL_ID = "bob-pbx1-dialog@127.0.1.32"


def refer(target: str, cseq: int) -> str:
    return (
        "REFER sip:1001@127.0.0.20:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.1.32:5060;branch=z9hG4bK-r" + str(cseq) + "\r\n"
        "Route: <sip:127.0.1.10;lr>\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:1002@lab.test>;tag=bob1\r\n"
        "To: <sip:1001@lab.test>;tag=pbx1\r\n"
        f"Call-ID: {CALL_ID}\r\n"
        f"CSeq: {cseq} REFER\r\n"
        "Contact: <sip:1002@127.0.1.32:5060>\r\n"
        f"Refer-To: {target}\r\n"
        "Content-Length: 0\r\n\r\n"
    )


def notify(cseq: int, refer_cseq: int, status_line: str, state: str) -> str:
    body = status_line + "\r\n"
    return (
        "NOTIFY sip:1002@127.0.1.32:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.20:5060;branch=z9hG4bK-n" + str(cseq) + "\r\n"
        "Route: <sip:127.0.1.10;lr>\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:1001@lab.test>;tag=pbx1\r\n"
        "To: <sip:1002@lab.test>;tag=bob1\r\n"
        f"Call-ID: {CALL_ID}\r\n"
        f"CSeq: {cseq} NOTIFY\r\n"
        f"Event: refer;id={refer_cseq}\r\n"
        f"Subscription-State: {state}\r\n"
        "Content-Type: message/sipfrag;version=2.0\r\n"
        f"Content-Length: {len(body)}\r\n\r\n" + body
    )


@pytest.fixture
def proxy(tmp_path: Path) -> tuple[FakeKSR, Path]:
    events = tmp_path / "events.jsonl"
    ksr = FakeKSR(
        defines={
            "REFEREE_POLICY": EXAMPLE,
            "REFEREE_EVENTS": str(events),
            "REFEREE_DOMAIN": "lab.test",
            "REFEREE_PBXS": "pbx1=sip:127.0.0.20:5060",
            "REFEREE_USERS": "1002:pw:pbx1",
        }
    )
    return ksr, events


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    return open_store(str(tmp_path / "audit.db"), clock=soon)


def soon() -> float:
    """The audit's clock a few seconds after the events below: no transfer has waited too long."""
    return 10.0


def test_real_kemi_events_make_one_record_with_notifies_in_cseq_order(
    proxy: tuple[FakeKSR, Path], store: AuditStore
) -> None:
    ksr, events = proxy
    handler = make_handler(ksr)  # type: ignore[arg-type]
    handler.ksr_request_route(ksr.request(refer("<sip:1003@lab.test>", 7), src_ip="127.0.1.32"))
    assert ksr.relays, ksr.replies  # allowed and relayed
    # A multi-worker proxy logged them out of order: the final 200 first, then 100, then 180.
    for cseq, line, state in [
        (12, "SIP/2.0 200 OK", "terminated;reason=noresource"),
        (10, "SIP/2.0 100 Trying", "active;expires=60"),
        (11, "SIP/2.0 180 Ringing", "active;expires=60"),
    ]:
        handler.ksr_request_route(ksr.request(notify(cseq, 7, line, state), src_ip="127.0.0.20"))
    ingest = EventFileIngest(store, str(events))
    assert ingest.poll() == 4
    assert ingest.bad == 0
    (record,) = store.records()
    full = store.get(record.id)
    assert full is not None
    assert (full.call_id, full.refer_cseq, full.origin, full.flow) == (CALL_ID, "7", "refer", "blind")
    assert full.state == "completed"
    assert full.result == "NOTIFY 200 OK"
    assert full.parties["referrer"] == "sip:1002@lab.test"
    assert full.parties["target"] == "<sip:1003@127.0.0.20:5060>"
    assert [e.status for e in full.notify_outcomes()] == [100, 180, 200]
    ladder = [(e.kind, e.cseq) for e in full.ladder() if e.source in ("proxy", "notify")]
    assert ladder == [
        ("refer.decision", None),
        ("refer.outcome", 10),
        ("refer.outcome", 11),
        ("refer.outcome", 12),
    ]
    # arrival order is kept in the raw entries
    assert [e.cseq for e in full.entries if e.source == "notify"] == [12, 10, 11]


def test_a_rejected_refer_is_a_failed_record(proxy: tuple[FakeKSR, Path], store: AuditStore) -> None:
    ksr, events = proxy
    handler = make_handler(ksr)  # type: ignore[arg-type]
    handler.ksr_request_route(ksr.request(refer("<sip:09001234567@lab.test>", 3), src_ip="127.0.1.32"))
    assert ksr.replies and ksr.replies[0][0] == 403
    EventFileIngest(store, str(events)).poll()
    (record,) = store.records()
    assert record.state == "failed"
    assert record.result is not None and record.result.startswith(
        "rejected 403 Transfer to +449001234567 denied"
    )
    assert record.parties["target"] == "<sip:09001234567@lab.test>"  # as asked: nothing was forwarded


def decided(
    call_id: str, cseq: int, *, allowed: bool = True, referrer: str = "", when: float = 1.0
) -> ReferDecision:
    status, reason = (202, "Accepted") if allowed else (403, "Forbidden")
    return ReferDecision(when, call_id, cseq, referrer, "127.0.1.32", allowed, status, reason, "r1")


def notified(call_id: str, cseq: int, refer_cseq: int | None, status: int, reason: str = "") -> NotifyOutcome:
    return NotifyOutcome(2.0, call_id, cseq, refer_cseq, status=status, reason=reason)


def line(event: ReferDecision | ReferResponse | NotifyOutcome | PbxEvent) -> str:
    return to_json(event)


@pytest.fixture
def apply(store: AuditStore) -> Correlator:
    return Correlator(store)


def test_provisional_then_final_and_late_provisional(store: AuditStore, apply: Correlator) -> None:
    apply.proxy(decided("c1", 2))
    apply.proxy(notified("c1", 5, 2, 180))
    assert store.records()[0].state == "ringback"
    apply.proxy(notified("c1", 6, 2, 486, "Busy Here"))
    apply.proxy(notified("c1", 4, 2, 100))
    (record,) = store.records()
    assert (record.state, record.result) == ("failed", "NOTIFY 486 Busy Here")


def test_every_state_change_is_a_move_saying_why(store: AuditStore, apply: Correlator) -> None:
    tid = apply.proxy(decided("c1", 2))
    apply.proxy(notified("c1", 5, 2, 180))
    apply.proxy(notified("c1", 6, 2, 200, "OK"))
    record = store.get(tid)
    assert record is not None
    moves = [(e.event.before, e.event.after, e.event.cause) for e in record.entries if e.source == "state"]  # type: ignore[union-attr]
    assert moves == [
        (None, State.STARTING, "refer.decision"),
        (State.STARTING, State.RINGBACK, "NOTIFY 180"),
        (State.RINGBACK, State.COMPLETED, "NOTIFY 200"),
    ]


def test_two_refers_in_one_dialog_are_two_records(apply: Correlator) -> None:
    first = apply.proxy(decided("c1", 2))
    second = apply.proxy(decided("c1", 3))
    assert first != second
    assert apply.proxy(notified("c1", 9, 2, 200)) == first
    assert apply.proxy(notified("c1", 10, 3, 200)) == second


def test_a_notify_without_an_id_goes_to_the_newest_record_of_its_call(apply: Correlator) -> None:
    apply.proxy(decided("c1", 2))
    second = apply.proxy(decided("c1", 3))
    assert apply.proxy(notified("c1", 9, None, 200)) == second


def test_only_the_proxys_events_are_read(tmp_path: Path, store: AuditStore) -> None:
    path = tmp_path / "events.jsonl"
    unknown_keys = line(decided("c9", 4, referrer="sip:1002@lab.test"))[:-1] + ',"shard":3}'
    no_kind = line(notified("c9", 8, 4, 200)).replace('"event":"refer.outcome",', "")
    old_spelling = '{"time":3,"event":"refer.outcome","call_id":"c9","cseq":8,"sipfrag":{"code":200}}'
    pbx = line(PbxEvent(4.0, "pbx1", "BlindTransfer", {"Result": "Success"}))
    path.write_text("\n".join([unknown_keys, no_kind, old_spelling, pbx]) + "\n")
    ingest = EventFileIngest(store, str(path))
    assert ingest.poll() == 2  # the decision (its unknown key ignored) and the NOTIFY without a status
    assert ingest.bad == 2
    assert "pbx.event is not one of the proxy's events" in ingest.last_error
    (record,) = store.records()
    # a sipfrag object is nobody's spelling: that NOTIFY carries no status and completes nothing
    assert (record.refer_cseq, record.state, record.parties) == (
        "4",
        "starting",
        {"referrer": "sip:1002@lab.test"},
    )


def test_a_downstream_error_answer_fails_the_record(store: AuditStore, apply: Correlator) -> None:
    apply.proxy(decided("c2", 2))
    apply.proxy(ReferResponse(2.0, "c2", 2, 603))
    (record,) = store.records()
    assert (record.state, record.result) == ("failed", "REFER answered 603")


def test_a_refer_accepted_without_a_subscription_is_unconfirmed(store: AuditStore, apply: Correlator) -> None:
    apply.proxy(decided("c2", 2))
    apply.proxy(ReferResponse(2.0, "c2", 2, 200, subscription=False))
    (record,) = store.records()
    assert (record.state, record.ended) == ("unconfirmed", 2.0)
    assert record.result == "REFER answered 200 with Refer-Sub: false: outcome unknown by design"
    # final: a NOTIFY the recipient sends after all changes nothing
    apply.proxy(notified("c2", 5, 2, 503))
    assert store.records()[0].state == "unconfirmed"


def test_a_2xx_with_a_subscription_waits_for_the_notifies(store: AuditStore, apply: Correlator) -> None:
    # the REFER asked for Refer-Sub: false, the recipient kept the subscription (RFC 4488 allows it)
    apply.proxy(decided("c2", 2))
    apply.proxy(ReferResponse(2.0, "c2", 2, 202))
    assert store.records()[0].state == "starting"
    apply.proxy(notified("c2", 5, 2, 486, "Busy Here"))
    assert (store.records()[0].state, store.records()[0].result) == ("failed", "NOTIFY 486 Busy Here")


def test_a_record_the_pbx_opened_is_claimed_by_the_refer(store: AuditStore, apply: Correlator) -> None:
    tid = store.create("pbx", call_id="c3", flow="blind", parties={"initiator": "PJSIP/1002-00000001"})
    assert apply.proxy(decided("c3", 2, referrer="sip:1002@lab.test")) == tid
    record = store.get(tid)
    assert record is not None
    assert (record.origin, record.refer_cseq) == ("refer", "2")
    assert record.parties == {"initiator": "PJSIP/1002-00000001", "referrer": "sip:1002@lab.test"}


def blind_transfer(when: float = 5.0) -> PbxEvent:
    return PbxEvent(when, "pbx1", "BlindTransfer", {"Result": "Success", "IsExternal": "Yes"})


def test_a_pbx_transfer_joins_the_refers_record(store: AuditStore, apply: Correlator) -> None:
    tid = apply.proxy(decided("c4", 2, referrer="sip:1002@lab.test"))
    names = {"initiator": "PJSIP/1002-00000001"}
    assert apply.pbx_transfer(["other", "c4"], blind_transfer(), flow="blind", parties=names) == tid
    record = store.get(tid)
    assert record is not None
    assert (record.origin, record.pbx, record.flow) == ("refer", "pbx1", "blind")
    assert record.parties == {"referrer": "sip:1002@lab.test", "initiator": "PJSIP/1002-00000001"}
    assert record.events()[-1] == blind_transfer()
    # a second transfer in the dialog is not the same REFER's
    again = apply.pbx_transfer(["c4"], blind_transfer(6.0), flow="blind", parties=names)
    assert again != tid
    assert store.get(again).origin == "pbx"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "refusal",
    [
        [decided("c5", 2, allowed=False)],
        [decided("c5", 2), ReferResponse(2.0, "c5", 2, 501, "Not Implemented")],
    ],
)
def test_a_refused_refer_is_not_the_pbxs_transfer(
    store: AuditStore, apply: Correlator, refusal: list[ReferDecision | ReferResponse]
) -> None:
    for event in refusal:
        refused = apply.proxy(event)
    tid = apply.pbx_transfer(["c5"], blind_transfer(), flow="blind", parties={})
    assert tid != refused
    record = store.get(tid)
    assert record is not None and (record.origin, record.call_id) == ("pbx", "c5")


def test_an_operators_record_is_not_claimed(store: AuditStore, apply: Correlator) -> None:
    operator = store.create("operator", call_id="c6", pbx="pbx1")
    assert apply.pbx_transfer(["c6"], blind_transfer(), flow="blind", parties={}) != operator


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"event": "refer.decision", "time": 1}', "no call_id"),
        (b"\xff\xfe", "not UTF-8"),
        ("{" + " " * 70000 + "}", "longer than"),
    ],
)
def test_bad_lines_are_counted_and_skipped_with_a_reason(
    tmp_path: Path, store: AuditStore, text: str | bytes, problem: str
) -> None:
    path = tmp_path / "events.jsonl"
    raw = text if isinstance(text, bytes) else text.encode()
    path.write_bytes(raw + b"\n" + line(decided("good", 1)).encode() + b"\n")
    ingest = EventFileIngest(store, str(path))
    assert ingest.poll() == 1
    assert ingest.bad == 1 and problem in ingest.last_error
    assert [r.call_id for r in store.records()] == ["good"]


def test_follow_skips_bad_lines_waits_for_partial_ones_and_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    db = str(tmp_path / "audit.db")
    good = line(decided("c1", 1))
    path.write_text(good + "\ngarbage\n" + good[:10])
    ingest = EventFileIngest(open_store(db, clock=soon), str(path))
    assert ingest.poll() == 1
    assert ingest.bad == 1 and "not JSON" in ingest.last_error
    with path.open("a") as handle:
        handle.write(good[10:] + "\n")
    assert ingest.poll() == 1
    assert ingest.poll() == 0
    # a restarted daemon neither repeats nor loses lines
    again = EventFileIngest(open_store(db, clock=soon), str(path))
    assert again.poll() == 0
    with path.open("a") as handle:
        handle.write(line(notified("c1", 3, 1, 200)) + "\n")
    assert again.poll() == 1
    store = open_store(db)
    assert store.get(store.records()[-1].id).state == "completed"  # type: ignore[union-attr]


def test_a_rotated_file_is_read_from_its_start(tmp_path: Path, store: AuditStore) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(line(decided("old", 1)) + "\n")
    ingest = EventFileIngest(store, str(path))
    assert ingest.poll() == 1
    os.rename(path, tmp_path / "events.jsonl.1")
    path.write_text(line(decided("new", 1)) + "\n")
    assert ingest.poll() == 1
    assert {r.call_id for r in store.records()} == {"old", "new"}


def test_a_missing_file_is_nothing_to_do(tmp_path: Path, store: AuditStore) -> None:
    assert EventFileIngest(store, str(tmp_path / "absent.jsonl")).poll() == 0


def test_a_line_longer_than_a_read_is_skipped_and_the_next_one_read(
    tmp_path: Path, store: AuditStore
) -> None:
    path = tmp_path / "events.jsonl"
    good = line(decided("after", 1))
    path.write_bytes(b"x" * (3 << 20))  # 3 MiB, newline not written yet
    ingest = EventFileIngest(store, str(path))
    assert ingest.poll() == 0 and ingest.bad == 0
    with path.open("a") as handle:
        handle.write("\n" + good + "\n")
    assert ingest.poll() == 1
    assert ingest.bad == 1 and "line longer than" in ingest.last_error
    assert [r.call_id for r in store.records()] == ["after"]
