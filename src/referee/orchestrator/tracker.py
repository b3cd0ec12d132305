"""Following transfers on one PBX from its AMI events, and writing what happens to the audit trail.

The tracker knows the transfers the orchestrator started (registered before their action is
sent, so an event that beats the action's response is not missed) and picks up the ones
phones start by REFER or DTMF from their ``BlindTransfer`` / ``AttendedTransfer`` events
(Asterisk 22 says ``IsExternal: Yes`` for a blind REFER but ``No`` for a REFER with
Replaces, so the proxy's record, not that flag, tells a REFER). The audit's correlator
(:mod:`referee.audit.correlate`) joins those to the proxy's record through the SIP Call-ID of
the transferer's channel.

After a reconnect, :meth:`Tracker.resync` rebuilds the channel table from CoreShowChannels and
BridgeList and settles every transfer whose parties changed during the outage: a blind
transfer whose transferred party and recipient now share a bridge completed; a party that is
gone hung up (transferred first, then initiator, then recipient), per the hangup table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from referee.audit.correlate import Correlator
from referee.audit.store import AuditStore
from referee.events import FINAL_STATES, PbxEvent
from referee.orchestrator.channels import Channel, ChannelTable
from referee.orchestrator.transfer import Flow, Role, State, Transfer

log = logging.getLogger(__name__)

KEEP_FINISHED = 1000  # ended transfers kept in memory for get()

# Events about a transfer's channels that go into its audit record.
RECORDED = frozenset(
    {
        "BlindTransfer",
        "AttendedTransfer",
        "DialBegin",
        "DialEnd",
        "Hangup",
        "BridgeEnter",
        "BridgeLeave",
        "Newstate",
        "LocalOptimizationBegin",
        "LocalOptimizationEnd",
    }
)
_UID_KEYS = (
    "Uniqueid",
    "DestUniqueid",
    "SwapUniqueid",
    "TransfererUniqueid",
    "TransfereeUniqueid",
    "OrigTransfererUniqueid",
    "SecondTransfererUniqueid",
    "TransferTargetUniqueid",
    "LocalOneUniqueid",
    "LocalTwoUniqueid",
)


class Tracker:
    def __init__(
        self,
        pbx: str,
        store: AuditStore,
        *,
        table: ChannelTable | None = None,
    ) -> None:
        self.pbx = pbx
        self.store = store
        self.correlator = Correlator(store)
        self.table = table if table is not None else ChannelTable()
        self.active: dict[int, Transfer] = {}
        self.finished: dict[int, Transfer] = {}  # ended while this process ran, for get()

    # -- transfers ------------------------------------------------------------------------

    def _finish(self, transfer: Transfer) -> None:
        self.finished[transfer.id] = transfer
        while len(self.finished) > KEEP_FINISHED:  # the audit store keeps them all
            del self.finished[next(iter(self.finished))]

    def add(self, transfer: Transfer) -> None:
        if transfer.final:
            self._finish(transfer)
        else:
            self.active[transfer.id] = transfer

    def get(self, transfer_id: int) -> Transfer | None:
        return self.active.get(transfer_id) or self.finished.get(transfer_id)

    def move(self, transfer: Transfer, state: State, result: str = "") -> None:
        if transfer.move(state, result):
            self._saved(transfer)

    def _saved(self, transfer: Transfer) -> None:
        record = self.store.state_of(transfer.id)
        if record is not None and record not in FINAL_STATES:
            self.store.update(
                transfer.id, state=str(transfer.state), result=transfer.result or None, parties=transfer.names
            )
        elif record is not None:
            self.store.update(transfer.id, parties=transfer.names)
        if transfer.final:
            self.active.pop(transfer.id, None)
            self._finish(transfer)

    def _name(self, transfer: Transfer, role: Role, uniqueid: str, name: str = "") -> None:
        channel = self.table.get(uniqueid)
        transfer.names[str(role)] = name or (channel.name if channel else uniqueid)

    # -- events ---------------------------------------------------------------------------

    def handle(self, event: Mapping[str, str]) -> None:
        kind = event.get("Event", "")
        if kind == "Hangup":
            self._record(event)
            self._hangup(event.get("Uniqueid", ""))
            self.table.apply(event)
            return
        self.table.apply(event)
        self._record(event)
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, event)

    def _record(self, event: Mapping[str, str]) -> None:
        """Put an event about a followed transfer's channels into its audit record."""
        kind = event.get("Event", "")
        if kind not in RECORDED:
            return
        uids = {event[key] for key in _UID_KEYS if event.get(key)}
        for transfer in self.active.values():
            if uids & {transfer.initiator, transfer.transferred, transfer.recipient}:
                self.store.add_entry(transfer.id, self._pbx_event(kind, event))

    def _pbx_event(self, name: str, fields: Mapping[str, str]) -> PbxEvent:
        return PbxEvent(self.store.now(), self.pbx, name, dict(fields))

    def _hangup(self, uniqueid: str) -> None:
        for transfer in list(self.active.values()):
            role = transfer.role_of(uniqueid)
            if role is not None and transfer.hangup(role):
                self._saved(transfer)

    def _newchannel(self, event: Mapping[str, str]) -> None:
        name = event.get("Channel", "")
        if not name.startswith("Local/") or not name.endswith(";1"):
            return
        for transfer in self.active.values():
            if (
                transfer.flow == Flow.ATTENDED
                and transfer.state == State.STARTING
                and transfer.recipient is None
                and name.startswith(f"Local/{transfer.exten}@{transfer.context}-")
            ):
                transfer.recipient = event.get("Uniqueid", "")
                self._name(transfer, Role.RECIPIENT, transfer.recipient, name)
                self.move(transfer, State.RINGBACK)
                return

    def _newstate(self, event: Mapping[str, str]) -> None:
        if event.get("ChannelState") != "6":
            return
        uid = event.get("Uniqueid", "")
        for transfer in list(self.active.values()):
            if (
                transfer.flow == Flow.ATTENDED
                and transfer.state == State.RINGBACK
                and uid == transfer.recipient
            ):
                self.move(transfer, State.ANSWERED)

    def _dial_begin(self, event: Mapping[str, str]) -> None:
        caller = event.get("Uniqueid", "")
        for transfer in list(self.active.values()):
            if (
                transfer.flow == Flow.BLIND
                and caller
                and caller == transfer.transferred
                and transfer.state in (State.STARTING, State.RINGBACK)
                and transfer.recipient is None
            ):
                transfer.recipient = event.get("DestUniqueid", "")
                self._name(transfer, Role.RECIPIENT, transfer.recipient, event.get("DestChannel", ""))
                self.move(transfer, State.RINGBACK)

    def _dial_end(self, event: Mapping[str, str]) -> None:
        caller = event.get("Uniqueid", "")
        status = event.get("DialStatus", "")
        for transfer in list(self.active.values()):
            if transfer.flow != Flow.BLIND or not caller or caller != transfer.transferred:
                continue
            if transfer.recipient not in (None, event.get("DestUniqueid")):
                continue
            if status == "ANSWER":
                self.move(transfer, State.ANSWERED)
                self._check_bridged(transfer)
            elif status:
                self.move(transfer, State.FAILED, f"the recipient did not answer: {status}")

    def _bridge_enter(self, event: Mapping[str, str]) -> None:
        swap = event.get("SwapUniqueid", "")
        uid = event.get("Uniqueid", "")
        for transfer in list(self.active.values()):
            if swap and swap == transfer.recipient:
                transfer.recipient = uid
                self._name(transfer, Role.RECIPIENT, uid, event.get("Channel", ""))
                channel = self.table.get(uid)
                if transfer.state == State.RINGBACK and channel is not None and channel.answered:
                    self.move(transfer, State.ANSWERED)
            self._check_bridged(transfer)

    def _check_bridged(self, transfer: Transfer) -> None:
        if transfer.flow != Flow.BLIND or transfer.state not in (State.RINGBACK, State.ANSWERED):
            return
        moved, target = self.table.get(transfer.transferred), self.table.get(transfer.recipient)
        if moved is not None and target is not None and moved.bridge and moved.bridge == target.bridge:
            self.move(transfer, State.COMPLETED, "the recipient answered")

    def _blind_transfer(self, event: Mapping[str, str]) -> None:
        transferer = event.get("TransfererUniqueid", "")
        transferee = event.get("TransfereeUniqueid", "") or None
        success = event.get("Result") == "Success"
        for transfer in self.active.values():
            if transfer.flow == Flow.BLIND and transfer.initiator == transferer:
                if transfer.transferred is None and transferee:
                    transfer.transferred = transferee
                    self._name(transfer, Role.TRANSFERRED, transferee, event.get("TransfereeChannel", ""))
                if success:
                    self.move(transfer, State.RINGBACK)
                else:
                    self.move(transfer, State.FAILED, f"BlindTransfer {event.get('Result', '?')}")
                return
        transfer = self._observed(
            Flow.BLIND,
            event,
            initiator=(transferer, event.get("TransfererChannel", "")),
            transferred=(transferee, event.get("TransfereeChannel", "")),
            exten=event.get("Extension", ""),
            context=event.get("Context", ""),
        )
        self.move(
            transfer, State.RINGBACK if success else State.FAILED, "" if success else "BlindTransfer failed"
        )

    def _attended_transfer(self, event: Mapping[str, str]) -> None:
        ends = {event.get("OrigTransfererUniqueid", ""), event.get("SecondTransfererUniqueid", "")} - {""}
        success = event.get("Result") == "Success"
        how = f"AttendedTransfer {event.get('Result', '?')} ({event.get('DestType', '?')})"
        for transfer in list(self.active.values()):
            if transfer.flow == Flow.ATTENDED and transfer.initiator in ends:
                if transfer.transferred is None and event.get("TransfereeUniqueid"):
                    transfer.transferred = event["TransfereeUniqueid"]
                    self._name(
                        transfer, Role.TRANSFERRED, transfer.transferred, event.get("TransfereeChannel", "")
                    )
                self.move(transfer, State.COMPLETED if success else State.FAILED, how)
                return
        transfer = self._observed(
            Flow.ATTENDED,
            event,
            initiator=(event.get("OrigTransfererUniqueid", ""), event.get("OrigTransfererChannel", "")),
            transferred=(event.get("TransfereeUniqueid") or None, event.get("TransfereeChannel", "")),
            recipient=(event.get("TransferTargetUniqueid") or None, event.get("TransferTargetChannel", "")),
            second=(event.get("SecondTransfererUniqueid", ""), event.get("SecondTransfererChannel", "")),
        )
        self.move(transfer, State.COMPLETED if success else State.FAILED, how)

    def _observed(
        self,
        flow: Flow,
        event: Mapping[str, str],
        *,
        initiator: tuple[str, str],
        transferred: tuple[str | None, str],
        recipient: tuple[str | None, str] = (None, ""),
        second: tuple[str, str] = ("", ""),
        exten: str = "",
        context: str = "",
    ) -> Transfer:
        """A transfer the PBX did on its own (phone REFER, DTMF): find or open its audit record."""
        origin = "refer" if event.get("IsExternal") == "Yes" else "pbx"
        call_ids = [
            c.call_id for c in (self.table.get(initiator[0]), self.table.get(second[0])) if c and c.call_id
        ]
        names = {"initiator": initiator[1]}
        if transferred[1]:
            names["transferred"] = transferred[1]
        if recipient[1]:
            names["recipient"] = recipient[1]
        if second[1]:
            names["second_transferer"] = second[1]
        if exten:
            names["destination"] = f"{exten}@{context}"
        record_id = self.correlator.pbx_transfer(
            call_ids, self._pbx_event(event.get("Event", ""), event), flow=flow, parties=names
        )
        transfer = Transfer(
            id=record_id,
            pbx=self.pbx,
            flow=flow,
            origin=origin,
            initiator=initiator[0],
            transferred=transferred[0],
            recipient=recipient[0],
            exten=exten,
            context=context,
            state=State.STARTING,
            names=names,
        )
        self.add(transfer)
        return transfer

    # -- resync ---------------------------------------------------------------------------

    def resync(
        self,
        channel_items: Iterable[Mapping[str, str]],
        bridge_items: Iterable[Mapping[str, str]],
        *,
        replay: Iterable[Mapping[str, str]] = (),
    ) -> None:
        """Rebuild the table from a snapshot, then ``replay`` the events received since it was asked
        for (each sets state outright, so those the snapshot already shows change nothing)."""
        self.table.load(channel_items, bridge_items)
        for event in replay:
            self.table.apply(event)
        for transfer in list(self.active.values()):
            self._check_bridged(transfer)
            for role, uid in (
                (Role.TRANSFERRED, transfer.transferred),
                (Role.INITIATOR, transfer.initiator),
                (Role.RECIPIENT, transfer.recipient),
            ):
                if transfer.final or uid is None or uid in self.table.channels:
                    continue
                if transfer.hangup(role):
                    gone = self._pbx_event("resync", {"gone": str(role), "uniqueid": uid})
                    self.store.add_entry(transfer.id, gone)
                    self._saved(transfer)

    def channels(self) -> list[Channel]:
        return list(self.table.channels.values())


_HANDLERS: dict[str, Callable[[Tracker, Mapping[str, str]], None]] = {
    "Newchannel": Tracker._newchannel,
    "Newstate": Tracker._newstate,
    "DialBegin": Tracker._dial_begin,
    "DialEnd": Tracker._dial_end,
    "BridgeEnter": Tracker._bridge_enter,
    "BlindTransfer": Tracker._blind_transfer,
    "AttendedTransfer": Tracker._attended_transfer,
}
