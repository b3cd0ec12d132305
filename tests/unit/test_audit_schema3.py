"""Audit schema 3: each record keeps its decision's policy version and its evidence, shown by ``referee
transfers --json`` and the API; a schema 2 database is upgraded in place (SQLite and a real PostgreSQL,
:mod:`pg_server`); and the proxy's own answers (``proxy.reply``) are ingested."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from pg_server import PgServer, pg_server
from recorded_store import Ticker, filled_store, first_time, proxy_lines

from referee.audit import open_store
from referee.audit.correlate import Correlator
from referee.audit.ingest import EventFileIngest
from referee.audit.ladder import svg
from referee.audit.migrate import upgrade_v2
from referee.audit.render import show
from referee.audit.schema import SCHEMA_VERSION
from referee.cli import main
from referee.events import ProxyReply, ReferDecision, from_json, to_json
from referee.orchestrator.api_service import OrchestratorService

VERSION = "5d41402abc4b"
BLIND = "recorded_blind_refer"


@pytest.fixture(scope="module")
def postgres() -> Iterator[PgServer]:
    with pg_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def dsn(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "a.db")
    server: PgServer = request.getfixturevalue("postgres")
    return server.new_database()


def versioned_decision(line: str) -> str:
    """A recorded decision line as a proxy that writes the policy version writes it."""
    event = from_json(line)
    assert isinstance(event, ReferDecision)
    raw = event.to_dict()
    raw["policy_version"] = VERSION
    return json.dumps(raw)


def test_a_record_keeps_its_decisions_policy_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "audit.db")
    store = open_store(path, clock=Ticker(first_time(BLIND)))
    first, *rest = proxy_lines(BLIND)
    for line in [versioned_decision(first), *rest]:
        Correlator(store).proxy(from_json(line))
    (record,) = store.records()
    assert record.policy_version == VERSION
    assert f"policy version {VERSION}" in show(record)
    api = OrchestratorService(cast(Any, None), store)  # the records need no PBX link
    assert api.records(limit=5, state=None)[0]["policy_version"] == VERSION
    shown = api.record(record.id)
    assert shown is not None and shown["policy_version"] == VERSION
    assert shown["evidence"] == "notify-200 (proxy view only)"
    store.close()

    assert main(["transfers", "--db", path, "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["policy_version"], listed["evidence"]) == (VERSION, "notify-200 (proxy view only)")


def test_a_decision_without_a_version_leaves_none(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "audit.db"))
    Correlator(store).proxy(from_json(proxy_lines(BLIND)[0]))
    (record,) = store.records()
    assert record.policy_version is None


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
    decision = ReferDecision(
        first_time(BLIND) + 100, "v@h", 1, "sip:1002@lab.test", "127.0.0.32", True, 202, "Accepted", "r"
    )
    Correlator(store).proxy(from_json(versioned_decision(to_json(decision))))
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


def test_the_proxys_own_answers_are_ingested_into_the_transfer_of_their_call(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    lines = proxy_lines(BLIND)
    call_id = from_json(lines[0]).call_id  # type: ignore[union-attr]
    t = first_time(BLIND)
    in_dialog = ProxyReply(t + 1, "BYE", 408, "Request Timeout", call_id, 5, pbx="pbx1", src="127.0.0.32")
    elsewhere = ProxyReply(t + 2, "INVITE", 503, "Service Unavailable", "other@h", 1, pbx="pbx1")
    events.write_text("\n".join([*lines, to_json(in_dialog), to_json(elsewhere)]) + "\n")
    store = open_store(str(tmp_path / "audit.db"), clock=Ticker(t))
    ingest = EventFileIngest(store, str(events))
    assert ingest.poll() == len(lines) + 2 and ingest.bad == 0
    (record,) = store.records()  # the 503 of another call opened no record
    full = store.get(record.id)
    assert full is not None
    assert [e for e in full.events() if isinstance(e, ProxyReply)] == [in_dialog]
    assert "BYE cseq 5 answered 408 Request Timeout by the proxy toward pbx1" in show(full)
    assert "408 Request Timeout (BYE, the proxy&#x27;s)" in svg(full)
    assert full.state == "completed"  # an answer to a BYE changes no outcome
