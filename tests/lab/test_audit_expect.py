"""``[expect.audit]``: the audit record of the run's REFER. No root, no lab needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from referee_lab import audit_expect, ladder, scenario

CALL = "refer-call@lab"
OLD = "earlier-run@lab"


def _line(**fields: object) -> str:
    return json.dumps(fields) + "\n"


def _decision(call_id: str, status: int, allowed: bool) -> str:
    return _line(
        event="refer.decision",
        call_id=call_id,
        cseq="3",
        **{"from": "sip:1002@lab.test"},
        refer_to="sip:1003@lab.test",
        decision={"allowed": allowed, "status": status, "reason": "ok", "rule": "r"},
        time=1.0,
    )


def _notify(call_id: str, cseq: int, code: int) -> str:
    return _line(
        event="refer.outcome",
        call_id=call_id,
        cseq=cseq,
        refer_cseq=3,
        status=code,
        reason="X",
        final=code >= 200,
        time=2.0,
    )


def test_load_checks_the_table() -> None:
    got = audit_expect.load(
        "t", {"state": "completed", "flow": "blind", "proxy_status": 202, "notify_final": 200}
    )
    assert got == audit_expect.AuditExpect("completed", "blind", 202, 200)
    with pytest.raises(ValueError, match="does not know status"):
        audit_expect.load("t", {"status": 202})
    with pytest.raises(ValueError, match="blind or attended"):
        audit_expect.load("t", {"flow": "threeway"})
    with pytest.raises(ValueError, match="state must be one of"):
        audit_expect.load("t", {"state": "done"})
    with pytest.raises(ValueError, match="empty"):
        audit_expect.load("t", {})


def test_scenario_folders_with_expect_audit_load() -> None:
    loaded = {s.name: s.expect.audit for s in scenario.discover()}
    assert loaded["blind_transfer"] == audit_expect.AuditExpect("completed", "blind", 202, 200)
    assert loaded["blind_transfer_rejected"] == audit_expect.AuditExpect("failed", "blind", 403, None)
    assert loaded["attended_transfer"] == audit_expect.AuditExpect("completed", "attended", 202, 200)
    assert loaded["basic_call"] is None


def test_ingest_starts_where_the_file_ended_and_the_record_is_found_by_call_id(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(_decision(OLD, 403, False))
    start = audit_expect.file_position(events)
    with events.open("a") as f:
        # NOTIFYs out of CSeq order, as the proxy's workers may write them.
        f.write(_decision(CALL, 202, True) + _notify(CALL, 5, 200) + _notify(CALL, 4, 100))
    db = tmp_path / "audit.sqlite3"
    audit_expect.ingest(db, events, start)
    assert audit_expect.records(db, [OLD]) == []  # the earlier run's line was not read
    found = audit_expect.records(db, [CALL, CALL])
    assert [r.call_id for r in found] == [CALL]
    record = found[0]
    assert (audit_expect.proxy_status(record), audit_expect.notify_final(record)) == (202, 200)
    want = audit_expect.AuditExpect("completed", "blind", 202, 200)
    assert audit_expect.problems(want, [CALL], found) == []
    wrong = audit_expect.AuditExpect("failed", "attended", 403, 486)
    assert audit_expect.problems(wrong, [CALL], found) == [
        f"audit: record {record.id} state completed, expected failed",
        f"audit: record {record.id} flow blind, expected attended",
        f"audit: record {record.id} proxy_status 202, expected 403",
        f"audit: record {record.id} notify_final 200, expected 486",
    ]
    assert "completed" in audit_expect.describe(record)


def test_a_missing_file_is_read_from_its_start_once_written(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    start = audit_expect.file_position(events)
    assert start == (0, 0)
    events.write_text(_decision(CALL, 403, False))
    db = tmp_path / "audit.sqlite3"
    audit_expect.ingest(db, events, start)
    found = audit_expect.records(db, [CALL])
    assert audit_expect.problems(audit_expect.AuditExpect("failed", "blind", 403), [CALL], found) == []
    assert audit_expect.notify_final(found[0]) is None


def test_no_refer_or_no_record_is_a_problem() -> None:
    want = audit_expect.AuditExpect(state="completed")
    assert audit_expect.problems(want, [], []) == ["audit: no REFER captured, so no record to check"]
    assert audit_expect.problems(want, [CALL], []) == [f"audit: no record for the REFER Call-ID {CALL}"]


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
    assert scenario.refer_call_ids(messages) == ["b", "c"]
