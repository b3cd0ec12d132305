"""The orchestrator over a real AMI connection: panoramisk against a fake AMI fed with traces."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import pytest
from ami_traces import ALICE, BOB, CAROL2, text
from orchestrator_fixture import Rig, make_rig, run

from referee.events import OperatorAction, PbxEvent, State
from referee.orchestrator.operations import Conflict, Invalid, NotFound, Refused, Unavailable
from referee.testing.fake_ami import FakeAmi, error


def test_login_resyncs_and_fetches_call_ids(tmp_path: Path) -> None:
    async def check(rig: Rig) -> None:
        assert [a["Action"] for a in rig.ami.actions[:2]] == ["CoreShowChannels", "BridgeList"]
        getvars = rig.ami.named("Getvar")
        assert {a["Variable"] for a in getvars} == {"CHANNEL(pjsip,call-id)"}
        table = rig.tracker.table
        assert table.channels[BOB].call_id == "bob-dialog@127.0.0.32"
        assert table.channels[ALICE].call_id == "alice-dialog@127.0.0.31"
        assert [c.uniqueid for c in table.peers(BOB)] == [ALICE]
        assert rig.link.ready

    run(check, tmp_path)


def test_new_pjsip_channels_get_their_call_id(tmp_path: Path) -> None:
    async def check(rig: Rig) -> None:
        await rig.push("call_hangup.txt")
        assert rig.tracker.table.channels == {}
        await rig.push("call_setup.txt")
        await rig.barrier()  # the Getvars were sent after the Newchannels
        assert rig.tracker.table.channels[BOB].call_id == "bob-dialog@127.0.0.32"

    run(check, tmp_path)


def test_blind_transfer_end_to_end(tmp_path: Path) -> None:
    async def check(rig: Rig) -> None:
        transfer = await rig.orchestrator.blind("pbx1", "PJSIP/1002", "1003")
        (action,) = rig.ami.named("BlindTransfer")
        assert {k: action[k] for k in ("Channel", "Exten", "Context")} == {
            "Channel": "PJSIP/1002-00000001",
            "Exten": "1003",
            "Context": "referee-transfer",
        }
        assert transfer.state == State.STARTING
        await rig.push("blind_ami.txt")
        assert transfer.state == State.COMPLETED
        record = rig.store.get(transfer.id)
        assert record is not None
        assert (record.origin, record.call_id, record.state) == (
            "operator",
            "bob-dialog@127.0.0.32",
            "completed",
        )
        operator = [e.event for e in record.entries if isinstance(e.event, OperatorAction)]
        assert [(a.pbx, a.action, a.response, a.message, a.error) for a in operator] == [
            (
                "pbx1",
                {
                    "Action": "BlindTransfer",
                    "Channel": "PJSIP/1002-00000001",
                    "Context": "referee-transfer",
                    "Exten": "1003",
                },
                "Success",
                "Transfer succeeded",
                "",
            )
        ]

    run(check, tmp_path)


def test_a_second_transfer_by_the_same_initiator_is_refused(tmp_path: Path) -> None:
    async def check(rig: Rig) -> None:
        first = await rig.orchestrator.attended("pbx1", "PJSIP/1002-00000001", "1003")
        with pytest.raises(Conflict, match=f"PJSIP/1002 already has transfer {first.id} running"):
            await rig.orchestrator.blind("pbx1", "PJSIP/1002", "1004")
        assert len(rig.ami.named("Atxfer")) == 1 and rig.ami.named("BlindTransfer") == []
        assert len(rig.store.records()) == 1
        # once the first one ends, the initiator may transfer again
        await rig.push("atxfer_answered.txt")
        await rig.orchestrator.cancel(first.id)
        assert first.state == State.CANCELLED

    run(check, tmp_path)


def test_attended_transfer_rings_answers_and_completes(tmp_path: Path) -> None:
    async def check(rig: Rig) -> None:
        transfer = await rig.orchestrator.attended("pbx1", "PJSIP/1002", "1003")
        with pytest.raises(Conflict, match="has not reached its recipient yet"):
            await rig.orchestrator.complete(transfer.id)
        await rig.push("atxfer_answered.txt")
        assert (transfer.state, transfer.recipient) == (State.ANSWERED, CAROL2)
        await rig.orchestrator.complete(transfer.id)
        (hangup,) = rig.ami.named("Hangup")
        assert hangup["Channel"] == "PJSIP/1002-00000001"
        await rig.push("atxfer_complete.txt")
        assert transfer.state == State.COMPLETED
        with pytest.raises(Conflict, match="already completed"):
            await rig.orchestrator.cancel(transfer.id)

    run(check, tmp_path)


def test_cancel_an_attended_transfer(tmp_path: Path) -> None:
    async def check(rig: Rig) -> None:
        transfer = await rig.orchestrator.attended("pbx1", "PJSIP/1002", "1003")
        with pytest.raises(Conflict, match="is starting"):
            await rig.orchestrator.cancel(transfer.id)
        await rig.push("atxfer_answered.txt")
        await rig.orchestrator.cancel(transfer.id)
        (cancel,) = rig.ami.named("CancelAtxfer")
        assert cancel["Channel"] == "PJSIP/1002-00000001"
        assert (transfer.state, transfer.result) == (State.CANCELLED, "cancelled by the operator")
        assert rig.store.state_of(transfer.id) == "cancelled"

    run(check, tmp_path)


def test_a_refused_action_fails_the_transfer(tmp_path: Path) -> None:
    async def check(rig: Rig) -> None:
        rig.ami.answers["Atxfer"] = error("No attended transfer feature code is defined")
        with pytest.raises(Refused, match="PBX refused Atxfer: No attended transfer feature code") as caught:
            await rig.orchestrator.attended("pbx1", "PJSIP/1002", "1003")
        transfer = caught.value.transfer
        assert transfer is not None and transfer.state == State.FAILED
        assert rig.store.state_of(transfer.id) == "failed"
        assert rig.orchestrator.busy("PJSIP/1002") is None  # a failed transfer frees the initiator

    run(check, tmp_path)


@pytest.mark.parametrize(
    ("pbx", "channel", "exten", "context", "error_type", "message"),
    [
        ("pbx9", "PJSIP/1002", "1003", "referee-transfer", NotFound, "unknown PBX 'pbx9'"),
        ("pbx1", "PJSIP/1009", "1003", "referee-transfer", NotFound, "no channel 'PJSIP/1009'"),
        ("pbx1", "PJSIP/1002", "10 03", "referee-transfer", Invalid, "is not a dialplan extension"),
        ("pbx1", "PJSIP/1002", "1003", "ctx,evil", Invalid, "is not a dialplan context"),
    ],
)
def test_bad_requests_are_refused_before_any_action(
    tmp_path: Path,
    pbx: str,
    channel: str,
    exten: str,
    context: str,
    error_type: type[Exception],
    message: str,
) -> None:
    async def check(rig: Rig) -> None:
        with pytest.raises(error_type, match=message):
            await rig.orchestrator.blind(pbx, channel, exten, context)
        assert rig.ami.named("BlindTransfer") == [] and rig.store.records() == []

    run(check, tmp_path)


def test_a_channel_not_in_a_two_party_call_is_refused(tmp_path: Path) -> None:
    async def check(rig: Rig) -> None:
        await rig.push("call_hangup.txt")
        await rig.ami.push(text("call_setup.txt").split("Event: BridgeCreate")[0])
        await rig.barrier()
        with pytest.raises(NotFound, match="no channel 'PJSIP/1002'"):  # not bridged: not a call to transfer
            await rig.orchestrator.blind("pbx1", "PJSIP/1002", "1003")
        with pytest.raises(Conflict, match="not in a two-party call"):
            await rig.orchestrator.blind("pbx1", "PJSIP/1002-00000001", "1003")

    run(check, tmp_path)


def test_operations_wait_for_the_pbx(tmp_path: Path) -> None:
    async def check(rig: Rig) -> None:
        with pytest.raises(Unavailable, match="PBX pbx1 is not connected"):
            await rig.orchestrator.blind("pbx1", "PJSIP/1002", "1003")

    run(check, tmp_path, connect=False)


def test_reconnect_resyncs_and_settles_what_changed_meanwhile(tmp_path: Path) -> None:
    async def check(rig: Rig) -> None:
        transfer = await rig.orchestrator.attended("pbx1", "PJSIP/1002", "1003")
        await rig.push("atxfer_answered.txt")
        assert transfer.state == State.ANSWERED
        # While the link is down, alice (the transferred party) hangs up.
        snapshot = text("core_show_channels.txt")
        bob_and_carol = snapshot.replace("PJSIP/1001-00000000", "PJSIP/1003-00000003").replace(
            "1764000000.0\n", "1764000000.5\n"
        )
        rig.ami.answers["CoreShowChannels"] = bob_and_carol
        rig.ami.drop_clients()
        await rig.link.wait_resynced(2)
        assert rig.ami.logins == 2
        assert transfer.state == State.ABANDONED
        assert set(rig.tracker.table.channels) == {BOB, CAROL2}
        record = rig.store.get(transfer.id)
        assert record is not None and record.state == "abandoned"
        assert [
            e.event.fields for e in record.entries if isinstance(e.event, PbxEvent) and e.kind == "resync"
        ] == [{"gone": "transferred", "uniqueid": ALICE}]

    run(check, tmp_path)


def test_events_during_the_resync_are_replayed_over_the_snapshot(tmp_path: Path) -> None:
    async def check(rig: Rig) -> None:
        # Both hang up after CoreShowChannels was answered and before BridgeList is: the
        # snapshot still shows them; the replay must not.
        rig.ami.answers["BridgeList"] = text("call_hangup.txt") + "\n" + text("bridge_list.txt")
        rig.link.start()
        await rig.link.wait_resynced()
        assert rig.tracker.table.channels == {}
        assert rig.tracker.table.bridges == {}

    run(check, tmp_path, connect=False)


def refused(ami: FakeAmi) -> bool:
    return ami.refused > 0


def test_a_source_address_gets_through_an_ami_permit(tmp_path: Path) -> None:
    async def main() -> None:
        for source, connects in (("127.0.3.9", True), (None, False)):
            (tmp_path / str(source)).mkdir()
            rig = await make_rig(tmp_path / str(source), host="127.0.3.9", source=source)
            rig.ami.permit = "127.0.3.9"  # the lab's manager.conf: permit = the PBX's own address
            try:
                rig.link.start()
                if connects:
                    await rig.link.wait_resynced()
                    assert rig.ami.logins == 1 and rig.link.ready
                else:
                    await rig.ami.until(functools.partial(refused, rig.ami))  # from 127.0.0.1: refused
                    assert rig.ami.logins == 0 and not rig.link.ready
            finally:
                rig.link.close()
                await rig.ami.close()

    asyncio.run(asyncio.wait_for(main(), 30))
