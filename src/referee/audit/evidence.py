"""What a transfer record's outcome rests on: the PBX's own view (its AMI events) or the proxy's alone.

``completed`` means what an operator thinks it means: the target answered and the transferee is connected
to it. The PBX that carries the calls knows that; the proxy only relays the NOTIFYs the PBX sends the
referrer. So where a record holds the PBX's word on the transfer (its ``BlindTransfer`` or
``AttendedTransfer`` event, and what followed on the target's channel) that word decides, and a NOTIFY 200
the PBX contradicts does not make the record ``completed``. Where it holds none (a proxy-only site, a PBX
the orchestrator does not watch), the final NOTIFY is the evidence and the record says so.

:func:`assess` reads a record and says both: the evidence text stored with it (``evidence``), and, when
the PBX reports the transfer failed, why (``contradiction``: ``pbx reports Fail``).
"""

from __future__ import annotations

from dataclasses import dataclass

from referee.audit.record import TransferRecord
from referee.events import NotifyOutcome, PbxEvent

# The PBX events that say a transfer happened; a record joins at most one of them.
TRANSFER_EVENTS = frozenset({"BlindTransfer", "AttendedTransfer"})
UP = "6"  # an AMI ChannelState: the channel is answered


@dataclass(frozen=True, slots=True)
class Assessment:
    evidence: str | None  # None: nothing reported an outcome yet
    contradiction: str | None = None  # the PBX reports the transfer failed: its words


def transfer_event(record: TransferRecord) -> PbxEvent | None:
    """The PBX's BlindTransfer or AttendedTransfer event in the record (the first, if several)."""
    return next(
        (e for e in record.events() if isinstance(e, PbxEvent) and e.name in TRANSFER_EVENTS),
        None,
    )


def final_notify(record: TransferRecord) -> NotifyOutcome | None:
    """The last final NOTIFY in CSeq order."""
    finals = [n for n in record.notify_outcomes() if n.final]
    return finals[-1] if finals else None


def _pbx_events(record: TransferRecord, name: str) -> list[PbxEvent]:
    return [e for e in record.events() if isinstance(e, PbxEvent) and e.name == name]


def _blind_target(record: TransferRecord, transfer: PbxEvent) -> tuple[str | None, str | None]:
    """(``answered``/``bridged``/None, the dial status that failed) for a blind transfer: the
    transferee's dial to the target (DialEnd) and both of them entering one bridge (BridgeEnter)."""
    transferee = transfer.fields.get("TransfereeUniqueid", "")
    dials = [
        d for d in _pbx_events(record, "DialEnd") if not transferee or d.fields.get("Uniqueid") == transferee
    ]
    answered = [d for d in dials if d.fields.get("DialStatus") == "ANSWER"]
    if not answered:
        failed = [d.fields.get("DialStatus", "") for d in dials if d.fields.get("DialStatus")]
        return None, (failed[-1] if failed else None)
    target = answered[-1].fields.get("DestUniqueid", "")
    bridges: dict[str, set[str]] = {}
    for enter in _pbx_events(record, "BridgeEnter"):
        bridges.setdefault(enter.fields.get("BridgeUniqueid", ""), set()).add(
            enter.fields.get("Uniqueid", "")
        )
    together = any(target in uids and (not transferee or transferee in uids) for uids in bridges.values())
    return ("bridged" if together else "answered"), None


def _attended_target(transfer: PbxEvent) -> str | None:
    """``bridged`` when the transferee was moved into the target's bridge (``DestType: Bridge``),
    ``answered`` when the target's channel is up; None while it rings (a transfer completed early)."""
    if transfer.fields.get("Result") == "Success" and transfer.fields.get("DestType") == "Bridge":
        return "bridged"
    return "answered" if transfer.fields.get("TransferTargetChannelState") == UP else None


def assess(record: TransferRecord) -> Assessment:
    transfer = transfer_event(record)
    notify = final_notify(record)
    if transfer is None:
        if notify is None or notify.status is None:
            return Assessment(None)
        return Assessment(f"notify-{notify.status} (proxy view only)")
    result = transfer.fields.get("Result", "?")
    text = f"pbx: {transfer.name} {result}"
    contradiction = None if result == "Success" else f"pbx reports {result}"
    if transfer.name == "BlindTransfer":
        target, dial_failed = _blind_target(record, transfer)
        if contradiction is None and dial_failed is not None:
            contradiction = f"pbx reports DialEnd {dial_failed}"
            text += f" + target {dial_failed}"
    else:
        target = _attended_target(transfer)
    if target is not None:
        text += f" + target {target}"
    if notify is not None and notify.status is not None:
        said_ok = notify.status < 300
        if (said_ok and contradiction is not None) or (
            not said_ok and contradiction is None and target == "bridged"
        ):
            text += f"; NOTIFY {notify.status} disagrees"
    return Assessment(text, contradiction)
