"""``[expect.audit]``: the audit record of the run's REFER.

Once the phones are done, the audit ingest (:class:`referee.audit.ingest.EventFileIngest`) reads the
proxy's event file from where it ended when the run started (``Run.events_start``: earlier runs' lines
are never read) into a database in the run folder (``audit.sqlite3``). The record is found by the Call-ID
of a REFER the capture holds (the proxy relays the REFER, so the Call-ID is the same on both hops), and
its fields compared with the table, each optional:

- ``state``: the record's state (``completed``, ``failed``...);
- ``flow``: ``blind`` or ``attended``;
- ``proxy_status``: the status of the proxy's decision on the REFER (202, 403...);
- ``notify_final``: the status of the last NOTIFY outcome, in CSeq order (200...);
- ``result``: the record's result text (``pbx lost``, ``no final NOTIFY``...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from referee.audit.ingest import EventFileIngest
from referee.audit.record import TransferRecord
from referee.audit.store import AuditError, open_store
from referee.events import Flow, ReferDecision, State
from referee_lab import ladder
from referee_lab.scenario import proxy_log
from referee_lab.scenario.context import Run

OWNS = ("expect.audit",)
KEYS = ("state", "flow", "proxy_status", "notify_final", "result")
DB = "audit.sqlite3"


@dataclass(frozen=True)
class AuditCheck:
    state: str = ""
    flow: str = ""
    proxy_status: int | None = None
    notify_final: int | None = None
    result: str = ""

    def start(self, run: Run) -> None:
        pass

    def stop(self, run: Run) -> None:
        pass

    def problems(self, run: Run) -> list[str]:
        return self.verdict(run)[1]

    def notes(self, run: Run) -> list[str]:
        return self.verdict(run)[0]

    def verdict(self, run: Run) -> tuple[list[str], list[str]]:
        """(notes, problems): ingest this run's proxy events, check the record of the REFER's Call-ID."""
        db = run.out_dir / DB
        try:
            ingest(db, run.events_file, run.events_start)
            call_ids = refer_call_ids(run.messages)
            found = records(db, call_ids)
        except (AuditError, OSError) as exc:
            return [], [f"audit: ingest into {db} failed: {exc}"]
        return [describe(r) for r in found], self.check(call_ids, found)

    def check(self, call_ids: list[str], found: list[TransferRecord]) -> list[str]:
        """What the record of the run's REFER (``found``: the records of ``call_ids``) gets wrong."""
        if not call_ids:
            return ["audit: no REFER captured, so no record to check"]
        if not found:
            return [f"audit: no record for the REFER Call-ID {call_ids[0]}"]
        if len(found) > 1:
            return [
                f"audit: {len(found)} records for the run's REFERs ({', '.join(str(r.id) for r in found)})"
            ]
        record = found[0]
        got = {
            "state": record.state,
            "flow": record.flow,
            "proxy_status": proxy_status(record),
            "notify_final": notify_final(record),
            "result": record.result or "",
        }
        out = []
        for key in KEYS:
            want = getattr(self, key)
            if want not in ("", None) and got[key] != want:
                out.append(f"audit: record {record.id} {key} {got[key]}, expected {want}")
        return out


def load(scenario: str, data: Mapping[str, Any]) -> AuditCheck | None:
    raw = data.get("expect", {}).get("audit")
    if raw is None:
        return None
    if unknown := sorted(set(raw) - set(KEYS)):
        raise ValueError(f"scenario {scenario}: [expect.audit] does not know {', '.join(unknown)}")
    if not raw:
        raise ValueError(f"scenario {scenario}: [expect.audit] is empty")
    state, flow = str(raw.get("state", "")), str(raw.get("flow", ""))
    if state and state not in set(State):
        raise ValueError(f"scenario {scenario}: [expect.audit] state must be one of {', '.join(State)}")
    if flow and flow not in set(Flow):
        raise ValueError(f"scenario {scenario}: [expect.audit] flow must be blind or attended")
    return AuditCheck(
        state=state,
        flow=flow,
        proxy_status=int(raw["proxy_status"]) if "proxy_status" in raw else None,
        notify_final=int(raw["notify_final"]) if "notify_final" in raw else None,
        result=str(raw.get("result", "")),
    )


def refer_call_ids(messages: list[ladder.Message]) -> list[str]:
    """The Call-IDs of the REFERs captured, in capture order."""
    return list(
        dict.fromkeys(m.call_id for m in messages if m.is_request and m.label == "REFER" and m.call_id)
    )


def ingest(db: Path, events: Path, start: proxy_log.Position) -> None:
    """Apply the event file's lines from ``start`` (:func:`proxy_log.position`) to a new database ``db``."""
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


def describe(record: TransferRecord) -> str:
    return (
        f"audit: record {record.id} {record.flow} {record.state} {record.result or ''} "
        f"(proxy {proxy_status(record)}, last NOTIFY {notify_final(record)})"
    ).replace("  ", " ")
