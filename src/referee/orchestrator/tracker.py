"""Following transfers on one PBX from its AMI events, and writing what happens to the audit trail.

Each AMI event is applied to the channel table, then turned into a trigger for the transfers
whose channels it names (found through :class:`ActiveTransfers`' channel index, not by scanning),
and :meth:`Tracker.fire` looks the move up in :data:`referee.orchestrator.moves.MOVES`, keyed by
(flow, state, trigger). Every move goes through :meth:`Tracker._moved`: logged
(``transfer 7: ringback -> answered on BridgeEnter``) and handed to the audit store.

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
from referee.events import FINAL_STATES, Flow, PbxEvent, State, TransferMove
from referee.orchestrator.active import ActiveTransfers
from referee.orchestrator.channels import Channel, ChannelTable
from referee.orchestrator.moves import HANGUP_OF, Trigger, hangup_outcome, next_state
from referee.orchestrator.transfer import Role, Transfer

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


def consultation_destination(name: str) -> tuple[str, str] | None:
    """``(exten, context)`` of an attended transfer's consultation channel, ``Local/<exten>@<context>-<n>;1``
    (None for any other channel)."""
    if not name.startswith("Local/") or not name.endswith(";1"):
        return None
    destination, dash, _ = name[len("Local/") : -len(";1")].rpartition("-")
    exten, at, context = destination.partition("@")
    return (exten, context) if dash and at else None


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
        self.active = ActiveTransfers()
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
            self.active.add(transfer)

    def get(self, transfer_id: int) -> Transfer | None:
        return self.active.get(transfer_id) or self.finished.get(transfer_id)

    def _bind(self, transfer: Transfer, role: Role, uniqueid: str, name: str = "") -> None:
        self.active.bind(transfer, role, uniqueid)
        channel = self.table.get(uniqueid)
        transfer.names[str(role)] = name or (channel.name if channel else uniqueid)

    def _followed(self, uniqueid: str, role: Role, flow: Flow | None = None) -> list[Transfer]:
        """The followed transfers in which ``uniqueid`` plays ``role`` (of ``flow``, when given)."""
        return [
            t
            for t in self.active.on_channel(uniqueid)
            if t.role_of(uniqueid) == role and (flow is None or t.flow == flow)
        ]

    # -- moves ----------------------------------------------------------------------------

    def fire(
        self,
        transfer: Transfer,
        trigger: Trigger,
        cause: str,
        result: str = "",
        *,
        new_party: tuple[Role, str, str] | None = None,
    ) -> bool:
        """Apply ``trigger`` (seen as ``cause``: an AMI event, an action) to ``transfer``, per the moves
        table; False when it does not apply in the transfer's state. ``new_party`` (role, uniqueid,
        channel name) is a party the trigger reveals, bound when the trigger applies."""
        after = next_state(transfer.flow, transfer.state, trigger)
        if after is None:
            return False
        if new_party is not None and transfer.party(new_party[0]) is None:
            self._bind(transfer, *new_party)
        if after != transfer.state:
            self._moved(transfer, after, cause, result)
        return True

    def _moved(self, transfer: Transfer, after: State, cause: str, result: str) -> None:
        """The one place a transfer changes state: logged, persisted, and no longer followed once final."""
        move = TransferMove(self.store.now(), transfer.id, transfer.state, after, cause, result)
        transfer.state = after
        if result:
            transfer.result = result
        log.info("%s on %s", move.describe(), self.pbx)
        self._persist(transfer, move)
        if transfer.final:
            self.active.discard(transfer)
            self._finish(transfer)

    def _persist(self, transfer: Transfer, move: TransferMove) -> None:
        """Hand a move to the audit store. A record already final (the proxy's NOTIFY may end it
        first) keeps its state and result; it still learns the parties. ``unconfirmed`` is the one
        exception: it says nobody could tell the outcome (a REFER with ``Refer-Sub: false``), and
        this PBX's final word tells it. One transaction: the proxy host's ingest may write the
        record between the read and the write."""
        with self.store.transaction():
            record = self.store.state_of(transfer.id)
            if record is None:
                return
            told = record == State.UNCONFIRMED and move.after in FINAL_STATES
            if record in FINAL_STATES and not told:
                self.store.update(transfer.id, parties=transfer.names, when=move.time)
            else:
                self.store.update(
                    transfer.id,
                    state=str(move.after),
                    result=transfer.result or None,
                    parties=transfer.names,
                    when=move.time,
                    cause=move.cause,
                )

    # -- events ---------------------------------------------------------------------------

    def handle(self, event: Mapping[str, str]) -> None:
        kind = event.get("Event", "")
        if kind == "Hangup":
            self._record(event)
            self._hangup(event)
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
        followed = {t.id: t for key in _UID_KEYS for t in self.active.on_channel(event.get(key, ""))}
        for transfer_id in sorted(followed):
            self.store.add_entry(transfer_id, self._pbx_event(kind, event))

    def _pbx_event(self, name: str, fields: Mapping[str, str]) -> PbxEvent:
        return PbxEvent(self.store.now(), self.pbx, name, dict(fields))

    def _hangup(self, event: Mapping[str, str]) -> None:
        uniqueid = event.get("Uniqueid", "")
        for transfer in self.active.on_channel(uniqueid):
            role = transfer.role_of(uniqueid)
            if role is not None:
                _, why = hangup_outcome(transfer.flow, transfer.state, role)
                self.fire(transfer, HANGUP_OF[role], "Hangup", why)

    def _newchannel(self, event: Mapping[str, str]) -> None:
        name = event.get("Channel", "")
        destination = consultation_destination(name)
        if destination is None:
            return
        party = (Role.RECIPIENT, event.get("Uniqueid", ""), name)
        for transfer in self.active.to_destination(*destination):
            if self.fire(transfer, Trigger.CONSULTATION, "Newchannel", new_party=party):
                return

    def _newstate(self, event: Mapping[str, str]) -> None:
        if event.get("ChannelState") == "6":  # Up
            for transfer in self._followed(event.get("Uniqueid", ""), Role.RECIPIENT):
                self.fire(transfer, Trigger.ANSWERED, "Newstate")

    def _dial_begin(self, event: Mapping[str, str]) -> None:
        party = (Role.RECIPIENT, event.get("DestUniqueid", ""), event.get("DestChannel", ""))
        for transfer in self._followed(event.get("Uniqueid", ""), Role.TRANSFERRED):
            self.fire(transfer, Trigger.DIALLING, "DialBegin", new_party=party)

    def _dial_end(self, event: Mapping[str, str]) -> None:
        status = event.get("DialStatus", "")
        for transfer in self._followed(event.get("Uniqueid", ""), Role.TRANSFERRED):
            if transfer.recipient not in (None, event.get("DestUniqueid")):
                continue
            if status == "ANSWER":
                self.fire(transfer, Trigger.DIAL_ANSWERED, "DialEnd")
                self._check_bridged(transfer, "DialEnd")
            elif status:
                self.fire(transfer, Trigger.DIAL_FAILED, "DialEnd", f"the recipient did not answer: {status}")

    def _bridge_enter(self, event: Mapping[str, str]) -> None:
        uid = event.get("Uniqueid", "")
        swap = event.get("SwapUniqueid", "")
        for transfer in self._followed(swap, Role.RECIPIENT):  # a Local channel optimised away
            self._bind(transfer, Role.RECIPIENT, uid, event.get("Channel", ""))
            channel = self.table.get(uid)
            if channel is not None and channel.answered:
                self.fire(transfer, Trigger.ANSWERED, "BridgeEnter")
        for transfer in self.active.on_channel(uid):
            self._check_bridged(transfer, "BridgeEnter")
        self._replaced(event)

    def _replaced(self, event: Mapping[str, str]) -> None:
        """A SIP call swapped in for a SIP channel: an INVITE with Replaces (another PBX carrying out
        an attended transfer across PBXs). The replaced channel's Call-ID is the dialog the REFER
        named, so the audit's correlator joins this to that REFER's record."""
        replaced = self.table.get(event.get("SwapUniqueid", ""))
        entering = self.table.get(event.get("Uniqueid", ""))
        if replaced is None or entering is None or not (replaced.is_pjsip and entering.is_pjsip):
            return
        if replaced.call_id and not self.active.on_channel(replaced.uniqueid):
            self.correlator.pbx_replaced(replaced.call_id, self._pbx_event("BridgeEnter", event))

    def _check_bridged(self, transfer: Transfer, cause: str) -> None:
        moved, target = self.table.get(transfer.transferred), self.table.get(transfer.recipient)
        if moved is not None and target is not None and moved.bridge and moved.bridge == target.bridge:
            self.fire(transfer, Trigger.BRIDGED, cause, "the recipient answered")

    def _blind_transfer(self, event: Mapping[str, str]) -> None:
        transferer = event.get("TransfererUniqueid", "")
        transferee = event.get("TransfereeUniqueid", "") or None
        success = event.get("Result") == "Success"
        result = "" if success else f"BlindTransfer {event.get('Result', '?')}"
        followed = self._followed(transferer, Role.INITIATOR, Flow.BLIND)
        if followed:
            transfer = followed[0]
            if transfer.transferred is None and transferee:
                self._bind(transfer, Role.TRANSFERRED, transferee, event.get("TransfereeChannel", ""))
        else:
            transfer = self._observed(
                Flow.BLIND,
                event,
                initiator=(transferer, event.get("TransfererChannel", "")),
                transferred=(transferee, event.get("TransfereeChannel", "")),
                exten=event.get("Extension", ""),
                context=event.get("Context", ""),
            )
            result = "" if success else "BlindTransfer failed"
        self.fire(transfer, Trigger.PBX_SUCCESS if success else Trigger.PBX_FAILURE, "BlindTransfer", result)

    def _attended_transfer(self, event: Mapping[str, str]) -> None:
        ends = (event.get("OrigTransfererUniqueid", ""), event.get("SecondTransfererUniqueid", ""))
        success = event.get("Result") == "Success"
        how = f"AttendedTransfer {event.get('Result', '?')} ({event.get('DestType', '?')})"
        followed = [t for uid in ends for t in self._followed(uid, Role.INITIATOR, Flow.ATTENDED)]
        if followed:
            transfer = followed[0]
            if transfer.transferred is None and event.get("TransfereeUniqueid"):
                self._bind(
                    transfer,
                    Role.TRANSFERRED,
                    event["TransfereeUniqueid"],
                    event.get("TransfereeChannel", ""),
                )
        else:
            transfer = self._observed(
                Flow.ATTENDED,
                event,
                initiator=(event.get("OrigTransfererUniqueid", ""), event.get("OrigTransfererChannel", "")),
                transferred=(event.get("TransfereeUniqueid") or None, event.get("TransfereeChannel", "")),
                recipient=(
                    event.get("TransferTargetUniqueid") or None,
                    event.get("TransferTargetChannel", ""),
                ),
                second=(event.get("SecondTransfererUniqueid", ""), event.get("SecondTransfererChannel", "")),
            )
        self.fire(transfer, Trigger.PBX_SUCCESS if success else Trigger.PBX_FAILURE, "AttendedTransfer", how)

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
            self._check_bridged(transfer, "resync")
            for role in (Role.TRANSFERRED, Role.INITIATOR, Role.RECIPIENT):
                uid = transfer.party(role)
                if transfer.final or uid is None or uid in self.table.channels:
                    continue
                after, why = hangup_outcome(transfer.flow, transfer.state, role)
                if after != transfer.state:
                    gone = self._pbx_event("resync", {"gone": str(role), "uniqueid": uid})
                    self.store.add_entry(transfer.id, gone)
                    self.fire(transfer, HANGUP_OF[role], "resync", why)

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
