"""``[expect.audit]``: the audit record of the run's REFER. No root, no lab needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from referee.audit.correlate import Correlator
from referee.audit.ingest import EventFileIngest
from referee.audit.store import AuditStore, open_store
from referee.events import NotifyOutcome, PbxEvent, ReferDecision, to_json
from referee_lab import ladder, scenario
from referee_lab.scenario import proxy_log
from referee_lab.scenario.checks import audit
from referee_lab.scenario.checks.audit import AuditCheck

CALL = "refer-call@lab"
OLD = "earlier-run@lab"


def _decision(call_id: str, status: int, allowed: bool) -> str:
    event = ReferDecision(
        time=1.0,
        call_id=call_id,
        cseq=3,
        referrer="sip:1002@lab.test",
        src="127.0.0.32",
        allowed=allowed,
        status=status,
        reason="ok",
        rule="r",
        refer_to="sip:1003@lab.test",
    )
    return to_json(event) + "\n"


def _notify(call_id: str, cseq: int, code: int) -> str:
    event = NotifyOutcome(time=2.0, call_id=call_id, cseq=cseq, refer_cseq=3, status=code, reason="X")
    return to_json(event) + "\n"


def _load(raw: dict[str, object]) -> AuditCheck | None:
    return audit.load("t", {"expect": {"audit": raw}})


def test_load_checks_the_table() -> None:
    got = _load({"state": "completed", "flow": "blind", "proxy_status": 202, "notify_final": 200})
    assert got == AuditCheck("completed", "blind", 202, 200)
    with pytest.raises(ValueError, match="does not know status"):
        _load({"status": 202})
    with pytest.raises(ValueError, match="blind or attended"):
        _load({"flow": "threeway"})
    with pytest.raises(ValueError, match="state must be one of"):
        _load({"state": "done"})
    with pytest.raises(ValueError, match="empty"):
        _load({})


def test_scenario_folders_with_expect_audit_load() -> None:
    loaded = {s.name: s.check(AuditCheck) for s in scenario.discover()}
    assert loaded["blind_transfer"] == AuditCheck("completed", "blind", 202, 200)
    assert loaded["blind_transfer_rejected"] == AuditCheck("failed", "blind", 403, None)
    assert loaded["attended_transfer"] == AuditCheck("completed", "attended", 202, 200)
    assert loaded["basic_call"] is None


def ingest(db: Path, events: Path, start: proxy_log.Position) -> AuditStore:
    """What the proxy host's ingest does in the lab, from ``start``."""
    store = open_store(str(db))
    if start != (0, 0):
        store.set_ingest_offset(str(events), *start)
    EventFileIngest(store, str(events)).poll()
    return store


def test_the_record_is_found_by_call_id_once_the_ingest_caught_up(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(_decision(OLD, 403, False))
    start = proxy_log.position(events)
    with events.open("a") as f:
        # NOTIFYs out of CSeq order, as the proxy's workers may write them.
        f.write(_decision(CALL, 202, True) + _notify(CALL, 5, 200) + _notify(CALL, 4, 100))
    store = ingest(tmp_path / "audit.sqlite3", events, start)
    audit.caught_up(store, events)
    assert audit.records(store, [OLD]) == []  # the earlier run's line was not read
    found = audit.records(store, [CALL, CALL])
    assert [r.call_id for r in found] == [CALL]
    record = found[0]
    assert (audit.proxy_status(record), audit.notify_final(record)) == (202, 200)
    want = AuditCheck("completed", "blind", 202, 200)
    assert want.check([CALL], found) == []
    wrong = AuditCheck("failed", "attended", 403, 486)
    assert wrong.check([CALL], found) == [
        f"audit: record {record.id} state completed, expected failed",
        f"audit: record {record.id} flow blind, expected attended",
        f"audit: record {record.id} proxy_status 202, expected 403",
        f"audit: record {record.id} notify_final 200, expected 486",
    ]
    assert "completed" in audit.describe(record)


def test_a_line_the_ingest_has_not_read_yet_is_waited_for(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(_decision(CALL, 403, False))
    store = ingest(tmp_path / "audit.sqlite3", events, (0, 0))
    with events.open("a") as f:
        f.write(_notify(CALL, 4, 100))
    with pytest.raises(TimeoutError, match="not to its end"):
        audit.caught_up(store, events, timeout=0)
    EventFileIngest(store, str(events)).poll()
    audit.caught_up(store, events, timeout=0)


def test_a_missing_file_is_read_from_its_start_once_written(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    start = proxy_log.position(events)
    assert start == (0, 0)
    events.write_text(_decision(CALL, 403, False))
    store = ingest(tmp_path / "audit.sqlite3", events, start)
    found = audit.records(store, [CALL])
    assert AuditCheck("failed", "blind", 403).check([CALL], found) == []
    assert audit.notify_final(found[0]) is None


def test_pbxs_wants_each_pbxs_events_in_the_one_record(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "audit.sqlite3"))
    correlator = Correlator(store)
    correlator.proxy(ReferDecision(1.0, CALL, 3, "sip:1002@lab.test", "127.0.0.32", True, 202, "ok", "r"))
    want = _load({"pbxs": ["pbx1", "pbx2"]})
    assert want is not None and want.pbxs == ("pbx1", "pbx2")
    found = audit.records(store, [CALL])
    assert want.check_pbxs(found, found) == [
        f"audit: record {found[0].id} has no event of pbx1, pbx2 (only [])"
    ]
    correlator.pbx_transfer([CALL], PbxEvent(2.0, "pbx1", "BlindTransfer", {}), flow="attended", parties={})
    other = correlator.pbx_replaced("other@lab", PbxEvent(2.5, "pbx2", "BridgeEnter", {}))
    found = audit.records(store, [CALL])
    assert want.check_pbxs(found, audit.records(store, [CALL, "other@lab"])) == [
        f"audit: record {found[0].id} has no event of pbx2 (only ['pbx1'])",
        f"audit: other records for the run's dialogs: {other}",
    ]
    store.add_entry(found[0].id, PbxEvent(3.0, "pbx2", "BridgeEnter", {}))
    found = audit.records(store, [CALL])
    assert want.check_pbxs(found, found) == []


def test_no_refer_or_no_record_is_a_problem() -> None:
    want = AuditCheck(state="completed")
    assert want.check([], []) == ["audit: no REFER captured, so no record to check"]
    assert want.check([CALL], []) == [f"audit: no record for the REFER Call-ID {CALL}"]


def test_refer_call_ids_in_capture_order() -> None:
    def msg(label: str, call_id: str, is_request: bool = True) -> ladder.Message:
        return ladder.Message(0.0, "bob", "proxy", label, is_request, call_id=call_id)

    messages = [
        msg("INVITE", "a"),
        msg("REFER", "b"),
        msg("REFER", "b"),
        msg("202", "b", False),
        msg("REFER", "c"),
    ]
    assert audit.refer_call_ids(messages) == ["b", "c"]
