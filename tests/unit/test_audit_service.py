"""``referee audit ingest``: the real command, as a subprocess, with no PBX configured anywhere.

It reads a proxy's event file (the lines of a recorded lab run) into an SQLite audit database,
once or with ``--follow``; the follower is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from referee.audit import TransferRecord, open_store
from referee.events import NotifyOutcome, State

RECORDED = Path(__file__).resolve().parent / "data" / "proxy" / "recorded_blind_refer.jsonl"
CALL_ID = "290aee4c-1f58-4062-83dc-ce8dbec6fe6d"
REFEREE = [str(Path(sys.executable).with_name("referee"))]
WAIT = 30.0  # a generous bound for a loaded machine; the test waits for a condition, not a time


def environment() -> dict[str, str]:
    """This environment without any referee setting: no PBX, no API, no default database."""
    return {k: v for k, v in os.environ.items() if not k.startswith("REFEREE_")}


def ingest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*REFEREE, "audit", "ingest", *args],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=WAIT,
        check=False,
    )


def the_record(db: str) -> TransferRecord | None:
    store = open_store(db)
    try:
        found = store.find(CALL_ID)
        return None if found is None else store.get(found)
    finally:
        store.close()


def wait_for(db: str, done: Callable[[TransferRecord], bool]) -> TransferRecord:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        record = the_record(db)
        if record is not None and done(record):
            return record
        time.sleep(0.05)
    pytest.fail(f"the follower did not get there within {WAIT} s; last record: {the_record(db)}")


def test_ingest_fills_the_audit_from_a_proxys_event_file(tmp_path: Path) -> None:
    events, db = tmp_path / "events.jsonl", str(tmp_path / "audit.sqlite3")
    events.write_text(RECORDED.read_text() + "garbage\n")
    done = ingest("--events", str(events), "--db", db)
    assert done.returncode == 0, done.stderr
    assert "5 events applied, 1 bad lines skipped" in done.stderr
    record = the_record(db)
    assert record is not None
    assert (record.origin, record.flow, record.state, record.result) == (
        "refer",
        "blind",
        "completed",
        "NOTIFY 200 OK",
    )
    assert (record.refer_cseq, record.pbx) == ("1", None)  # no PBX: only the proxy's word
    assert [n.status for n in record.notify_outcomes()] == [100, 180, 200]
    # run again: every line was read already
    again = ingest("--events", str(events), "--db", db)
    assert again.returncode == 0 and "0 events applied, 0 bad lines skipped" in again.stderr
    store = open_store(db)
    assert len(store.records()) == 1
    assert store.get(record.id).entries == record.entries  # type: ignore[union-attr]
    store.close()


def recorded_now() -> list[str]:
    """The recorded lines moved to now: a follower fails transfers that waited NOTIFY_TIMEOUT s."""
    raw = [json.loads(line) for line in RECORDED.read_text().splitlines()]
    shift = time.time() - raw[0]["time"]
    return [json.dumps({**event, "time": event["time"] + shift}) + "\n" for event in raw]


def test_follow_reads_what_the_proxy_appends_until_stopped(tmp_path: Path) -> None:
    events, db = tmp_path / "events.jsonl", str(tmp_path / "audit.sqlite3")
    lines = recorded_now()
    events.write_text("".join(lines[:-1]))  # all but the final NOTIFY
    open_store(db).close()  # the schema exists before the test starts reading it
    follower = subprocess.Popen(
        [*REFEREE, "audit", "ingest", "--events", str(events), "--db", db, "--follow", "--interval", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        record = wait_for(db, lambda r: len(r.notify_outcomes()) == 2)
        assert record.state == State.RINGBACK
        with events.open("a") as handle:
            handle.write(lines[-1])
        record = wait_for(db, lambda r: r.state == State.COMPLETED)
        assert [n.cseq for n in record.notify_outcomes()] == [9650, 9651, 9652]
        assert isinstance(record.events()[-2], NotifyOutcome)  # the appended line, then its move
    finally:
        os.kill(follower.pid, signal.SIGTERM)
        _, err = follower.communicate(timeout=WAIT)
    assert follower.returncode == 0, err
    assert "5 events applied, 0 bad lines skipped" in err
