"""The operations: blind, attended, complete, cancel. Thin: checks, one AMI action, the tracker does the rest.

AMI actions used (Asterisk 22):

=========  ===================================================================================
blind      ``BlindTransfer Channel=<initiator> Exten Context``: the PBX sends the party bridged
           with the initiator to ``Exten@Context``
attended   ``Atxfer Channel=<initiator> Exten Context``: the transferred party is held and the
           initiator consults the recipient (needs an ``atxfer`` code in features.conf's
           ``[featuremap]``: Asterisk refuses Atxfer without one)
complete   attended only: ``Hangup Channel=<initiator>``, which is how Asterisk completes an
           attended transfer (a "blond" transfer while the recipient still rings)
cancel     attended: ``CancelAtxfer Channel=<initiator>``; blind while it rings: ``Hangup`` of
           the recipient's channel
=========  ===================================================================================

An initiator is an endpoint (``PJSIP/1002``): while one of its transfers runs, on any PBX, a
second one is refused with :class:`Conflict`.
"""

from __future__ import annotations

import re

from referee.audit.store import AuditStore
from referee.events import Flow, OperatorAction, State
from referee.orchestrator.channels import Channel, endpoint_of
from referee.orchestrator.moves import Trigger
from referee.orchestrator.pbx import PbxLink, PbxUnavailable
from referee.orchestrator.tracker import Tracker
from referee.orchestrator.transfer import Role, Transfer

EXTEN = re.compile(r"[0-9A-Za-z*#+][0-9A-Za-z*#+_.-]{0,63}")
CONTEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")
DEFAULT_CONTEXT = "referee-transfer"


class OperationError(Exception):
    status = 400

    def __init__(self, message: str, transfer: Transfer | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.transfer = transfer


class Invalid(OperationError):
    status = 400


class NotFound(OperationError):
    status = 404


class Conflict(OperationError):
    status = 409


class Refused(OperationError):
    """The PBX answered the action with an error; the transfer is failed."""

    status = 502


class Unavailable(OperationError):
    status = 503


class Orchestrator:
    def __init__(self, store: AuditStore) -> None:
        self.store = store
        self.links: dict[str, PbxLink] = {}
        self.trackers: dict[str, Tracker] = {}

    def add_pbx(self, name: str, tracker: Tracker, link: PbxLink | None) -> None:
        self.trackers[name] = tracker
        if link is not None:
            self.links[name] = link

    # -- lookups --------------------------------------------------------------------------

    def get(self, transfer_id: int) -> Transfer | None:
        for tracker in self.trackers.values():
            found = tracker.get(transfer_id)
            if found is not None:
                return found
        return None

    def active(self) -> list[Transfer]:
        return [t for tracker in self.trackers.values() for t in tracker.active.values()]

    def busy(self, endpoint: str) -> Transfer | None:
        for transfer in self.active():
            if endpoint_of(transfer.names.get("initiator", "")) == endpoint:
                return transfer
        return None

    def _pbx(self, name: str) -> tuple[PbxLink, Tracker]:
        if name not in self.trackers:
            known = ", ".join(sorted(self.trackers)) or "none"
            raise NotFound(f"unknown PBX {name!r} (known: {known})")
        link = self.links.get(name)
        if link is None or not link.ready:
            raise Unavailable(f"PBX {name} is not connected")
        return link, self.trackers[name]

    @staticmethod
    def _initiator(tracker: Tracker, spec: str) -> Channel:
        found = tracker.table.resolve(spec)
        if not found:
            raise NotFound(
                f"no channel {spec!r} on {tracker.pbx} (give a channel name or an endpoint in a call)"
            )
        if len(found) > 1:
            names = ", ".join(sorted(c.name for c in found))
            raise Conflict(f"{spec!r} has {len(found)} calls on {tracker.pbx} ({names}): name the channel")
        return found[0]

    # -- operations -----------------------------------------------------------------------

    async def blind(self, pbx: str, channel: str, exten: str, context: str = DEFAULT_CONTEXT) -> Transfer:
        return await self._start(Flow.BLIND, pbx, channel, exten, context)

    async def attended(self, pbx: str, channel: str, exten: str, context: str = DEFAULT_CONTEXT) -> Transfer:
        return await self._start(Flow.ATTENDED, pbx, channel, exten, context)

    async def _start(self, flow: Flow, pbx: str, spec: str, exten: str, context: str) -> Transfer:
        if not EXTEN.fullmatch(exten):
            raise Invalid(f"exten {exten!r} is not a dialplan extension (digits, letters, * # + _ . -)")
        if not CONTEXT.fullmatch(context):
            raise Invalid(f"context {context!r} is not a dialplan context name")
        link, tracker = self._pbx(pbx)
        initiator = self._initiator(tracker, spec)
        peers = tracker.table.peers(initiator.uniqueid)
        if len(peers) != 1:
            raise Conflict(f"{initiator.name} is not in a two-party call (bridged with {len(peers)})")
        running = self.busy(initiator.endpoint)
        if running is not None:
            raise Conflict(
                f"{initiator.endpoint} already has transfer {running.id} running ({running.state})", running
            )
        names = {
            "initiator": initiator.name,
            "transferred": peers[0].name,
            "destination": f"{exten}@{context}",
        }
        record_id = self.store.create(
            "operator", call_id=initiator.call_id, flow=str(flow), pbx=pbx, parties=names
        )
        transfer = Transfer(
            id=record_id,
            pbx=pbx,
            flow=flow,
            origin="operator",
            initiator=initiator.uniqueid,
            transferred=peers[0].uniqueid,
            exten=exten,
            context=context,
            names=names,
        )
        tracker.add(transfer)  # before the action: its events may beat its response
        action = "BlindTransfer" if flow == Flow.BLIND else "Atxfer"
        await self._act(
            link,
            tracker,
            transfer,
            {"Action": action, "Channel": initiator.name, "Exten": exten, "Context": context},
        )
        return transfer

    async def complete(self, transfer_id: int) -> Transfer:
        transfer, link, tracker = self._running(transfer_id, "complete")
        if transfer.flow == Flow.BLIND:
            raise Conflict(
                f"transfer {transfer_id} is blind: it completes when the recipient answers", transfer
            )
        if transfer.state == State.STARTING:
            raise Conflict(f"transfer {transfer_id} has not reached its recipient yet", transfer)
        name = transfer.names.get(str(Role.INITIATOR), "")
        await self._act(link, tracker, transfer, {"Action": "Hangup", "Channel": name, "Cause": "16"})
        return transfer

    async def cancel(self, transfer_id: int) -> Transfer:
        transfer, link, tracker = self._running(transfer_id, "cancel")
        if transfer.state == State.STARTING:
            raise Conflict(f"transfer {transfer_id} is starting: the PBX has not acted on it yet", transfer)
        if transfer.flow == Flow.ATTENDED:
            fields = {"Action": "CancelAtxfer", "Channel": transfer.names.get(str(Role.INITIATOR), "")}
        else:
            recipient = tracker.table.get(transfer.recipient)
            if transfer.state != State.RINGBACK or recipient is None:
                raise Conflict(
                    f"transfer {transfer_id} is blind and no longer ringing: too late to cancel", transfer
                )
            fields = {"Action": "Hangup", "Channel": recipient.name, "Cause": "16"}
        if await self._act(link, tracker, transfer, fields):
            tracker.fire(transfer, Trigger.CANCEL, f"{fields['Action']} action", "cancelled by the operator")
        return transfer

    def _running(self, transfer_id: int, what: str) -> tuple[Transfer, PbxLink, Tracker]:
        transfer = self.get(transfer_id)
        if transfer is None:
            if self.store.state_of(transfer_id) is not None:
                raise Conflict(
                    f"transfer {transfer_id} is not followed by this orchestrator (see its record)"
                )
            raise NotFound(f"no transfer {transfer_id}")
        if transfer.final:
            raise Conflict(f"transfer {transfer_id} is already {transfer.state}: cannot {what}", transfer)
        if transfer.origin != "operator":
            raise Conflict(
                f"transfer {transfer_id} was started by a phone, not by the orchestrator", transfer
            )
        link, tracker = self._pbx(transfer.pbx)
        return transfer, link, tracker

    async def _act(self, link: PbxLink, tracker: Tracker, transfer: Transfer, fields: dict[str, str]) -> bool:
        try:
            answer = await link.action(fields)
        except PbxUnavailable as exc:
            self.store.add_entry(
                transfer.id, OperatorAction(self.store.now(), transfer.pbx, fields, error=str(exc))
            )
            tracker.fire(transfer, Trigger.ACTION_FAILED, f"{fields['Action']} action", str(exc))
            raise Unavailable(str(exc), transfer) from None
        ok = answer.get("Response") == "Success"
        self.store.add_entry(
            transfer.id,
            OperatorAction(
                self.store.now(),
                transfer.pbx,
                fields,
                response=answer.get("Response", ""),
                message=answer.get("Message", ""),
            ),
        )
        if not ok:
            message = f"PBX refused {fields['Action']}: {answer.get('Message', 'no reason given')}"
            tracker.fire(transfer, Trigger.ACTION_FAILED, f"{fields['Action']} action", message)
            raise Refused(message, transfer)
        return True
