"""The dialog map's SQLite copy: what a restart reads back, and expiry kept off the write path."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from kemi_fixtures import Clock

from referee.kemi.dialogs import DIALOG_LIFETIME, PRUNE_EVERY, DialogDatabase, DialogRecord, DialogStore
from referee.testing.fake_ksr import FakeKSR


def test_a_dialog_the_htable_lost_is_read_back_from_the_database(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    database = DialogDatabase(str(tmp_path / "dialogs.sqlite"), clock)
    record = DialogRecord("c1", "pbx1", "ft", "tt", "1002", "1001", party="1002")
    DialogStore(FakeKSR(), "referee_dlg", database).put(record)
    after_restart = FakeKSR()  # an empty htable
    assert DialogStore(after_restart, "referee_dlg", database).get("c1") == record
    assert "c1" in after_restart.tables["referee_dlg"]  # cached again for the native check
    DialogStore(after_restart, "referee_dlg", database).forget("c1")
    assert DialogStore(FakeKSR(), "referee_dlg", database).get("c1") is None


def test_expired_dialogs_are_ignored_at_once_and_deleted_by_the_timer_once_a_minute(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    database = DialogDatabase(str(tmp_path / "dialogs.sqlite"), clock)
    store = DialogStore(FakeKSR(), "referee_dlg", database)
    store.put(DialogRecord("old", "pbx1", "ft", "", "1002", "1001"))
    clock.now += DIALOG_LIFETIME
    store.put(DialogRecord("new", "pbx1", "ft", "", "1002", "1001"))
    assert database.get("old") is None and database.get("new") is not None
    assert database.count() == 2  # a write deletes nothing
    store.prune_when_due()
    assert database.count() == 1
    pruned_at = clock.now
    clock.now = pruned_at - DIALOG_LIFETIME  # a dialog written that long before: already expired
    store.put(DialogRecord("stale", "pbx1", "ft", "", "1002", "1001"))
    clock.now = pruned_at + PRUNE_EVERY / 2
    store.prune_when_due()  # within PRUNE_EVERY of the last: not yet
    assert database.count() == 2 and database.get("stale") is None
    clock.now = pruned_at + PRUNE_EVERY
    store.prune_when_due()
    assert database.count() == 1 and database.get("new") is not None


def test_a_database_of_an_earlier_referee_is_migrated_with_its_dialogs(tmp_path: Path) -> None:
    path = tmp_path / "dialogs.sqlite"
    with sqlite3.connect(path) as old:  # the table as referee wrote it before WITHOUT ROWID
        old.execute(
            "CREATE TABLE referee_dialog (call_id TEXT PRIMARY KEY, data TEXT NOT NULL, updated REAL NOT NULL)"
        )
        old.execute("INSERT INTO referee_dialog VALUES ('c1', 'ft:tt|{}', 1000.0)")
    old.close()
    database = DialogDatabase(str(path), Clock(1000.0))
    assert database.get("c1") == "ft:tt|{}"
    with sqlite3.connect(path) as db:
        (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'referee_dialog'").fetchone()
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "WITHOUT ROWID" in sql and tables == {"referee_dialog"}
    DialogDatabase(str(path), Clock(1000.0)).put("c2", "x:|{}")  # opened again: nothing to migrate
    assert database.count() == 2
