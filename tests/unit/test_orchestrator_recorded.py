"""Replays of traces recorded from the lab's real Asterisk 22 (pbx1), with the proxy's event lines
of the same runs (tests/unit/data/ami/recorded_*.txt, tests/unit/data/proxy/recorded_*.jsonl):

- ``blind_refer``: a basic call, then bob's phone REFERs alice to 1003 (a blind transfer);
- ``attended_refer``: alice calls bob, bob holds her and calls carol, then REFERs alice with
  ``Replaces`` naming the bob-carol dialog (an attended transfer on one PBX).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ami_traces import DATA, text, trace
from orchestrator_fixture import Rig, run

from referee.audit import open_store
from referee.audit.correlate import Correlator
from referee.audit.store import AuditStore
from referee.events import Flow, State, from_json
from referee.orchestrator.tracker import Tracker

AMI = "recorded_blind_refer.txt"
PROXY = DATA.parent / "proxy" / "recorded_blind_refer.jsonl"
BOB_CALL_ID = "290aee4c-1f58-4062-83dc-ce8dbec6fe6d"  # bob's dialog with pbx1: where his REFER came


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    return open_store(str(tmp_path / "audit.db"))


def ingest_proxy(store: AuditStore) -> None:
    for line in PROXY.read_text().splitlines():
        Correlator(store).proxy(from_json(line))


def test_it_is_a_recording_from_asterisk_22() -> None:
    assert text(AMI).startswith("# RECORDED from Asterisk Call Manager/11.0.0 at 127.0.0.20:5038")
    kinds = [m.get("Event") for m in trace(AMI)]
    assert kinds.count("BlindTransfer") == 1 and kinds[-1] == "Shutdown"


def test_the_table_follows_the_real_calls_and_learns_call_ids(store: AuditStore) -> None:
    tracker = Tracker("pbx1", store)
    seen_bob = None
    for event in trace(AMI):
        tracker.handle(event)
        if event.get("Event") == "BlindTransfer":
            seen_bob = tracker.table.by_name("PJSIP/1002-00000003")
            assert seen_bob is not None
            assert seen_bob.call_id == BOB_CALL_ID  # from alice's BRIDGEPVTCALLID, no Getvar needed
            assert [c.name for c in tracker.table.peers(seen_bob.uniqueid)] == ["PJSIP/1001-00000002"]
    assert seen_bob is not None
    assert tracker.table.channels == {} and tracker.table.bridges == {}  # everyone hung up


@pytest.mark.parametrize("proxy_first", [True, False], ids=["proxy-lines-first", "ami-events-first"])
def test_the_refer_and_the_pbx_events_make_one_record(store: AuditStore, proxy_first: bool) -> None:
    tracker = Tracker("pbx1", store)
    if proxy_first:
        ingest_proxy(store)
    for event in trace(AMI):
        tracker.handle(event)
    if not proxy_first:
        ingest_proxy(store)
    (listed,) = store.records()
    record = store.get(listed.id)
    assert record is not None
    assert (record.call_id, record.refer_cseq, record.origin, record.flow, record.pbx) == (
        BOB_CALL_ID,
        "1",
        "refer",
        "blind",
        "pbx1",
    )
    assert record.state == "completed"
    assert record.result == ("NOTIFY 200 OK" if proxy_first else "the recipient answered")
    assert record.parties == {
        "referrer": "sip:1002@lab.test",
        "target": "<sip:1003@127.0.0.20:5060>",
        "destination": "1003@referee-transfer",
        "initiator": "PJSIP/1002-00000003",
        "transferred": "PJSIP/1001-00000002",
        "recipient": "PJSIP/referee-proxy-00000004",
    }
    # The NOTIFYs came 180, 100, 200 through the proxy; the record reads them in CSeq order.
    assert [e.cseq for e in record.entries if e.source == "notify"] == [9651, 9650, 9652]
    assert [(e.cseq, e.status) for e in record.notify_outcomes()] == [
        (9650, 100),
        (9651, 180),
        (9652, 200),
    ]
    pbx = [e.kind for e in record.entries if e.source == "pbx"]
    assert pbx[0] == "BlindTransfer"
    assert {"DialBegin", "DialEnd", "BridgeEnter", "BridgeLeave", "Hangup"} <= set(pbx)
    transfer = tracker.get(record.id)
    assert transfer is not None and (transfer.flow, transfer.state) == (Flow.BLIND, State.COMPLETED)


def test_the_recording_through_panoramisk_including_asterisks_shutdown(tmp_path: Path) -> None:
    async def check(rig: Rig) -> None:
        await rig.ami.push(text(AMI))
        await rig.link.wait_resynced(2)  # panoramisk takes "Shutdown" for a lost link, reconnects, resyncs
        (record,) = rig.store.records()
        assert (record.call_id, record.state, record.origin) == (BOB_CALL_ID, "completed", "pbx")

    run(check, tmp_path)


def test_the_blind_transfer_goes_through_ringback_and_answered(store: AuditStore) -> None:
    tracker = Tracker("pbx1", store)
    states: list[str] = []
    for event in trace(AMI):
        tracker.handle(event)
        for transfer in list(tracker.active.values()) + list(tracker.finished.values()):
            if not states or states[-1] != transfer.state:
                states.append(str(transfer.state))
    assert states == ["ringback", "answered", "completed"]


ATTENDED = "recorded_attended_refer.txt"
ATTENDED_PROXY = DATA.parent / "proxy" / "recorded_attended_refer.jsonl"
BOB_FIRST_CALL_ID = "9f186f39-c164-4e3b-8589-96ae7d2648ed"  # bob's dialog with alice: where the REFER came


@pytest.mark.parametrize("proxy_first", [True, False], ids=["proxy-lines-first", "ami-events-first"])
def test_a_real_attended_refer_makes_one_completed_record(store: AuditStore, proxy_first: bool) -> None:
    tracker = Tracker("pbx1", store)
    lines = ATTENDED_PROXY.read_text().splitlines()
    if proxy_first:
        for line in lines:
            Correlator(store).proxy(from_json(line))
    for event in trace(ATTENDED):
        tracker.handle(event)
        if event.get("Event") == "AttendedTransfer":
            assert event["IsExternal"] == "No"  # Asterisk 22 says No for a REFER with Replaces
            names = {c.name: c.call_id for c in tracker.table.channels.values()}
            assert names["PJSIP/1002-00000030"] == BOB_FIRST_CALL_ID  # learnt from VarSet BRIDGEPVTCALLID
            assert names["PJSIP/1002-00000031"] == "consult///" + BOB_FIRST_CALL_ID
    if not proxy_first:
        for line in lines:
            Correlator(store).proxy(from_json(line))
    (listed,) = store.records()
    record = store.get(listed.id)
    assert record is not None
    assert (record.call_id, record.refer_cseq, record.origin, record.flow, record.state) == (
        BOB_FIRST_CALL_ID,
        "2",
        "refer",
        "attended",
        "completed",
    )
    assert record.result == ("NOTIFY 200 OK" if proxy_first else "AttendedTransfer Success (Bridge)")
    assert {k: record.parties[k] for k in ("initiator", "second_transferer", "transferred", "recipient")} == {
        "initiator": "PJSIP/1002-00000030",
        "second_transferer": "PJSIP/1002-00000031",
        "transferred": "PJSIP/1001-0000002f",
        "recipient": "PJSIP/1003-00000032",
    }
    assert record.parties["referrer"] == "sip:1002@lab.test"
    assert [(e.cseq, e.status) for e in record.notify_outcomes()] == [(9999, 100), (10000, 200)]
    assert "AttendedTransfer" in [e.kind for e in record.entries if e.source == "pbx"]
    ladder = [e.kind for e in record.ladder()]
    assert ladder.index("refer.decision") < ladder.index(
        "AttendedTransfer"
    )  # time order, whatever was read first
