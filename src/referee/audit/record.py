"""An audit record as read back: the transfer, its entries, its ladder and its NOTIFY outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Where an entry came from.
SOURCES = ("proxy", "notify", "pbx", "operator", "state")

STATES = ("starting", "ringback", "answered", "completed", "cancelled", "abandoned", "failed")
FINAL_STATES = frozenset({"completed", "cancelled", "abandoned", "failed"})


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing that happened to a transfer."""

    seq: int  # global insertion order
    transfer_id: int
    time: float
    source: str  # one of SOURCES
    kind: str  # refer.decision, refer.outcome, BlindTransfer, state, ...
    cseq: int | None  # the NOTIFY CSeq for "notify" entries
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "source": self.source,
            "kind": self.kind,
            "cseq": self.cseq,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class TransferRecord:
    id: int
    call_id: str | None
    refer_cseq: str | None
    origin: str  # "refer" (a phone's REFER), "operator" (API/CLI), "pbx" (seen only at the PBX)
    flow: str | None  # "blind", "attended" or None when not known yet
    pbx: str | None
    state: str
    result: str | None
    parties: dict[str, str]
    created: float
    updated: float
    ended: float | None
    entries: tuple[Entry, ...] = field(default=())

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def notify_outcomes(self) -> list[Entry]:
        """The NOTIFY outcomes in CSeq order (a multi-worker proxy may log them out of order)."""
        notifies = [e for e in self.entries if e.source == "notify"]
        return sorted(notifies, key=lambda e: (e.cseq if e.cseq is not None else -1, e.seq))

    def ladder(self) -> list[Entry]:
        """Entries in time order (the proxy's lines are read after the PBX's events of the same
        moment, so arrival order is not it), except that the NOTIFYs take their slots in CSeq order."""
        ordered = sorted(self.entries, key=lambda e: (e.time, e.seq))
        slots = [i for i, e in enumerate(ordered) if e.source == "notify"]
        for slot, entry in zip(slots, self.notify_outcomes(), strict=True):
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
            "state": self.state,
            "result": self.result,
            "parties": self.parties,
            "created": self.created,
            "updated": self.updated,
            "ended": self.ended,
        }
        if entries:
            out["entries"] = [e.to_dict() for e in self.ladder()]
        return out
