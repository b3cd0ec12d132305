"""Ingest of the proxy's JSON-lines events, in the exact format referee.kemi writes them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from referee.audit import open_store
from referee.audit.ingest import EventFileIngest, apply
from referee.audit.proxy_events import BadEvent, parse_line
from referee.audit.store import AuditStore
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
    return open_store(str(tmp_path / "audit.db"))


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
    assert [e.data["status"] for e in full.notify_outcomes()] == [100, 180, 200]
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


def line(**fields: object) -> str:
    return json.dumps(fields)


def test_provisional_then_final_and_late_provisional(store: AuditStore) -> None:
    apply(store, parse_line(line(event="refer.decision", call_id="c1", cseq="2", decision={"allowed": True})))
    apply(store, parse_line(line(event="refer.outcome", call_id="c1", cseq="5", refer_cseq="2", status=180)))
    assert store.records()[0].state == "ringback"
    apply(
        store,
        parse_line(
            line(
                event="refer.outcome", call_id="c1", cseq="6", refer_cseq="2", status=486, reason="Busy Here"
            )
        ),
    )
    apply(store, parse_line(line(event="refer.outcome", call_id="c1", cseq="4", refer_cseq="2", status=100)))
    (record,) = store.records()
    assert (record.state, record.result) == ("failed", "NOTIFY 486 Busy Here")


def test_two_refers_in_one_dialog_are_two_records(store: AuditStore) -> None:
    first = apply(
        store, parse_line(line(event="refer.decision", call_id="c1", cseq="2", decision={"allowed": True}))
    )
    second = apply(
        store, parse_line(line(event="refer.decision", call_id="c1", cseq="3", decision={"allowed": True}))
    )
    assert first != second
    assert (
        apply(
            store, parse_line(line(event="refer.outcome", call_id="c1", cseq="9", refer_cseq="2", status=200))
        )
        == first
    )


def test_tolerant_of_unknown_keys_and_other_spellings(store: AuditStore) -> None:
    tid = apply(
        store,
        parse_line(
            line(
                call_id="c9",
                cseq="4 REFER",
                refer_to="<sip:1003@lab.test>",
                decision={"allowed": True},
                shard=3,
            )
        ),
    )
    apply(
        store,
        parse_line(line(call_id="c9", cseq=8, refer_cseq=4, sipfrag={"code": 200, "reason": "OK"}, x=[1])),
    )
    record = store.get(tid)
    assert record is not None
    assert (record.refer_cseq, record.state, record.result) == ("4", "completed", "NOTIFY 200 OK")
    assert record.entries[1].data["shard"] == 3


def test_a_downstream_error_answer_fails_the_record(store: AuditStore) -> None:
    apply(store, parse_line(line(event="refer.decision", call_id="c2", cseq="2", decision={"allowed": True})))
    apply(store, parse_line(line(event="refer.response", call_id="c2", cseq="2", status=603)))
    (record,) = store.records()
    assert (record.state, record.result) == ("failed", "REFER answered 603")


def test_a_record_the_pbx_opened_is_claimed_by_the_refer(store: AuditStore) -> None:
    tid = store.create("pbx", call_id="c3", flow="blind", parties={"initiator": "PJSIP/1002-00000001"})
    assert (
        apply(
            store,
            parse_line(
                line(
                    event="refer.decision",
                    call_id="c3",
                    cseq="2",
                    decision={"allowed": True},
                    **{"from": "sip:1002@lab.test"},
                )
            ),
        )
        == tid
    )
    record = store.get(tid)
    assert record is not None
    assert (record.origin, record.refer_cseq) == ("refer", "2")
    assert record.parties == {"initiator": "PJSIP/1002-00000001", "referrer": "sip:1002@lab.test"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"event": "refer.decision"}', "no call_id"),
        ('{"call_id": ""}', "no call_id"),
        (b"\xff\xfe", "not UTF-8"),
        ("{" + " " * 70000 + "}", "longer than"),
    ],
)
def test_bad_lines_are_refused_with_a_reason(text: str | bytes, problem: str) -> None:
    with pytest.raises(BadEvent, match=problem):
        parse_line(text)


def test_follow_skips_bad_lines_waits_for_partial_ones_and_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    db = str(tmp_path / "audit.db")
    good = line(event="refer.decision", call_id="c1", cseq="1", decision={"allowed": True})
    path.write_text(good + "\ngarbage\n" + good[:10])
    ingest = EventFileIngest(open_store(db), str(path))
    assert ingest.poll() == 1
    assert ingest.bad == 1 and "not JSON" in ingest.last_error
    with path.open("a") as handle:
        handle.write(good[10:].replace('"c1"', '"c1"') + "\n")
    assert ingest.poll() == 1
    assert ingest.poll() == 0
    # a restarted daemon neither repeats nor loses lines
    again = EventFileIngest(open_store(db), str(path))
    assert again.poll() == 0
    with path.open("a") as handle:
        handle.write(line(event="refer.outcome", call_id="c1", cseq="3", refer_cseq="1", status=200) + "\n")
    assert again.poll() == 1
    store = open_store(db)
    assert store.get(store.records()[-1].id).state == "completed"  # type: ignore[union-attr]


def test_a_rotated_file_is_read_from_its_start(tmp_path: Path, store: AuditStore) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        line(event="refer.decision", call_id="old", cseq="1", decision={"allowed": True}) * 1 + "\n"
    )
    ingest = EventFileIngest(store, str(path))
    assert ingest.poll() == 1
    os.rename(path, tmp_path / "events.jsonl.1")
    path.write_text(line(event="refer.decision", call_id="new", cseq="1", decision={"allowed": True}) + "\n")
    assert ingest.poll() == 1
    assert {r.call_id for r in store.records()} == {"old", "new"}


def test_a_missing_file_is_nothing_to_do(tmp_path: Path, store: AuditStore) -> None:
    assert EventFileIngest(store, str(tmp_path / "absent.jsonl")).poll() == 0


def test_a_line_longer_than_a_read_is_skipped_and_the_next_one_read(
    tmp_path: Path, store: AuditStore
) -> None:
    path = tmp_path / "events.jsonl"
    good = line(event="refer.decision", call_id="after", cseq="1", decision={"allowed": True})
    path.write_bytes(b"x" * (3 << 20))  # 3 MiB, newline not written yet
    ingest = EventFileIngest(store, str(path))
    assert ingest.poll() == 0 and ingest.bad == 0
    with path.open("a") as handle:
        handle.write("\n" + good + "\n")
    assert ingest.poll() == 1
    assert ingest.bad == 1 and "line longer than" in ingest.last_error
    assert [r.call_id for r in store.records()] == ["after"]
