"""Channel state and transfers from AMI traces (tests/unit/data/ami/), replayed through the tracker."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from ami_traces import ALICE, BOB, BOB2, CAROL, CAROL2, CAROL3, LOCAL1, trace

from referee.audit import open_store
from referee.audit.correlate import Correlator
from referee.audit.store import AuditStore
from referee.events import Flow, State, TransferMove, from_json
from referee.orchestrator.channels import endpoint_of
from referee.orchestrator.tracker import Tracker, consultation_destination
from referee.orchestrator.transfer import Transfer

BRIDGE1 = "5a1c0e4e-6a57-4a0e-9d43-0c6a1f3b0001"
BOB_CALL_ID = "bob-dialog@127.0.0.32"


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    return open_store(str(tmp_path / "audit.db"))


def replay(tracker: Tracker, *names: str) -> None:
    for name in names:
        for event in trace(name):
            tracker.handle(event)


def talking(store: AuditStore) -> Tracker:
    tracker = Tracker("pbx1", store)
    replay(tracker, "call_setup.txt")
    channel = tracker.table.get(BOB)
    assert channel is not None
    channel.call_id = BOB_CALL_ID
    return tracker


def test_endpoints() -> None:
    assert endpoint_of("PJSIP/1002-0000000a") == "PJSIP/1002"
    assert endpoint_of("Local/1003@referee-transfer-00000000;1") == "Local/1003@referee-transfer"
    assert endpoint_of("PJSIP/trunk") == "PJSIP/trunk"


def test_a_call_builds_and_clears_the_table(store: AuditStore) -> None:
    tracker = talking(store)
    table = tracker.table
    assert {c.name for c in table.channels.values()} == {"PJSIP/1001-00000000", "PJSIP/1002-00000001"}
    assert [c.uniqueid for c in table.peers(BOB)] == [ALICE]
    assert table.bridges[BRIDGE1].members == {ALICE, BOB}
    assert all(c.answered for c in table.channels.values())
    assert [c.uniqueid for c in table.resolve("PJSIP/1002")] == [BOB]
    assert [c.uniqueid for c in table.resolve("PJSIP/1001-00000000")] == [ALICE]
    assert table.resolve("PJSIP/1009") == []
    replay(tracker, "call_hangup.txt")
    assert table.channels == {} and table.bridges == {}
    assert store.records() == []  # no transfer, no record


def test_resync_replaces_the_table_and_keeps_call_ids(store: AuditStore) -> None:
    tracker = talking(store)
    tracker.table.channels["stale"] = tracker.table.channels[ALICE].__class__("stale", "PJSIP/9-00000009")
    channels = [m for m in trace("core_show_channels.txt") if m.get("Event") == "CoreShowChannel"]
    bridges = [m for m in trace("bridge_list.txt") if m.get("Event") == "BridgeListItem"]
    tracker.resync(channels, bridges)
    table = tracker.table
    assert set(table.channels) == {ALICE, BOB}
    assert table.channels[BOB].call_id == BOB_CALL_ID
    assert table.bridges[BRIDGE1].members == {ALICE, BOB}
    assert table.channels[ALICE].bridge == BRIDGE1


def test_resync_settles_a_transfer_whose_party_left_during_the_outage(store: AuditStore) -> None:
    tracker = talking(store)
    record_id = store.create("operator", flow="blind", pbx="pbx1")
    transfer = Transfer(
        record_id, "pbx1", Flow.BLIND, "operator", initiator=BOB, transferred="gone.1", state=State.RINGBACK
    )
    tracker.add(transfer)
    channels = [m for m in trace("core_show_channels.txt") if m.get("Event") == "CoreShowChannel"]
    tracker.resync(channels, [])
    assert transfer.state == State.ABANDONED
    record = store.get(record_id)
    assert record is not None and record.state == "abandoned"
    assert any(e.kind == "resync" and e.event.fields["gone"] == "transferred" for e in record.entries)  # type: ignore[union-attr]


def test_a_phones_blind_refer_joins_the_proxy_record(store: AuditStore) -> None:
    tracker = talking(store)
    proxy_line = json.dumps(
        {
            "time": 1764000001.0,
            "event": "refer.decision",
            "call_id": BOB_CALL_ID,
            "cseq": "4",
            "from": "sip:1002@lab.test",
            "refer_to": "<sip:1003@lab.test>",
            "decision": {
                "allowed": True,
                "status": 202,
                "rule": "pbx1-extensions",
                "refer_to": "<sip:1003@127.0.0.20:5060>",
            },
        }
    )
    record_id = Correlator(store).proxy(from_json(proxy_line))
    replay(tracker, "blind_refer.txt")
    transfer = tracker.get(record_id)
    assert transfer is not None
    assert (transfer.flow, transfer.origin, transfer.state) == (Flow.BLIND, "refer", State.COMPLETED)
    assert (transfer.initiator, transfer.transferred, transfer.recipient) == (BOB, ALICE, CAROL)
    record = store.get(record_id)
    assert record is not None
    assert (record.state, record.result, record.pbx, record.flow) == (
        "completed",
        "the recipient answered",
        "pbx1",
        "blind",
    )
    assert record.parties["recipient"] == "PJSIP/1003-00000002"
    assert record.parties["referrer"] == "sip:1002@lab.test"  # the proxy's word on who asked
    assert record.parties["initiator"] == "PJSIP/1002-00000001"  # and the PBX's
    assert record.parties["target"] == "<sip:1003@127.0.0.20:5060>"
    kinds = [e.kind for e in record.entries if e.source == "pbx"]
    assert kinds[0] == "BlindTransfer"
    assert {"DialBegin", "DialEnd", "BridgeEnter", "Hangup"} <= set(kinds)
    assert len(store.records()) == 1


def test_a_refer_seen_only_at_the_pbx_gets_its_own_record(store: AuditStore) -> None:
    tracker = talking(store)
    replay(tracker, "blind_refer.txt")
    (record,) = store.records()
    assert (record.origin, record.call_id, record.state) == ("pbx", BOB_CALL_ID, "completed")
    # the proxy's line read later still finds it (correlation by Call-ID)
    line = json.dumps(
        {
            "time": 1764000001.0,
            "event": "refer.decision",
            "call_id": BOB_CALL_ID,
            "cseq": "4",
            "decision": {"allowed": True, "status": 202},
        }
    )
    assert Correlator(store).proxy(from_json(line)) == record.id
    claimed = store.get(record.id)
    assert claimed is not None and (claimed.origin, claimed.refer_cseq) == ("refer", "4")


def test_a_rejected_refer_is_not_claimed_by_a_later_pbx_transfer(store: AuditStore) -> None:
    tracker = talking(store)
    decision = {"allowed": False, "status": 403, "reason": "no"}
    line = json.dumps(
        {
            "time": 1764000001.0,
            "event": "refer.decision",
            "call_id": BOB_CALL_ID,
            "cseq": "4",
            "decision": decision,
        }
    )
    rejected = Correlator(store).proxy(from_json(line))
    replay(tracker, "blind_refer.txt")
    assert len(store.records()) == 2
    assert store.get(rejected).state == "failed"  # type: ignore[union-attr]


def operator_transfer(tracker: Tracker, store: AuditStore, flow: Flow, exten: str = "1003") -> Transfer:
    record_id = store.create("operator", flow=str(flow), pbx="pbx1")
    transfer = Transfer(
        record_id, "pbx1", flow, "operator", initiator=BOB, exten=exten, context="referee-transfer"
    )
    tracker.add(transfer)
    return transfer


def test_an_operator_blind_transfer_to_an_answering_phone(store: AuditStore) -> None:
    tracker = talking(store)
    transfer = operator_transfer(tracker, store, Flow.BLIND)
    states = []
    for event in trace("blind_ami.txt"):
        tracker.handle(event)
        states.append(transfer.state)
    assert states[0] == State.RINGBACK  # the BlindTransfer event
    assert State.ANSWERED in states
    assert transfer.state == State.COMPLETED
    assert transfer.names == {"transferred": "PJSIP/1001-00000000", "recipient": "PJSIP/1003-00000002"}
    assert len(store.records()) == 1  # an operator's transfer is not recorded twice


def test_an_operator_blind_transfer_to_a_busy_phone_fails(store: AuditStore) -> None:
    tracker = talking(store)
    transfer = operator_transfer(tracker, store, Flow.BLIND)
    replay(tracker, "blind_busy.txt")
    assert transfer.state == State.FAILED
    assert (
        transfer.result == "the recipient hung up before the transfer completed"
    )  # carol's Hangup came first
    record = store.get(transfer.id)
    assert record is not None and record.state == "failed"


def test_a_blind_transfer_the_pbx_refuses_fails(store: AuditStore) -> None:
    tracker = talking(store)
    transfer = operator_transfer(tracker, store, Flow.BLIND)
    event = dict(trace("blind_ami.txt")[0], Result="Not Permitted")
    tracker.handle(event)
    assert (transfer.state, transfer.result) == (State.FAILED, "BlindTransfer Not Permitted")


def test_an_operator_attended_transfer_rings_answers_and_completes(store: AuditStore) -> None:
    tracker = talking(store)
    transfer = operator_transfer(tracker, store, Flow.ATTENDED)
    seen = []
    for event in trace("atxfer_answered.txt"):
        tracker.handle(event)
        if not seen or seen[-1] != transfer.state:
            seen.append(transfer.state)
    assert seen == [State.STARTING, State.RINGBACK, State.ANSWERED]
    assert transfer.recipient == CAROL2  # carol swapped in for the optimised-away Local channel
    assert transfer.names["recipient"] == "PJSIP/1003-00000003"
    replay(tracker, "atxfer_complete.txt")
    assert transfer.state == State.COMPLETED
    assert transfer.result == "AttendedTransfer Success (Bridge)"
    assert transfer.transferred == ALICE
    record = store.get(transfer.id)
    assert record is not None
    assert [e.event.after for e in record.entries if isinstance(e.event, TransferMove)] == [
        "starting",
        "ringback",
        "answered",
        "completed",
    ]


def test_the_consultation_channel_must_match_exten_and_context(store: AuditStore) -> None:
    tracker = talking(store)
    transfer = operator_transfer(tracker, store, Flow.ATTENDED, exten="1004")
    replay(tracker, "atxfer_answered.txt")
    assert transfer.state == State.STARTING and transfer.recipient is None
    assert LOCAL1 not in tracker.table.channels  # the Local pair is gone from the table too


def test_a_phones_attended_refer_is_recorded_completed(store: AuditStore) -> None:
    tracker = talking(store)
    replay(tracker, "attended_refer.txt")
    (record,) = store.records()
    assert (record.flow, record.origin, record.state) == ("attended", "pbx", "completed")
    assert record.call_id == BOB_CALL_ID
    assert record.parties == {
        "initiator": "PJSIP/1002-00000001",
        "second_transferer": "PJSIP/1002-00000004",
        "transferred": "PJSIP/1001-00000000",
        "recipient": "PJSIP/1003-00000005",
    }
    transfer = tracker.get(record.id)
    assert transfer is not None and transfer.recipient == CAROL3 and BOB2 not in tracker.table.channels


def test_every_move_is_logged_once_by_the_hook(store: AuditStore, caplog: pytest.LogCaptureFixture) -> None:
    tracker = talking(store)
    transfer = operator_transfer(tracker, store, Flow.ATTENDED)
    with caplog.at_level(logging.INFO, logger="referee.orchestrator.tracker"):
        replay(tracker, "atxfer_answered.txt", "atxfer_complete.txt")
    moves = [r.getMessage() for r in caplog.records if r.getMessage().startswith("transfer ")]
    assert moves == [
        f"transfer {transfer.id}: starting -> ringback on Newchannel on pbx1",
        f"transfer {transfer.id}: ringback -> answered on Newstate on pbx1",
        f"transfer {transfer.id}: answered -> completed on AttendedTransfer on pbx1",
    ]


def test_transfers_are_found_by_their_channels_and_forgotten_once_final(store: AuditStore) -> None:
    tracker = talking(store)
    transfer = operator_transfer(tracker, store, Flow.ATTENDED)
    assert tracker.active.on_channel(BOB) == [transfer]
    assert tracker.active.to_destination("1003", "referee-transfer") == [transfer]
    replay(tracker, "atxfer_answered.txt")
    assert tracker.active.on_channel(LOCAL1) == []  # swapped out for carol's channel
    assert tracker.active.on_channel(CAROL2) == [transfer]
    assert tracker.active.to_destination("1003", "referee-transfer") == []  # it has its recipient
    replay(tracker, "atxfer_complete.txt")
    assert transfer.final and transfer.id not in tracker.active
    assert tracker.active.on_channel(BOB) == [] and tracker.active.on_channel(CAROL2) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Local/1003@referee-transfer-00000000;1", ("1003", "referee-transfer")),
        ("Local/1003@referee-transfer-00000000;2", None),
        ("PJSIP/1003-00000002", None),
        ("Local/1003-00000000;1", None),
    ],
)
def test_the_consultation_channel_names_its_destination(name: str, expected: tuple[str, str] | None) -> None:
    assert consultation_destination(name) == expected
