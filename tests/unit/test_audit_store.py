"""The audit store: records, entries, DSNs, WAL, and a committed record surviving SIGKILL.

The behavioural tests run against both backends: SQLite, and a real PostgreSQL server
(:mod:`pg_server`) started once for the module on 127.0.4.1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pg_server import PgServer, pg_server
from recorded_store import RUNS, filled_store, first_time

from referee.audit import AuditError, open_store
from referee.audit.cli import EXIT_STORE
from referee.audit.correlate import Correlator
from referee.audit.dsn import Target, parse_dsn
from referee.audit.migrate import upgrade_v2
from referee.audit.schema import SCHEMA_VERSION
from referee.audit.store import sqlite_path
from referee.cli import main
from referee.events import NotifyOutcome, PbxEvent, ReferDecision, State, TransferMove


def pbx(name: str, when: float = 0.0, **fields: str) -> PbxEvent:
    return PbxEvent(when, "pbx1", name, fields)


def decision(when: float) -> ReferDecision:
    return ReferDecision(when, "c@h", 2, "sip:1002@lab.test", "127.0.1.32", True, 202, "Accepted", "r")


def outcome(when: float, cseq: int, status: int) -> NotifyOutcome:
    return NotifyOutcome(when, "c@h", cseq, 2, status=status)


def test_create_update_and_read_back(dsn: str) -> None:
    clock = iter([100.0, 102.5, 103.0]).__next__
    store = open_store(dsn, clock=clock)
    tid = store.create(
        "operator", call_id="abc@h", flow="blind", pbx="pbx1", parties={"initiator": "PJSIP/1002"}
    )
    store.add_entry(tid, pbx("BlindTransfer", 101.0, Result="Success"))
    store.update(tid, state="completed", result="answered", parties={"recipient": "PJSIP/1003-01"})
    record = store.get(tid)
    assert record is not None
    assert (record.state, record.result, record.flow, record.pbx) == (
        "completed",
        "answered",
        "blind",
        "pbx1",
    )
    assert record.parties == {"initiator": "PJSIP/1002", "recipient": "PJSIP/1003-01"}
    assert (record.created, record.ended) == (100.0, 102.5)
    assert [(e.source, e.kind) for e in record.entries] == [
        ("state", "transfer.move"),
        ("pbx", "BlindTransfer"),
        ("state", "transfer.move"),
    ]
    assert record.entries[0].event == TransferMove(100.0, tid, None, State.STARTING, "operator")
    assert record.entries[1].event == pbx("BlindTransfer", 101.0, Result="Success")
    assert record.entries[2].event == TransferMove(
        102.5, tid, State.STARTING, State.COMPLETED, "", "answered"
    )
    assert store.find("abc@h") == tid
    assert store.find("other") is None


def test_a_final_state_sets_ended_once(dsn: str) -> None:
    store = open_store(dsn)
    tid = store.create("operator", when=1.0)
    store.update(tid, state="ringback", when=2.0)
    assert store.get(tid).ended is None  # type: ignore[union-attr]
    store.update(tid, state="failed", when=3.0)
    store.update(tid, result="late detail", when=4.0)
    record = store.get(tid)
    assert record is not None and record.ended == 3.0 and record.updated == 4.0


def test_unknown_state_is_refused(dsn: str) -> None:
    store = open_store(dsn)
    with pytest.raises(ValueError, match="unknown transfer state"):
        store.create("operator", state="ringing")
    tid = store.create("operator")
    with pytest.raises(ValueError):
        store.update(tid, state="done")
    with pytest.raises(AuditError, match="no transfer 999"):
        store.update(999, state="failed")


def test_a_failed_transaction_leaves_nothing(dsn: str) -> None:
    store = open_store(dsn)
    with pytest.raises(RuntimeError), store.transaction():
        store.create("operator")
        raise RuntimeError("boom")
    assert store.records() == []


def test_list_is_newest_first_and_filters_by_state(dsn: str) -> None:
    store = open_store(dsn)
    first = store.create("operator")
    second = store.create("refer")
    store.update(first, state="cancelled")
    assert [r.id for r in store.records()] == [second, first]
    assert [r.id for r in store.records(state="cancelled")] == [first]
    assert [r.id for r in store.records(limit=1)] == [second]
    assert store.records()[0].entries == ()


def test_entries_after_follows_new_entries(dsn: str) -> None:
    store = open_store(dsn)
    tid = store.create("operator")
    mark = store.last_seq()
    store.add_entry(tid, pbx("Hangup", Channel="PJSIP/1001-1"))
    new = store.entries_after(mark)
    assert [(e.kind, e.event) for e in new] == [("Hangup", pbx("Hangup", Channel="PJSIP/1001-1"))]


def test_wal_mode(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "a.db"))
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize(
    ("dsn", "path"),
    [
        ("/var/x.db", "/var/x.db"),
        ("rel/x.db", "rel/x.db"),
        ("sqlite:///var/x.db", "/var/x.db"),
        ("sqlite:rel/x.db", "rel/x.db"),
        ("SQLite:///x.db", "/x.db"),
    ],
)
def test_sqlite_dsns(dsn: str, path: str) -> None:
    assert sqlite_path(dsn) == path


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("postgresql:referee", "postgresql://"),
        ("mysql://localhost/x", "unknown DSN scheme 'mysql'"),
        ("sqlite://host/x.db", "sqlite:///absolute/path"),
        ("sqlite:", "names no file"),
    ],
)
def test_unusable_dsns(dsn: str, message: str) -> None:
    with pytest.raises(AuditError, match=message):
        open_store(dsn)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="does not exist"):
        open_store(str(tmp_path / "nope" / "a.db"))


WRITER = textwrap.dedent(
    """
    import sys, time
    from referee.audit import open_store
    from referee.events import PbxEvent
    store = open_store(sys.argv[1])
    tid = store.create("operator", call_id="killed@h", parties={"initiator": "PJSIP/1002"})
    store.add_entry(tid, PbxEvent(1.0, "pbx1", "BlindTransfer", {"Result": "Success"}))
    store.update(tid, state="ringback")
    # keep the connection open, uncommitted work pending, and wait to be killed
    store._conn.begin()
    store._conn.execute("INSERT INTO transfers (origin, state, created, updated) VALUES ('x', 'starting', 0, 0)")
    print(tid, flush=True)
    sys.stdin.read()
    """
)


def test_a_committed_record_survives_sigkill(dsn: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, dsn],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        tid = int(proc.stdout.readline())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    if not dsn.startswith("postgresql:"):
        assert Path(dsn + "-wal").exists()  # the process died without checkpointing
    store = open_store(dsn)
    record = store.get(tid)
    assert record is not None
    assert (record.call_id, record.state) == ("killed@h", "ringback")
    assert [e.kind for e in record.entries] == ["transfer.move", "BlindTransfer", "transfer.move"]
    assert [r.origin for r in store.records()] == ["operator"]  # the uncommitted row is gone
    store.close()


def test_postgresql_dsns_are_postgresql() -> None:
    assert parse_dsn("postgresql://u:p@127.0.4.1:5432/referee") == Target(
        "postgresql", "postgresql://u:p@127.0.4.1:5432/referee"
    )
    assert parse_dsn("POSTGRES://h/db").kind == "postgresql"
    with pytest.raises(AuditError, match="names no SQLite file"):
        sqlite_path("postgresql://h/db")


def test_bad_credentials_are_a_clear_error(postgres: PgServer) -> None:
    dsn = postgres.dsn("postgres", password="wrong-secret")
    with pytest.raises(AuditError) as caught:
        open_store(dsn)
    message = str(caught.value)
    assert (
        f"audit database postgresql://postgres@127.0.4.1:{postgres.port}/postgres: cannot connect" in message
    )
    assert 'password authentication failed for user "postgres"' in message
    assert "wrong-secret" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_an_unreachable_server_is_a_clear_error(postgres: PgServer) -> None:
    dsn = postgres.dsn("postgres", host="127.0.4.2")  # nothing listens there
    with pytest.raises(
        AuditError, match=r"postgresql://postgres@127\.0\.4\.2:\d+/postgres: cannot connect.*refused"
    ):
        open_store(dsn)


def test_a_missing_database_is_a_clear_error(postgres: PgServer) -> None:
    with pytest.raises(AuditError, match=r'cannot connect.*database "nope" does not exist'):
        open_store(postgres.dsn("nope"))


def test_the_cli_reports_a_bad_dsn_without_a_traceback(
    postgres: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["transfers", "--db", postgres.dsn("postgres", password="wrong-secret")]) == EXIT_STORE
    err = capsys.readouterr().err
    assert err.startswith("referee: audit database postgresql://postgres@127.0.4.1:")
    assert "password authentication failed" in err and "Traceback" not in err


def test_postgresql_leaves_no_server_behind() -> None:
    with pg_server() as server:
        pid = server.proc.pid
        open_store(server.new_database()).close()
    assert server.proc.returncode is not None
    alive = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True, check=False).stdout
    assert str(pid) not in alive.split()


def test_the_ladder_is_in_time_order_with_notifies_in_cseq_order(dsn: str) -> None:
    store = open_store(dsn)
    tid = store.create("pbx", when=10.0)
    store.add_entry(tid, pbx("BlindTransfer", 10.1))
    store.add_entry(tid, decision(9.9))  # read later from the proxy's file
    store.add_entry(tid, outcome(10.2, 3, 200))
    store.add_entry(tid, outcome(10.3, 2, 100))
    record = store.get(tid)
    assert record is not None
    assert [(e.kind, e.cseq) for e in record.ladder()] == [
        ("refer.decision", None),
        ("transfer.move", None),
        ("BlindTransfer", None),
        ("refer.outcome", 2),
        ("refer.outcome", 3),
    ]
    assert record.updated == 10.3  # never moves back for an older line


def test_updated_never_goes_back(dsn: str) -> None:
    store = open_store(dsn)
    tid = store.create("pbx", when=10.0)
    store.update(tid, result="x", when=5.0)
    store.add_entry(tid, decision(4.0))
    assert store.get(tid).updated == 10.0  # type: ignore[union-attr]


def test_a_database_of_an_older_schema_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    store = open_store(path)
    store._conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    store.close()
    with pytest.raises(AuditError, match="has schema 1, this referee reads schema 3"):
        open_store(path)


def test_entries_are_typed_events_in_both_dialects(dsn: str) -> None:
    store = open_store(dsn)
    tid = store.create("refer", call_id="c@h", refer_cseq="2", when=1.0, cause="refer.decision")
    for event in (decision(1.0), outcome(2.0, 5, 180), pbx("DialEnd", 3.0, DialStatus="ANSWER")):
        store.add_entry(tid, event)
    record = store.get(tid)
    assert record is not None
    assert record.events() == [
        TransferMove(1.0, tid, None, State.STARTING, "refer.decision"),
        decision(1.0),
        outcome(2.0, 5, 180),
        pbx("DialEnd", 3.0, DialStatus="ANSWER"),
    ]
    assert [(e.source, e.cseq) for e in record.entries] == [
        ("state", None),
        ("proxy", None),
        ("notify", 5),
        ("pbx", None),
    ]


VERSION = "5d41402abc4b"  # a policy version, as the proxy writes it


def downgrade_to_v2(dsn: str) -> None:
    """What schema 2 left: the same tables and entries, without the two columns, version 2."""
    store = open_store(dsn)
    for column in ("evidence", "policy_version"):
        store._conn.execute(f"ALTER TABLE transfers DROP COLUMN {column}")
    store._conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    store.close()


def test_a_schema_2_database_is_upgraded_in_place(dsn: str) -> None:
    store = filled_store(dsn)
    before = {r.id: r for r in store.records()}
    one = max(before)
    when = first_time(RUNS[0]) + 100
    decision = ReferDecision(
        when, "v@h", 1, "sip:1002@lab.test", "127.0.0.32", True, 202, "Accepted", "r", policy_version=VERSION
    )
    Correlator(store).proxy(decision)
    store.close()
    downgrade_to_v2(dsn)

    upgraded = open_store(dsn)
    assert upgraded.schema_version() == SCHEMA_VERSION == 3
    after = {r.id: r for r in upgraded.records()}
    assert set(after) == {*before, one + 1}
    for transfer_id, record in before.items():  # the evidence recomputed from the entries kept
        assert (after[transfer_id].evidence, after[transfer_id].state) == (record.evidence, record.state)
    assert after[1].evidence == "pbx: BlindTransfer Success + target bridged"
    assert after[one + 1].policy_version == VERSION
    assert {after[i].policy_version for i in before} == {None}
    upgraded.close()
    again = open_store(dsn)  # a second open finds schema 3: nothing to do
    assert again.schema_version() == 3 and len(again.records()) == len(after)
    again.close()


def test_an_upgrade_another_process_did_first_is_not_done_twice(dsn: str) -> None:
    """Between seeing schema 2 and taking the lock, another process may have upgraded the database:
    the version is read again under the lock, and the columns are not added twice."""
    store = open_store(dsn)
    with store.transaction():
        assert upgrade_v2(store._conn.execute, store.get, postgres=dsn.startswith("postgresql")) is False
    assert store.schema_version() == 3
    store.close()
