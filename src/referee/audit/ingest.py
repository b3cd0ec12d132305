"""Ingest of the proxy's JSON-lines events into audit records.

Each line is applied and the file offset recorded in one transaction, so a restart neither
loses nor repeats a line. A rotated file (other inode, or shorter than the offset) is read
again from its start.

How a line finds its record (correlation by SIP Call-ID):

- a REFER decision or response: the record with that Call-ID and REFER CSeq; else one the PBX
  side opened for that Call-ID before the line was read; else a new record;
- a NOTIFY outcome: the record with that Call-ID and ``refer_cseq`` (``Event: refer;id=``);
  without an id, the newest record of that Call-ID; else a new record.

State: a rejected REFER (decision or downstream answer >= 300) is ``failed``; a provisional
NOTIFY moves ``starting`` to ``ringback``; a final NOTIFY makes it ``completed`` (2xx) or
``failed``. A final state is never overwritten: the first final word stands, so a 100 NOTIFY
read after the 200 does not undo the completion.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from referee.audit.proxy_events import BadEvent, ProxyEvent, parse_line
from referee.audit.record import FINAL_STATES
from referee.audit.store import AuditStore

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 20


def _flow_of(event: ProxyEvent) -> str:
    decision = event.decision
    refer_to = str(event.raw.get("refer_to") or decision.get("refer_to") or "")
    if decision.get("replaces") or "replaces=" in refer_to.lower():
        return "attended"
    return "blind"


def _record_for(store: AuditStore, event: ProxyEvent) -> int:
    if event.kind == "refer.outcome":
        found = store.find(event.call_id, event.refer_cseq or None)
        if found is None and event.refer_cseq:
            found = _unclaimed(store, event.call_id)
            if found is not None:
                store.update(found, refer_cseq=event.refer_cseq, origin="refer")
        refer_cseq = event.refer_cseq
    else:
        found = store.find(event.call_id, event.cseq or None) if event.cseq else store.find(event.call_id)
        if found is None:
            found = _unclaimed(store, event.call_id)
            if found is not None:
                store.update(found, refer_cseq=event.cseq or None, origin="refer")
        refer_cseq = event.cseq
    if found is not None:
        return found
    parties: dict[str, str] = {}
    if isinstance(event.raw.get("from"), str):
        parties["referrer"] = event.raw["from"]
    return store.create(
        "refer",
        call_id=event.call_id,
        refer_cseq=refer_cseq or None,
        flow=_flow_of(event) if event.kind == "refer.decision" else None,
        parties=parties,
        when=event.time,
    )


def _unclaimed(store: AuditStore, call_id: str) -> int | None:
    """A record the PBX side opened for this Call-ID that no REFER line has claimed yet."""
    found = store.find(call_id)
    if found is None:
        return None
    record = store.get(found)
    if record is None or record.refer_cseq is not None or record.origin != "pbx":
        return None
    return found


def apply(store: AuditStore, event: ProxyEvent) -> int:
    """Apply one proxy event; the id of the record it went to."""
    with store.transaction():
        transfer_id = _record_for(store, event)
        record = store.get(transfer_id)
        assert record is not None
        when = event.time
        is_final = record.state in FINAL_STATES
        data = dict(event.raw)
        if event.kind == "refer.outcome":
            cseq = int(event.cseq) if event.cseq else None
            store.add_entry(transfer_id, "notify", event.kind, data, cseq=cseq, when=when)
            status = event.status
            if status is not None and not is_final:
                if status >= 200:
                    state = "completed" if status < 300 else "failed"
                    store.update(
                        transfer_id, state=state, result=f"NOTIFY {status} {event.reason}".strip(), when=when
                    )
                elif record.state == "starting":
                    store.update(transfer_id, state="ringback", when=when)
            return transfer_id
        store.add_entry(transfer_id, "proxy", event.kind, data, when=when)
        if event.kind == "refer.decision":
            updates: dict[str, Any] = {"flow": _flow_of(event)}
            target = (
                event.raw.get("forwarded_refer_to")
                or event.decision.get("refer_to")
                or event.raw.get("refer_to")
            )
            parties = {"referrer": str(event.raw.get("from", ""))} if event.raw.get("from") else {}
            if isinstance(target, str) and target:
                parties["target"] = target
            decision = event.decision
            if decision.get("allowed") is False and not is_final:
                status = event.status or _status(decision.get("status"))
                updates["state"] = "failed"
                updates["result"] = f"rejected {status or ''} {decision.get('reason', '')}".replace(
                    "  ", " "
                ).strip()
            store.update(transfer_id, parties=parties, when=when, **updates)
        elif event.kind == "refer.response":
            status = event.status
            if status is not None and status >= 300 and not is_final:
                store.update(transfer_id, state="failed", result=f"REFER answered {status}", when=when)
        return transfer_id


def _status(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class EventFileIngest:
    """Follows the proxy's event file; call :meth:`poll` whenever it may have grown."""

    store: AuditStore
    path: str
    applied: int = 0
    bad: int = 0
    last_error: str = field(default="")

    def poll(self) -> int:
        """Apply every complete line written since the last poll; how many were applied."""
        try:
            st = os.stat(self.path)
        except OSError:
            return 0
        saved = self.store.ingest_offset(self.path)
        offset = 0
        if saved is not None and saved[0] == st.st_ino and saved[1] <= st.st_size:
            offset = saved[1]
        if offset == st.st_size:
            return 0
        count = 0
        with open(self.path, "rb") as handle:
            while True:
                handle.seek(offset)
                chunk = handle.read(READ_CHUNK)
                end = chunk.rfind(b"\n")
                if end < 0 and len(chunk) == READ_CHUNK:
                    offset = self._skip_long_line(handle, offset, st.st_ino)
                    if offset < 0:
                        break
                    continue
                if end < 0:
                    break  # a line still being written
                for line in chunk[: end + 1].splitlines(keepends=True):
                    offset += len(line)
                    count += self._apply_line(line.strip(), st.st_ino, offset)
                if len(chunk) < READ_CHUNK:
                    break
        return count

    def _skip_long_line(self, handle: BinaryIO, offset: int, inode: int) -> int:
        """Past a line longer than READ_CHUNK (counted as bad); -1 while its end is not written yet."""
        position = offset
        while True:
            handle.seek(position)
            chunk = handle.read(READ_CHUNK)
            if not chunk:
                return -1
            newline = chunk.find(b"\n")
            if newline >= 0:
                end = position + newline + 1
                with self.store.transaction():
                    self.bad += 1
                    self.last_error = f"{self.path} offset {end}: line longer than {READ_CHUNK} bytes"
                    log.warning("skipping proxy event line: %s", self.last_error)
                    self.store.set_ingest_offset(self.path, inode, end)
                return end
            position += len(chunk)

    def _apply_line(self, line: bytes, inode: int, offset: int) -> int:
        with self.store.transaction():
            applied = 0
            if line:
                try:
                    apply(self.store, parse_line(line))
                    applied = 1
                except BadEvent as exc:
                    self.bad += 1
                    self.last_error = f"{self.path} offset {offset}: {exc}"
                    log.warning("skipping proxy event line: %s", self.last_error)
            self.store.set_ingest_offset(self.path, inode, offset)
        self.applied += applied
        return applied
