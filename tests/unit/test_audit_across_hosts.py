"""One audit database, several writers: a proxy host's ingest and each PBX host's orchestrator.

Against a real PostgreSQL (:mod:`pg_server`): two writers racing on the same transfer give one record
whichever commits first; a PBX that held a replaced dialog joins the REFER's record before or after the
decision is read; ``referee transfers`` and the API read PostgreSQL as they read SQLite.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest
from ami_traces import BOB, trace
from http_raw import exchange, request
from pg_server import HOST, PgServer

from referee.api.app import Api
from referee.api.http import HttpServer
from referee.audit import open_store
from referee.audit.correlate import REPLACES, Correlator
from referee.audit.ingest import EventFileIngest
from referee.audit.store import AuditStore
from referee.cli import main
from referee.events import NotifyOutcome, PbxEvent, ReferDecision, ReferResponse, to_json
from referee.orchestrator.api_service import OrchestratorService
from referee.orchestrator.operations import Orchestrator
from referee.orchestrator.tracker import Tracker

TOKEN = "t0k3n-across-hosts"
REFER_DIALOG = "alice-bob@127.0.0.31"
REPLACED_DIALOG = "dave-bob@127.0.0.34"
BOB_CALL_ID = "bob-dialog@127.0.0.32"
BRIDGE1 = "5a1c0e4e-6a57-4a0e-9d43-0c6a1f3b0001"  # the bridge of call_setup.txt


def decision(call_id: str = REFER_DIALOG, when: float = 10.0, replaced: str | None = None) -> ReferDecision:
    summary = {} if replaced is None else {"replaces": {"call_id": replaced, "to_tag": "t", "from_tag": "f"}}
    refer_to = "<sip:2001@lab.test?Replaces=x>" if replaced else "<sip:1003@lab.test>"
    return ReferDecision(
        when, call_id, 2, "sip:1002@lab.test", "127.0.0.32", True, 202, "Accepted", "r", refer_to,
        decision=summary, replaces_pbx="pbx2" if replaced else None,
    )  # fmt: skip


def blind_transfer(pbx: str = "pbx1", when: float = 11.0) -> PbxEvent:
    return PbxEvent(when, pbx, "BlindTransfer", {"Result": "Success", "TransfererUniqueid": "1.1"})


def swapped_in(when: float = 11.5) -> PbxEvent:
    return PbxEvent(when, "pbx2", "BridgeEnter", {"Uniqueid": "2.9", "SwapUniqueid": "2.2"})


def records(dsn: str) -> list[int]:
    store = open_store(dsn)
    try:
        return [r.id for r in store.records(limit=100)]
    finally:
        store.close()


def backends_waiting_for_a_lock(store: AuditStore) -> int:
    row = store._conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    ).fetchone()
    return int(row[0])


def test_a_writer_waits_for_the_other_and_joins_its_record(postgres: PgServer) -> None:
    """The proxy host's ingest is inside its transaction (the decision's record opened, not committed)
    when the PBX host's orchestrator reads the PBX's BlindTransfer: the orchestrator waits for it and
    joins that record. Without the write lock it would see no record and open a second one."""
    dsn = postgres.new_database()
    ingest, orchestrator, watcher = open_store(dsn), open_store(dsn), open_store(dsn)
    joined: list[int] = []
    pbx_side = threading.Thread(
        target=lambda: joined.append(
            Correlator(orchestrator).pbx_transfer(
                [REFER_DIALOG], blind_transfer(), flow="blind", parties={"initiator": "PJSIP/1002-01"}
            )
        )
    )
    try:
        with ingest.transaction():
            refer_record = Correlator(ingest).proxy(decision())
            pbx_side.start()
            while backends_waiting_for_a_lock(watcher) == 0:  # the PBX side is blocked on the write lock
                assert pbx_side.is_alive() and not joined, "the PBX side wrote past an open transaction"
                time.sleep(0.01)
        pbx_side.join()
        assert joined == [refer_record]
        assert records(dsn) == [refer_record]
        record = watcher.get(refer_record)
        assert record is not None
        assert [e.kind for e in record.entries if e.source != "state"] == ["refer.decision", "BlindTransfer"]
    finally:
        for store in (ingest, orchestrator, watcher):
            store.close()


@pytest.mark.parametrize("rounds", [25])
def test_two_writers_racing_on_the_same_transfer_make_one_record(postgres: PgServer, rounds: int) -> None:
    """Each round, the proxy's decision and the PBX's BlindTransfer of one transfer are written at the
    same moment by two connections (two hosts): whichever commits first, one record holds both."""
    dsn = postgres.new_database()
    ingest, orchestrator = open_store(dsn), open_store(dsn)
    try:
        for n in range(rounds):
            call_id = f"race-{n}@127.0.0.31"
            start = threading.Barrier(2)

            def proxy_side(call_id: str = call_id, start: threading.Barrier = start) -> None:
                start.wait()
                Correlator(ingest).proxy(decision(call_id))

            def pbx_side(call_id: str = call_id, start: threading.Barrier = start) -> None:
                start.wait()
                Correlator(orchestrator).pbx_transfer([call_id], blind_transfer(), flow="blind", parties={})

            threads = [threading.Thread(target=proxy_side), threading.Thread(target=pbx_side)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert len(records(dsn)) == rounds
        for transfer_id in records(dsn):
            record = ingest.get(transfer_id)
            assert record is not None and record.origin == "refer"
            assert sorted(e.kind for e in record.entries if e.source != "state") == [
                "BlindTransfer",
                "refer.decision",
            ]
    finally:
        ingest.close()
        orchestrator.close()


def test_the_replaced_dialogs_pbx_joins_the_refers_record_after_the_decision(dsn: str) -> None:
    """The REFER's PBX (pbx1) reports the attended REFER as a BlindTransfer (the replaced dialog is not
    its own): the record stays attended, so pbx2's swap still finds it."""
    store = open_store(dsn)
    try:
        correlator = Correlator(store)
        refer_record = correlator.proxy(decision(replaced=REPLACED_DIALOG))
        assert (
            correlator.pbx_transfer([REFER_DIALOG], blind_transfer(), flow="blind", parties={})
            == refer_record
        )
        assert correlator.pbx_replaced(REPLACED_DIALOG, swapped_in()) == refer_record
        record = store.get(refer_record)
        assert record is not None and record.flow == "attended"
        assert {e.pbx for e in record.events() if isinstance(e, PbxEvent)} == {"pbx1", "pbx2"}
        assert len(store.records()) == 1
    finally:
        store.close()


def test_the_replaced_dialogs_pbx_written_first_is_absorbed_by_the_decision(dsn: str) -> None:
    """pbx2's orchestrator wrote the swap before the proxy host's ingest read the decision: its record
    (origin ``replaces``) is absorbed, the decision's record holds both PBXs' events, and the NOTIFY
    that follows completes it."""
    store = open_store(dsn)
    try:
        correlator = Correlator(store)
        early = correlator.pbx_replaced(REPLACED_DIALOG, swapped_in(9.0))
        assert store.get(early) is not None and store.get(early).origin == REPLACES  # type: ignore[union-attr]
        pbx1 = correlator.pbx_transfer([REFER_DIALOG], blind_transfer(when=9.5), flow="blind", parties={})
        refer_record = correlator.proxy(decision(replaced=REPLACED_DIALOG))
        assert refer_record == pbx1
        correlator.proxy(NotifyOutcome(12.0, REFER_DIALOG, 3, 2, status=200, reason="OK"))
        assert [r.id for r in store.records()] == [refer_record]
        record = store.get(refer_record)
        assert record is not None and record.state == "completed" and record.flow == "attended"
        kinds = [(e.source, e.kind) for e in record.ladder() if e.source != "state"]
        assert kinds == [
            ("pbx", "BridgeEnter"),
            ("pbx", "BlindTransfer"),
            ("proxy", "refer.decision"),
            ("notify", "refer.outcome"),
        ]
    finally:
        store.close()


def test_a_refused_refer_does_not_absorb_the_replaced_dialogs_record(dsn: str) -> None:
    store = open_store(dsn)
    try:
        correlator = Correlator(store)
        early = correlator.pbx_replaced(REPLACED_DIALOG, swapped_in(9.0))
        refused = decision(replaced=REPLACED_DIALOG)
        refused = ReferDecision(
            refused.time, refused.call_id, refused.cseq, refused.referrer, refused.src, False, 403,
            "Forbidden", "deny", refused.refer_to, decision=refused.decision,
        )  # fmt: skip
        correlator.proxy(refused)
        assert early in [r.id for r in store.records()] and len(store.records()) == 2
    finally:
        store.close()


def fill(dsn: str) -> int:
    store = open_store(dsn)
    try:
        correlator = Correlator(store)
        transfer_id = correlator.proxy(decision(replaced=REPLACED_DIALOG))
        correlator.pbx_transfer([REFER_DIALOG], blind_transfer(), flow="attended", parties={})
        correlator.pbx_replaced(REPLACED_DIALOG, swapped_in())
        correlator.proxy(NotifyOutcome(12.0, REFER_DIALOG, 3, 2, status=200, reason="OK"))
        return transfer_id
    finally:
        store.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, _ = capsys.readouterr()
    return code, out


def test_referee_transfers_reads_postgresql_as_sqlite(
    capsys: pytest.CaptureFixture[str], postgres: PgServer, tmp_path: Path
) -> None:
    outputs = []
    for dsn in (str(tmp_path / "audit.db"), postgres.new_database()):
        transfer_id = fill(dsn)
        code, listing = run(capsys, "transfers", "--db", dsn, "--json")
        assert code == 0
        code, shown = run(capsys, "transfers", "--db", dsn, "show", str(transfer_id), "--json")
        assert code == 0
        code, ladder = run(capsys, "transfers", "--db", dsn, "show", str(transfer_id))
        assert code == 0
        outputs.append((json.loads(listing), json.loads(shown), ladder))
    sqlite, postgresql = outputs
    assert postgresql == sqlite
    assert [r["state"] for r in postgresql[0]] == ["completed"]
    assert {e["data"]["pbx"] for e in postgresql[1]["entries"] if e["source"] == "pbx"} == {"pbx1", "pbx2"}


def api_reads(dsn: str, transfer_id: int) -> tuple[object, object]:
    async def main() -> tuple[object, object]:
        store = open_store(dsn)
        server = HttpServer(Api(OrchestratorService(Orchestrator(store), store), TOKEN))
        _, port = await server.start(HOST, 0)
        try:
            status, _, listing = await exchange(HOST, port, request("GET", "/transfers", token=TOKEN))
            assert status == 200
            status, _, shown = await exchange(
                HOST, port, request("GET", f"/transfers/{transfer_id}", token=TOKEN)
            )
            assert status == 200
            return listing, shown
        finally:
            await server.close()
            store.close()

    return asyncio.run(asyncio.wait_for(main(), 30))


def test_the_api_reads_postgresql_as_sqlite(postgres: PgServer, tmp_path: Path) -> None:
    sqlite_db, postgres_db = str(tmp_path / "audit.db"), postgres.new_database()
    sqlite = api_reads(sqlite_db, fill(sqlite_db))
    postgresql = api_reads(postgres_db, fill(postgres_db))
    assert postgresql == sqlite
    listing, shown = postgresql
    assert isinstance(listing, dict) and isinstance(shown, dict)
    assert [r["state"] for r in listing["transfers"]] == ["completed"]
    assert {e["data"]["pbx"] for e in shown["entries"] if e["source"] == "pbx"} == {"pbx1", "pbx2"}


def swap_events(new: str, name: str, replaced: str) -> list[dict[str, str]]:
    """What a PBX reports when a call is swapped into a bridge for ``replaced`` (an INVITE with Replaces)."""
    return [
        {"Event": "Newchannel", "Channel": name, "Uniqueid": new, "ChannelState": "4"},
        {"Event": "Newstate", "Channel": name, "Uniqueid": new, "ChannelState": "6"},
        {
            "Event": "BridgeEnter",
            "Channel": name,
            "Uniqueid": new,
            "ChannelState": "6",
            "BridgeUniqueid": BRIDGE1,
            "SwapUniqueid": replaced,
        },
    ]


def test_the_pbx_holding_the_replaced_dialog_writes_its_swap_into_the_refers_record(tmp_path: Path) -> None:
    """pbx2's tracker: a SIP call swapped in for bob's SIP channel, whose Call-ID is the dialog the
    REFER's Replaces named, goes into that REFER's record; a Local channel swap (an optimisation) does not."""
    store = open_store(str(tmp_path / "audit.db"))
    try:
        refer_record = Correlator(store).proxy(decision(replaced=BOB_CALL_ID))
        tracker = Tracker("pbx2", store)
        for event in trace("call_setup.txt"):
            tracker.handle(event)
        bob = tracker.table.get(BOB)
        assert bob is not None
        bob.call_id = BOB_CALL_ID
        for event in swap_events("9.1", "Local/2001@from-pbx-00000009;2", BOB):
            tracker.handle(event)
        record = store.get(refer_record)
        assert record is not None and not [e for e in record.events() if isinstance(e, PbxEvent)]
        for event in swap_events("9.2", "PJSIP/proxy-0000000c", BOB):
            tracker.handle(event)
        record = store.get(refer_record)
        assert record is not None
        (swap,) = [e for e in record.events() if isinstance(e, PbxEvent)]
        assert (swap.pbx, swap.name, swap.fields["SwapUniqueid"]) == ("pbx2", "BridgeEnter", BOB)
        assert len(store.records()) == 1
    finally:
        store.close()


def test_two_proxy_hosts_ingesting_into_one_database_keep_their_own_offsets(tmp_path: Path) -> None:
    """Both proxies write /var/log/referee/events.jsonl; each host's ingest names itself, so one's
    offset never makes the other skip or repeat a line."""
    store = open_store(str(tmp_path / "audit.db"))
    try:
        files = []
        for host, call_id in (("proxy1", "p1@h"), ("proxy2", "p2@h")):
            events = tmp_path / host / "events.jsonl"
            events.parent.mkdir()
            events.write_text(to_json(decision(call_id)) + "\n")
            files.append((host, events))
        (one, first), (two, second) = files
        assert EventFileIngest(store, str(first), f"{one}:/var/log/referee/events.jsonl").poll() == 1
        with first.open("a") as handle:  # proxy1 grows past proxy2's file: must not hide proxy2's line
            handle.write(to_json(NotifyOutcome(11.0, "p1@h", 3, 2, status=100, reason="Trying")) + "\n")
        assert EventFileIngest(store, str(first), f"{one}:/var/log/referee/events.jsonl").poll() == 1
        assert EventFileIngest(store, str(second), f"{two}:/var/log/referee/events.jsonl").poll() == 1
        assert sorted(r.call_id or "" for r in store.records()) == ["p1@h", "p2@h"]
        assert store.ingest_offset(f"{two}:/var/log/referee/events.jsonl") == (
            second.stat().st_ino,
            second.stat().st_size,
        )
    finally:
        store.close()


@pytest.mark.parametrize("proxy_first", [True, False])
def test_refer_sub_false_is_completed_once_the_pbx_host_saw_it_complete(
    tmp_path: Path, proxy_first: bool
) -> None:
    """A REFER answered 2xx with Refer-Sub: false: the proxy alone can only say ``unconfirmed``. The PBX
    host's orchestrator saw the recipient answer, so the record says ``completed`` whichever side wrote
    first (the proxy's unconfirmed does not hide the PBX's word, nor undo it)."""
    store = open_store(str(tmp_path / "audit.db"))
    try:
        correlator, tracker = Correlator(store), Tracker("pbx1", store)
        for event in trace("call_setup.txt"):
            tracker.handle(event)
        bob = tracker.table.get(BOB)
        assert bob is not None
        bob.call_id = BOB_CALL_ID
        proxy_side = [
            decision(BOB_CALL_ID),
            ReferResponse(10.5, BOB_CALL_ID, 2, 200, "OK", subscription=False),
        ]
        if proxy_first:
            for event in proxy_side:
                correlator.proxy(event)
            (record,) = store.records()
            assert record.state == "unconfirmed"
        for event in trace("blind_refer.txt"):
            tracker.handle(event)
        if not proxy_first:
            for event in proxy_side:
                correlator.proxy(event)
        (record,) = store.records()
        assert (record.state, record.result) == ("completed", "the recipient answered")
    finally:
        store.close()
