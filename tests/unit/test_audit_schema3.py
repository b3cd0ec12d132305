"""Audit schema 3: each record keeps its decision's policy version and its evidence, shown by ``referee
transfers --json`` and the API; and the proxy's own answers (``proxy.reply``) are ingested. (The upgrade of
a schema 2 database is tested on both backends in test_audit_store.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest
from recorded_store import Ticker, first_time, proxy_lines

from referee.audit import open_store
from referee.audit.correlate import Correlator
from referee.audit.ingest import EventFileIngest
from referee.audit.ladder import svg
from referee.audit.render import show
from referee.cli import main
from referee.events import ProxyReply, ReferDecision, from_json, to_json
from referee.orchestrator.api_service import OrchestratorService

VERSION = "5d41402abc4b"
BLIND = "recorded_blind_refer"


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
