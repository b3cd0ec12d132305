"""The correlator: joins the proxy's events and the PBX's transfer events into transfer records.

The audit ingest hands it the proxy's events, the orchestrator's tracker the PBX's transfer
events. Records are found by SIP Call-ID and REFER CSeq, and by what the record's typed entries
say; never by matching text.

- A REFER decision or response (key: Call-ID, the REFER's CSeq) goes to the record with that key;
  else to the newest record of the Call-ID that the PBX side opened and no REFER has claimed
  (origin ``pbx``, no REFER CSeq), which takes the CSeq and becomes origin ``refer``; else to a
  new record.
- A NOTIFY outcome with a ``refer_cseq`` (its ``Event: refer;id=``) goes the same way with that
  CSeq. Without one (Asterisk sends none) it goes to the newest record of the Call-ID, else to a
  new record.
- A PBX transfer event (``BlindTransfer``, ``AttendedTransfer``) knows no CSeq, only the Call-IDs
  of the transferer's channels, tried in order. It joins the newest record of such a Call-ID that
  is a REFER's or the PBX's (not an operator's), whose REFER was not refused (no refusing
  decision, no response of 300 or more) and that no PBX transfer event has joined yet; else it
  opens a record of origin ``pbx``. It keeps the flow of the REFER's decision: an attended REFER
  whose replaced dialog is on another PBX is a ``BlindTransfer`` on the REFER's PBX.

- A proxy reply (``proxy.reply``: the proxy's own 503, 408 or 500 to an INVITE or another request)
  goes to the newest record of its Call-ID (a re-INVITE or a BYE in a transfer's dialog) and opens
  none: a call that never reached its PBX is no transfer.

What the proxy's events do to the record's state: a refused REFER (the decision, or a response of
300 or more) is ``failed``; a 2xx with ``Refer-Sub: false`` (RFC 4488: no subscription, so no NOTIFY)
is ``unconfirmed``, the outcome unknown by design; a provisional NOTIFY moves ``starting`` to
``ringback``; a final NOTIFY makes it ``completed`` (2xx) or ``failed``. A final state is never
overwritten: the first final word stands, so a 100 NOTIFY read after the 200 does not undo the
completion. The PBX side's moves are the orchestrator's (:mod:`referee.orchestrator.transfer`).

``completed`` must agree with the PBX where the record has its view (:mod:`referee.audit.evidence`): a
NOTIFY 200 for a transfer the PBX reports failed makes the record ``failed`` (``pbx reports Fail``), and
a record completed on a NOTIFY 200 before the PBX's contrary event arrived is failed when it does (the
store reassesses a record whenever a PBX event joins it). Every record says what its outcome rests on
(``evidence``): ``pbx: AttendedTransfer Success + target bridged``, or ``notify-200 (proxy view only)``.

An attended transfer across PBXs: the REFER's PBX dials the Refer-To with Replaces and the PBX holding
the replaced dialog swaps the new call in for it (``BridgeEnter`` with ``SwapUniqueid``), which knows
no REFER, only the SIP Call-ID of the replaced channel (:meth:`Correlator.pbx_replaced`). That event
joins the record whose decision names that dialog (``decision.replaces.call_id``); written before the
decision (another host's ingest may be behind), it opens a record of origin ``replaces``, which the
decision absorbs when it comes.

Every accepted REFER reaches a final state within a bound: a ``pbx.health`` event saying its PBX
went down fails it at once (``pbx lost``), and :meth:`Correlator.expire` fails one whose PBX said
nothing more for ``NOTIFY_TIMEOUT`` seconds (``no final NOTIFY``). A REFER accepted with
``Refer-Sub: false`` is already final (``unconfirmed``): no NOTIFY is owed.
"""

from __future__ import annotations

from collections.abc import Sequence

from referee.audit.evidence import TRANSFER_EVENTS, assess
from referee.audit.record import TransferRecord
from referee.audit.store import AuditStore
from referee.events import (
    BadEvent,
    Event,
    Flow,
    NotifyOutcome,
    PbxEvent,
    PbxHealth,
    ProxyReply,
    ReferDecision,
    ReferResponse,
    State,
)

ProxyEvent = ReferDecision | ReferResponse | NotifyOutcome

# Seconds an accepted REFER may wait for its PBX's next word (a NOTIFY) before it is failed: RFC 3515's
# advice for the NOTIFY a REFER's subscription starts with (Timer F, 64*T1 = 32 s).
NOTIFY_TIMEOUT = 32.0
PBX_LOST = "pbx lost"
NO_FINAL_NOTIFY = "no final NOTIFY"

# How many of the newest records a replaced dialog's PBX event looks through for its REFER.
RECENT_RECORDS = 200
REPLACES = "replaces"  # the origin of a record opened by the PBX that held a replaced dialog


def flow_of(decision: ReferDecision) -> Flow:
    # A Refer-To with Replaces refused before the policy ran (replaces-unknown) has no dialog in the
    # decision; its Refer-To still says what was asked.
    if decision.replaces or "replaces=" in (decision.refer_to or "").lower():
        return Flow.ATTENDED
    return Flow.BLIND


def replaced_call_id(decision: ReferDecision) -> str | None:
    """The Call-ID of the dialog an attended REFER's Refer-To replaces (the policy's reading of it)."""
    replaces = decision.decision.get("replaces")
    call_id = replaces.get("call_id") if isinstance(replaces, dict) else None
    return call_id if isinstance(call_id, str) and call_id else None


def refused(record: TransferRecord) -> bool:
    """Whether the record's REFER was refused: by the proxy, or answered 300 or more downstream."""
    return any(
        (isinstance(event, ReferDecision) and not event.allowed)
        or (isinstance(event, ReferResponse) and event.status >= 300)
        for event in record.events()
    )


def joined_by_pbx(record: TransferRecord) -> bool:
    return any(isinstance(event, PbxEvent) and event.name in TRANSFER_EVENTS for event in record.events())


def accepted_decision(record: TransferRecord) -> ReferDecision | None:
    """The allowed decision of a REFER that asked for NOTIFYs (None: refused, or Refer-Sub: false)."""
    for event in record.events():
        if isinstance(event, ReferDecision) and event.allowed and event.subscription:
            return event
    return None


def sent_to(record: TransferRecord, decision: ReferDecision, health: PbxHealth) -> bool:
    """Whether the PBX ``health`` is about holds the transfer: the one the proxy's decision named
    (the policy's PBX URI, the PBX of the replaced dialog) or the one the orchestrator saw do it."""
    named = decision.decision.get("pbx")
    if health.uri and isinstance(named, str) and named == health.uri:
        return True
    return bool(health.pbx) and health.pbx in (decision.replaces_pbx, record.pbx)


class Correlator:
    def __init__(self, store: AuditStore, *, notify_timeout: float = NOTIFY_TIMEOUT) -> None:
        self.store = store
        self.notify_timeout = notify_timeout

    # -- the proxy's side -------------------------------------------------------------------

    def proxy(self, event: Event) -> int:
        """Record one of the proxy's events; the id of the record it went to. :class:`BadEvent` for
        an event the proxy does not write."""
        if not isinstance(event, ReferDecision | ReferResponse | NotifyOutcome):
            raise BadEvent(f"{event.kind} is not one of the proxy's events")
        with self.store.transaction():
            transfer_id = self._record_for(event)
            record = self.store.get(transfer_id)
            assert record is not None
            self.store.add_entry(transfer_id, event)
            if isinstance(event, NotifyOutcome):
                self._notified(record, event)
            elif isinstance(event, ReferDecision):
                self._decided(record, event)
                self._absorb_replaced(transfer_id, event)
            else:
                self._answered(record, event)
            return transfer_id

    def _record_for(self, event: ProxyEvent) -> int:
        refer_cseq = event.refer_cseq if isinstance(event, NotifyOutcome) else event.cseq
        if refer_cseq is None:
            found = self.store.find(event.call_id)
        else:
            found = self.store.find(event.call_id, str(refer_cseq))
            if found is None:
                found = self._opened_by_pbx(event.call_id)
                if found is not None:
                    self.store.update(found, refer_cseq=str(refer_cseq), origin="refer", when=event.time)
        if found is not None:
            return found
        decision = event if isinstance(event, ReferDecision) else None
        return self.store.create(
            "refer",
            call_id=event.call_id,
            refer_cseq=None if refer_cseq is None else str(refer_cseq),
            flow=None if decision is None else flow_of(decision),
            parties={"referrer": decision.referrer} if decision is not None and decision.referrer else {},
            when=event.time,
            cause=event.kind,
        )

    def _opened_by_pbx(self, call_id: str) -> int | None:
        """A record the PBX side opened for this Call-ID that no REFER has claimed yet."""
        found = self.store.find(call_id)
        record = None if found is None else self.store.get(found)
        if record is None or record.refer_cseq is not None or record.origin != "pbx":
            return None
        return record.id

    def _notified(self, record: TransferRecord, event: NotifyOutcome) -> None:
        if event.status is None or record.final:
            return
        if event.final:
            state = State.COMPLETED if event.status < 300 else State.FAILED
            result = f"NOTIFY {event.status} {event.reason}".strip()
            now = self.store.get(record.id)  # with this NOTIFY: the PBX may already have said otherwise
            contradiction = None if now is None else assess(now).contradiction
            if state == State.COMPLETED and contradiction:
                state, result = State.FAILED, f"{contradiction} (NOTIFY {event.status} says otherwise)"
            self.store.update(
                record.id,
                state=state,
                result=result,
                when=event.time,
                cause=f"NOTIFY {event.status}",
            )
        elif record.state == State.STARTING:
            self.store.update(
                record.id, state=State.RINGBACK, when=event.time, cause=f"NOTIFY {event.status}"
            )

    def _answered(self, record: TransferRecord, event: ReferResponse) -> None:
        if record.final:
            return
        if event.status >= 300:
            state, result = State.FAILED, f"REFER answered {event.status}"
        elif not event.subscription:
            # Refer-Sub: false (RFC 4488): no NOTIFY will come, so nobody will tell how it ended.
            state = State.UNCONFIRMED
            result = f"REFER answered {event.status} with Refer-Sub: false: outcome unknown by design"
        else:
            return
        self.store.update(record.id, state=state, result=result, when=event.time, cause=event.kind)

    def _decided(self, record: TransferRecord, event: ReferDecision) -> None:
        parties = {"referrer": event.referrer} if event.referrer else {}
        if event.target:
            parties["target"] = event.target
        failed = not event.allowed and not record.final
        self.store.update(
            record.id,
            flow=flow_of(event),
            parties=parties,
            state=State.FAILED if failed else None,
            result=f"rejected {event.status} {event.reason}".strip() if failed else None,
            policy_version=event.policy_version,
            when=event.time,
            cause=event.kind,
        )

    def proxy_reply(self, event: ProxyReply) -> int | None:
        """Record the proxy's own answer to a request in the newest record of its Call-ID; None (not
        stored) when no transfer has that Call-ID."""
        found = self.store.find(event.call_id) if event.call_id else None
        if found is not None:
            self.store.add_entry(found, event)
        return found

    # -- the bound on every transfer ----------------------------------------------------------

    def pbx_health(self, event: PbxHealth) -> list[int]:
        """A PBX went down: every open transfer it holds is ``failed`` (``pbx lost``). The ids."""
        if event.up:
            return []
        lost = []
        with self.store.transaction():
            for transfer_id in self.store.open_ids("refer"):
                record = self.store.get(transfer_id)
                decision = None if record is None else accepted_decision(record)
                if record is None or decision is None or not sent_to(record, decision, event):
                    continue
                self.store.add_entry(transfer_id, event)
                self.store.update(
                    transfer_id, state=State.FAILED, result=PBX_LOST, when=event.time, cause=event.kind
                )
                lost.append(transfer_id)
        return lost

    def expire(self, now: float) -> list[int]:
        """Fail every open REFER whose PBX said nothing for ``notify_timeout`` seconds (``no final
        NOTIFY``): the last entry (the decision, the 202, a provisional NOTIFY) is that old. The ids."""
        expired = []
        with self.store.transaction():
            for transfer_id in self.store.open_ids("refer"):
                record = self.store.get(transfer_id)
                if record is None or accepted_decision(record) is None or not record.entries:
                    continue
                last = max(entry.time for entry in record.entries)
                if now - last < self.notify_timeout:
                    continue
                self.store.update(
                    transfer_id,
                    state=State.FAILED,
                    result=NO_FINAL_NOTIFY,
                    when=now,
                    cause=f"no NOTIFY for {self.notify_timeout:g} s",
                )
                expired.append(transfer_id)
        return expired

    # -- the PBX's side ---------------------------------------------------------------------

    def pbx_transfer(
        self, call_ids: Sequence[str], event: PbxEvent, *, flow: str, parties: dict[str, str]
    ) -> int:
        """Record a PBX transfer event the orchestrator did not start: in the record of the REFER
        that asked for it when there is one (see the rules above), else in a new one."""
        with self.store.transaction():
            record = self._claimable(call_ids)
            if record is None:
                record_id = self.store.create(
                    "pbx",
                    call_id=call_ids[0] if call_ids else None,
                    flow=flow,
                    pbx=event.pbx,
                    parties=parties,
                    when=event.time,
                    cause=event.name,
                )
            else:
                record_id = record.id
                # The REFER's Refer-To says which flow was asked: an attended REFER whose replaced
                # dialog is on another PBX is a BlindTransfer (external Replaces) on the REFER's PBX.
                decided = any(isinstance(e, ReferDecision) for e in record.events())
                self.store.update(
                    record_id, flow=None if decided else flow, pbx=event.pbx, parties=parties, when=event.time
                )
            self.store.add_entry(record_id, event)
            return record_id

    def _claimable(self, call_ids: Sequence[str]) -> TransferRecord | None:
        for call_id in call_ids:
            found = self.store.find(call_id)
            record = None if found is None else self.store.get(found)
            if record is None or record.origin not in ("refer", "pbx"):
                continue
            if refused(record) or joined_by_pbx(record):
                continue
            return record
        return None

    # -- the PBX that held a replaced dialog --------------------------------------------------

    def pbx_replaced(self, call_id: str, event: PbxEvent) -> int:
        """Record a PBX's swap of a call in for the dialog ``call_id`` (an INVITE with Replaces): in the
        record of the REFER whose decision named that dialog, else in a new record of origin
        ``replaces`` that the decision absorbs when it is read."""
        with self.store.transaction():
            record_id = self._replacing(call_id)
            if record_id is None:
                record_id = self.store.create(
                    REPLACES,
                    call_id=call_id,
                    flow=Flow.ATTENDED,
                    pbx=event.pbx,
                    when=event.time,
                    cause=event.name,
                )
            self.store.add_entry(record_id, event)
            return record_id

    def _replacing(self, call_id: str) -> int | None:
        """The newest REFER record whose allowed decision replaces the dialog ``call_id``."""
        for summary in self.store.records(limit=RECENT_RECORDS):
            if summary.origin != "refer" or summary.flow != Flow.ATTENDED:
                continue
            record = self.store.get(summary.id)
            if record is not None and any(
                isinstance(e, ReferDecision) and e.allowed and replaced_call_id(e) == call_id
                for e in record.events()
            ):
                return record.id
        return None

    def _absorb_replaced(self, transfer_id: int, decision: ReferDecision) -> None:
        """The events a replaced dialog's PBX wrote before this decision was read join its record."""
        call_id = replaced_call_id(decision)
        if not decision.allowed or call_id is None:
            return
        found = self.store.find(call_id)
        record = None if found is None else self.store.get(found)
        if record is not None and record.origin == REPLACES and record.id != transfer_id:
            self.store.absorb(transfer_id, record.id)
