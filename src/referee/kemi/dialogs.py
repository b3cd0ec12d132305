"""Which PBX holds which dialog: a Kamailio htable (replicated over DMQ), written through to SQLite.

The htable ``referee_dlg`` is the fast, shared view every worker reads. It lives in Kamailio's
shared memory, so a restart (graceful or SIGKILL) empties it. With a dialog database
(``REFEREE_DIALOG_DB``) every change is also committed to a SQLite file before the request is
relayed, and a dialog the htable does not know is looked up there and put back in the htable:
a call set up before a restart can still be transferred after it.

SQLite (stdlib ``sqlite3``) rather than Kamailio's ``dialog`` module: the map holds referee's own
fields (PBX, depth, parties), and one small table with its own expiry is simpler to reason about
than dialog-module profiles. WAL mode lets every worker process read while one writes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from referee.kemi import shared_table

if TYPE_CHECKING:
    from referee.kemi.ksr import KSR

# The htable's autoexpire (kamailio.cfg.j2): a dialog older than this is forgotten in both places.
DIALOG_LIFETIME = 43200.0
PRUNE_EVERY = 60.0  # seconds between two deletions of expired dialogs from the database
# WITHOUT ROWID: the rows live in the primary key's b-tree, so a write changes one tree, not a table and
# its key's index (about 0.7x the CPU and half the log bytes per dialog change, two writers at once).
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS referee_dialog ("
    " call_id TEXT PRIMARY KEY, data TEXT NOT NULL, updated REAL NOT NULL) WITHOUT ROWID"
)


@dataclass(frozen=True)
class DialogRecord:
    call_id: str
    pbx: str
    from_tag: str
    to_tag: str
    from_user: str
    to_user: str
    # Transfers the proxy saw lead to this dialog: an INVITE with Replaces makes the replaced
    # dialog's depth + 1; one with Referred-By (RFC 3892: sent because of a REFER) at least 1.
    depth: int = 0
    # The phone the proxy vouches for in this dialog: the user it authenticated (the caller) or
    # the registered user it delivered the call to (the callee). In-dialog REFERs are decided for it.
    party: str = ""

    def has_tags(self, tag_a: str, tag_b: str) -> bool:
        """Whether the two tags are this dialog's, in either order."""
        return {tag_a, tag_b} == {self.from_tag, self.to_tag}

    def named_by(self, tag_a: str, tag_b: str) -> bool:
        """Whether a Replaces with these two tags names this dialog: both tags, or, for a dialog whose
        To tag was not learned (an existing Kamailio's drop-in records the INVITE only), its From tag."""
        if not self.to_tag:
            return self.from_tag in (tag_a, tag_b)
        return self.has_tags(tag_a, tag_b)

    def has_party(self, user: str) -> bool:
        return bool(user) and user in (self.from_user, self.to_user)


# A record is ``FROM_TAG:TO_TAG|{json of the rest}``: the tags first, so that a native cfg (the full
# proxy's in-dialog check, kamailio.cfg.j2) reads them with ``{s.before,|}`` and ``{s.before,:}`` and
# parses no JSON. Tags are SIP tokens, which hold neither ``:`` nor ``|``; a record whose tags would (a
# parser more lenient than the grammar), or would start like JSON, is written as JSON alone, the older
# form, which the native check hands to Python. Both forms are read back.
TAGS_END, TAG_SEPARATOR = "|", ":"


def _encode(record: DialogRecord) -> str:
    data: dict[str, str | int] = {
        "pbx": record.pbx,
        "from_user": record.from_user,
        "to_user": record.to_user,
    }
    if record.depth:
        data["depth"] = record.depth
    if record.party:
        data["party"] = record.party
    tags = record.from_tag + TAG_SEPARATOR + record.to_tag
    if tags.count(TAG_SEPARATOR) == 1 and TAGS_END not in tags and not tags.startswith("{"):
        return tags + TAGS_END + json.dumps(data, separators=(",", ":"))
    data.update(from_tag=record.from_tag, to_tag=record.to_tag)
    return json.dumps(data, separators=(",", ":"))


def _decode(call_id: str, raw: object) -> DialogRecord | None:
    if not isinstance(raw, str) or not raw:
        return None
    tags, found, body = raw.partition(TAGS_END)
    try:
        if raw.startswith("{") or not found:  # the JSON form (older records, the drop-in's)
            return DialogRecord(call_id=call_id, **json.loads(raw))
        from_tag, _, to_tag = tags.partition(TAG_SEPARATOR)
        return DialogRecord(call_id=call_id, from_tag=from_tag, to_tag=to_tag, **json.loads(body))
    except (ValueError, TypeError):
        return None


def _create_or_migrate(db: sqlite3.Connection) -> None:
    """The table as SCHEMA says; one written by an earlier referee (a rowid table) is copied into it,
    in one transaction that the first worker to get the write lock runs."""
    if _is_current(db):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if not _is_current(db):  # another worker may have migrated while this one waited
            db.execute("ALTER TABLE referee_dialog RENAME TO referee_dialog_rowid")
            db.execute(SCHEMA)
            db.execute("INSERT INTO referee_dialog SELECT call_id, data, updated FROM referee_dialog_rowid")
            db.execute("DROP TABLE referee_dialog_rowid")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _is_current(db: sqlite3.Connection) -> bool:
    """The table exists WITHOUT ROWID (created now when it does not exist at all)."""
    found = db.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'referee_dialog'"
    ).fetchone()
    if found is None:
        db.execute(SCHEMA)
        return True
    return "WITHOUT ROWID" in str(found[0]).upper()


class DialogDatabase:
    """The SQLite copy of the dialog map. Opened lazily, per process (Kamailio forks its workers
    after ``mod_init``, and a SQLite connection must not cross a fork)."""

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, timeout=2.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a process crash loses nothing
            _create_or_migrate(db)
            self._db = db
        return self._db

    def after_fork(self) -> None:
        """Forget a connection opened in the parent (``child_init``)."""
        self._db = None

    def get(self, call_id: str) -> str | None:
        row = (
            self._conn()
            .execute(
                "SELECT data FROM referee_dialog WHERE call_id = ? AND updated > ?",
                (call_id, self.clock() - DIALOG_LIFETIME),
            )
            .fetchone()
        )
        return row[0] if row else None

    def put(self, call_id: str, data: str) -> None:
        now = self.clock()
        db = self._conn()
        db.execute(
            "INSERT INTO referee_dialog (call_id, data, updated) VALUES (?, ?, ?)"
            " ON CONFLICT (call_id) DO UPDATE SET data = excluded.data, updated = excluded.updated",
            (call_id, data, now),
        )

    def prune(self) -> int:
        """Delete the dialogs older than their lifetime (``get`` already ignores them); how many.
        Run from the proxy's timer process (:meth:`DialogStore.prune_when_due`), not per write: a write
        per dialog change is what a call pays."""
        cursor = self._conn().execute(
            "DELETE FROM referee_dialog WHERE updated <= ?", (self.clock() - DIALOG_LIFETIME,)
        )
        return cursor.rowcount

    def forget(self, call_id: str) -> None:
        self._conn().execute("DELETE FROM referee_dialog WHERE call_id = ?", (call_id,))

    def count(self) -> int:
        return int(self._conn().execute("SELECT count(*) FROM referee_dialog").fetchone()[0])


class DialogStore:
    def __init__(self, ksr: KSR, table: str, database: DialogDatabase | None = None) -> None:
        self._k = ksr
        self.table = table
        self.database = database
        self._next_prune = 0.0

    def get(self, call_id: str) -> DialogRecord | None:
        raw = shared_table.read(self._k, self.table, call_id)
        if (not isinstance(raw, str) or not raw) and self.database is not None:
            raw = self._from_database(call_id)
        return _decode(call_id, raw)

    def _from_database(self, call_id: str) -> str | None:
        """A dialog the htable lost (a restart): read back and cached in the htable again."""
        try:
            raw = self.database.get(call_id) if self.database is not None else None
        except sqlite3.Error as exc:
            self._k.err(f"referee: dialog database read failed: {exc}\n")
            return None
        if raw:
            self._k.htable.sht_sets(self.table, call_id, raw)
        return raw

    def put(self, record: DialogRecord) -> None:
        data = _encode(record)
        self._k.htable.sht_sets(self.table, record.call_id, data)
        self._write(lambda db: db.put(record.call_id, data))

    def set_to_tag(self, call_id: str, to_tag: str) -> None:
        record = self.get(call_id)
        if record is not None and not record.to_tag and to_tag:
            self.put(DialogRecord(**{**record.__dict__, "to_tag": to_tag}))

    def forget(self, call_id: str) -> None:
        self._k.htable.sht_rm(self.table, call_id)
        self._write(lambda db: db.forget(call_id))

    def prune_when_due(self) -> None:
        """The timer's tick: expired dialogs leave the database once every ``PRUNE_EVERY`` seconds."""
        if self.database is None or self.database.clock() < self._next_prune:
            return
        self._next_prune = self.database.clock() + PRUNE_EVERY
        self._write(lambda db: db.prune())

    def _write(self, change: Callable[[DialogDatabase], object]) -> None:
        # A database that cannot be written costs persistence, never the call: log and go on.
        if self.database is None:
            return
        try:
            change(self.database)
        except sqlite3.Error as exc:
            self._k.err(f"referee: dialog database write failed: {exc}\n")
