"""``[expect.audit]``: the audit record of the run's REFER, as the site's audit database holds it.

The lab's audit trail is a real site's (docs/audit-across-hosts.md): the proxy host's ingest follows the
proxy's event file and each PBX host's orchestrator follows its PBX's AMI, all writing to the lab's
PostgreSQL (:mod:`referee_lab.database`). Once the phones are done the check waits until the ingest has
read the event file to where it ends now (its offset in the database), then finds the record by the
Call-ID of a REFER the capture holds (the proxy relays the REFER, so the Call-ID is the same on both
hops), and compares its fields with the table, each optional:

- ``state``: the record's state (``completed``, ``failed``...);
- ``flow``: ``blind`` or ``attended``;
- ``proxy_status``: the status of the proxy's decision on the REFER (202, 403...);
- ``notify_final``: the status of the last NOTIFY outcome, in CSeq order (200...);
- ``result``: the record's result text (``pbx lost``, ``no final NOTIFY``...);
- ``pbxs``: the PBXs whose events the record holds (each PBX host's orchestrator wrote its part), and no
  other record for any dialog of the run: one transfer, one record. The orchestrators write as the
  PBXs report, so the check looks again until that holds or ``WAIT_SECONDS`` pass.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from referee.audit.record import TransferRecord
from referee.audit.store import AuditError, AuditStore, open_store
from referee.events import Flow, PbxEvent, ReferDecision, State
from referee_lab import database, ladder
from referee_lab.scenario.context import Run

OWNS = ("expect.audit",)
KEYS = ("state", "flow", "proxy_status", "notify_final", "result", "pbxs")
WAIT_SECONDS = 15.0


@dataclass(frozen=True)
class AuditCheck:
    state: str = ""
    flow: str = ""
    proxy_status: int | None = None
    notify_final: int | None = None
    result: str = ""
    pbxs: tuple[str, ...] = ()

    def start(self, run: Run) -> None:
        pass

    def stop(self, run: Run) -> None:
        pass

    def problems(self, run: Run) -> list[str]:
        return self.verdict(run)[1]

    def notes(self, run: Run) -> list[str]:
        return self.verdict(run)[0]

    def verdict(self, run: Run) -> tuple[list[str], list[str]]:
        """(notes, problems): the record of the REFER's Call-ID, once the ingest has read this run's
        proxy events (and, with ``pbxs``, once the PBXs' parts are in)."""
        call_ids = refer_call_ids(run.messages)
        dialogs = list(dict.fromkeys(m.call_id for m in run.messages if m.call_id))
        try:
            store = open_store(database.dsn())
        except AuditError as exc:
            return [], [f"audit: {exc}"]
        try:
            caught_up(store, run.events_file)
            deadline = time.monotonic() + WAIT_SECONDS
            while True:
                found = records(store, call_ids)
                problems = self.check(call_ids, found) + self.check_pbxs(found, records(store, dialogs))
                if not problems or not self.pbxs or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        except (AuditError, OSError, TimeoutError) as exc:
            return [], [f"audit: {exc}"]
        finally:
            store.close()
        return [describe(r) for r in found], problems

    def check_pbxs(self, found: list[TransferRecord], of_dialogs: list[TransferRecord]) -> list[str]:
        """With ``pbxs``: the REFER's record holds each PBX's events, and it is the only record of the
        run's dialogs."""
        if not self.pbxs or len(found) != 1:
            return []
        record, out = found[0], []
        seen = {e.pbx for e in record.events() if isinstance(e, PbxEvent)}
        if missing := [p for p in self.pbxs if p not in seen]:
            out.append(
                f"audit: record {record.id} has no event of {', '.join(missing)} (only {sorted(seen)})"
            )
        if others := sorted({r.id for r in of_dialogs} - {record.id}):
            out.append(f"audit: other records for the run's dialogs: {', '.join(map(str, others))}")
        return out

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
        for key, value in got.items():
            want = getattr(self, key)
            if want not in ("", None) and value != want:
                out.append(f"audit: record {record.id} {key} {value}, expected {want}")
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
        pbxs=tuple(str(p) for p in raw.get("pbxs", ())),
    )


def refer_call_ids(messages: list[ladder.Message]) -> list[str]:
    """The Call-IDs of the REFERs captured, in capture order."""
    return list(
        dict.fromkeys(m.call_id for m in messages if m.is_request and m.label == "REFER" and m.call_id)
    )


def caught_up(store: AuditStore, events: Path, timeout: float = WAIT_SECONDS) -> None:
    """Wait until the proxy host's ingest has read ``events`` to where the file ends now."""
    st = events.stat()
    deadline = time.monotonic() + timeout
    while True:
        read = store.ingest_offset(str(events))
        if read is not None and read[0] == st.st_ino and read[1] >= st.st_size:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the ingest read {events} to {read}, not to its end ({st.st_size} bytes)")
        time.sleep(0.1)


def records(store: AuditStore, call_ids: Iterable[str]) -> list[TransferRecord]:
    """The records of these Call-IDs, in Call-ID order (each Call-ID's newest, each record once)."""
    found = dict.fromkeys(i for call_id in dict.fromkeys(call_ids) if (i := store.find(call_id)) is not None)
    return [r for i in found if (r := store.get(i)) is not None]


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
