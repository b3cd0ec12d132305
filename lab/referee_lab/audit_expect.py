"""``[expect.audit]`` in scenario.toml: the audit record of the scenario's REFER.

The runner notes where the proxy's event file ends when the scenario starts (inode and size) and, once the
phones are done, runs the audit ingest (:class:`referee.audit.ingest.EventFileIngest`) from there into a
database in the run folder (``audit.sqlite3``): the lines earlier runs left in the file are never read.
The record is then found by the Call-ID of a REFER the capture holds (the proxy relays the REFER, so the
Call-ID is the same on both hops), and its fields compared with the table:

- ``state``: the record's state (``completed``, ``failed``...);
- ``flow``: ``blind`` or ``attended``;
- ``proxy_status``: the status of the proxy's decision on the REFER (202, 403...);
- ``notify_final``: the status of the last NOTIFY outcome, in CSeq order (200...).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from referee.audit.ingest import EventFileIngest
from referee.audit.record import TransferRecord
from referee.audit.store import open_store
from referee.events import ReferDecision, State

KEYS = ("state", "flow", "proxy_status", "notify_final")


@dataclass(frozen=True)
class AuditExpect:
    state: str = ""
    flow: str = ""
    proxy_status: int | None = None
    notify_final: int | None = None


def load(scenario: str, raw: Mapping[str, Any]) -> AuditExpect:
    """The ``[expect.audit]`` table."""
    if unknown := sorted(set(raw) - set(KEYS)):
        raise ValueError(f"scenario {scenario}: [expect.audit] does not know {', '.join(unknown)}")
    if not raw:
        raise ValueError(f"scenario {scenario}: [expect.audit] is empty")
    state, flow = str(raw.get("state", "")), str(raw.get("flow", ""))
    if state and state not in list(State):
        raise ValueError(f"scenario {scenario}: [expect.audit] state must be one of {', '.join(State)}")
    if flow and flow not in ("blind", "attended"):
        raise ValueError(f"scenario {scenario}: [expect.audit] flow must be blind or attended")
    return AuditExpect(
        state=state,
        flow=flow,
        proxy_status=int(raw["proxy_status"]) if "proxy_status" in raw else None,
        notify_final=int(raw["notify_final"]) if "notify_final" in raw else None,
    )


def file_position(path: Path) -> tuple[int, int]:
    """(inode, size) of the event file now; (0, 0) when there is none yet."""
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0)
    return (st.st_ino, st.st_size)


def ingest(db: Path, events: Path, start: tuple[int, int]) -> None:
    """Apply the event file's lines from ``start`` (see :func:`file_position`) to a new database ``db``."""
    db.unlink(missing_ok=True)
    store = open_store(str(db))
    try:
        if start != (0, 0):
            store.set_ingest_offset(str(events), *start)
        EventFileIngest(store, str(events)).poll()
    finally:
        store.close()


def records(db: Path, call_ids: Iterable[str]) -> list[TransferRecord]:
    """The records of these Call-IDs, in Call-ID order (each Call-ID's newest)."""
    store = open_store(str(db))
    try:
        found = [store.find(call_id) for call_id in dict.fromkeys(call_ids)]
        return [r for i in found if i is not None and (r := store.get(i)) is not None]
    finally:
        store.close()


def proxy_status(record: TransferRecord) -> int | None:
    """The status of the proxy's (last) decision on the REFER."""
    statuses = [e.status for e in record.events() if isinstance(e, ReferDecision)]
    return statuses[-1] if statuses else None


def notify_final(record: TransferRecord) -> int | None:
    """The status of the last NOTIFY outcome in CSeq order."""
    outcomes = record.notify_outcomes()
    return outcomes[-1].status if outcomes else None


def problems(expect: AuditExpect, call_ids: list[str], found: list[TransferRecord]) -> list[str]:
    """What the record of the run's REFER (``found``: the records of ``call_ids``) gets wrong."""
    if not call_ids:
        return ["audit: no REFER captured, so no record to check"]
    if not found:
        return [f"audit: no record for the REFER Call-ID {call_ids[0]}"]
    if len(found) > 1:
        return [f"audit: {len(found)} records for the run's REFERs ({', '.join(str(r.id) for r in found)})"]
    record = found[0]
    got = {
        "state": record.state,
        "flow": record.flow,
        "proxy_status": proxy_status(record),
        "notify_final": notify_final(record),
    }
    out = []
    for key in KEYS:
        want = getattr(expect, key)
        if want not in ("", None) and got[key] != want:
            out.append(f"audit: record {record.id} {key} {got[key]}, expected {want}")
    return out


def describe(record: TransferRecord) -> str:
    return (
        f"audit: record {record.id} {record.flow} {record.state} {record.result or ''} "
        f"(proxy {proxy_status(record)}, last NOTIFY {notify_final(record)})"
    ).replace("  ", " ")
