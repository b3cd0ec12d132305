"""An audit record as read back: the transfer, its entries, its ladder and its NOTIFY outcomes.

Every entry is one of referee's typed events (:mod:`referee.events`): the store saves its
``to_dict()`` and reads it back with ``from_dict``, so nothing here knows a JSON key of an event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from referee.events import FINAL_STATES, Event, NotifyOutcome, PbxEvent, State


def label(event: Event) -> str:
    """What an entry is called in lists and ladders: the AMI event's name for a PBX event
    (``BlindTransfer``, ``Hangup``, ``resync``), the event kind for every other one."""
    return event.name if isinstance(event, PbxEvent) else event.kind


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing that happened to a transfer."""

    seq: int  # global insertion order
    transfer_id: int
    event: Event

    @property
    def time(self) -> float:
        return self.event.time

    @property
    def source(self) -> str:
        """proxy, notify, pbx, operator or state (the event's)."""
        return self.event.source

    @property
    def kind(self) -> str:
        return label(self.event)

    @property
    def cseq(self) -> int | None:
        """The NOTIFY's CSeq for a NOTIFY outcome: NOTIFYs take their ladder slots in its order."""
        return self.event.cseq if isinstance(self.event, NotifyOutcome) else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "source": self.source,
            "kind": self.kind,
            "cseq": self.cseq,
            "data": self.event.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class TransferRecord:
    id: int
    call_id: str | None
    refer_cseq: str | None
    origin: str  # "refer" (a phone's REFER), "operator" (API/CLI), "pbx" (seen only at the PBX)
    flow: str | None  # "blind", "attended" or None when not known yet
    pbx: str | None
    state: State
    result: str | None
    parties: dict[str, str]
    created: float
    updated: float
    ended: float | None
    entries: tuple[Entry, ...] = field(default=())
    # What the outcome rests on (referee.audit.evidence): ``pbx: AttendedTransfer Success + target
    # bridged``, ``notify-200 (proxy view only)``; None while nothing reported one.
    evidence: str | None = None
    policy_version: str | None = None  # the policy version of the proxy's decision on the REFER

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def events(self) -> list[Event]:
        """The entries' events, in the order they were recorded."""
        return [e.event for e in self.entries]

    def notify_outcomes(self) -> list[NotifyOutcome]:
        """The NOTIFY outcomes in CSeq order (a multi-worker proxy may log them out of order)."""
        return [e.event for e in self._notify_entries() if isinstance(e.event, NotifyOutcome)]

    def _notify_entries(self) -> list[Entry]:
        notifies = [e for e in self.entries if isinstance(e.event, NotifyOutcome)]
        return sorted(notifies, key=lambda e: (e.cseq if e.cseq is not None else -1, e.seq))

    def ladder(self) -> list[Entry]:
        """Entries in time order (the proxy's lines are read after the PBX's events of the same
        moment, so arrival order is not it), except that the NOTIFYs take their slots in CSeq order."""
        ordered = sorted(self.entries, key=lambda e: (e.time, e.seq))
        slots = [i for i, e in enumerate(ordered) if isinstance(e.event, NotifyOutcome)]
        for slot, entry in zip(slots, self._notify_entries(), strict=True):
            ordered[slot] = entry
        return ordered

    def to_dict(self, *, entries: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "call_id": self.call_id,
            "refer_cseq": self.refer_cseq,
            "origin": self.origin,
            "flow": self.flow,
            "pbx": self.pbx,
            "state": str(self.state),
            "result": self.result,
            "parties": self.parties,
            "created": self.created,
            "updated": self.updated,
            "ended": self.ended,
            "evidence": self.evidence,
            "policy_version": self.policy_version,
        }
        if entries:
            out["entries"] = [e.to_dict() for e in self.ladder()]
        return out
