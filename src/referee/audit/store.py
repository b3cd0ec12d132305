"""The audit store: one transaction per change, committed before a write method returns.

``open_store(dsn)`` takes a file path, ``sqlite:///abs/path`` or ``sqlite:relative/path`` (SQLite
in WAL mode, fsync'd on commit: :mod:`referee.audit.sqlite_db`), or ``postgresql://...``
(PostgreSQL through psycopg 3: :mod:`referee.audit.postgres_db`). The statements here are shared
by both dialects.

Every write method commits before it returns (unless inside :meth:`AuditStore.transaction`,
which commits once at its end), so a record the daemon has written survives a SIGKILL.

An entry is one of :mod:`referee.events`' typed events, kept as its ``to_dict()`` and read
back with ``from_dict``; a state change is a :class:`~referee.events.TransferMove` entry.

Whoever adds a PBX event or a NOTIFY to a record (the correlator, the orchestrator's tracker), the store
assesses the record again (:mod:`referee.audit.evidence`): its ``evidence`` is kept current, and a
REFER's record ``completed`` on a NOTIFY 200 that the PBX then contradicts becomes ``failed`` with the
PBX's words (``pbx reports Fail``): the one case where a final state changes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from referee.audit.dsn import AuditError, parse_dsn, sqlite_path
from referee.audit.evidence import assess
from referee.audit.migrate import FROM_VERSION, upgrade_v2
from referee.audit.postgres_db import describe, open_postgres
from referee.audit.record import Entry, TransferRecord, label
from referee.audit.schema import SCHEMA_VERSION
from referee.audit.sqlite_db import open_sqlite
from referee.events import (
    FINAL_STATES,
    BadEvent,
    Event,
    NotifyOutcome,
    PbxEvent,
    State,
    TransferMove,
    from_dict,
)

__all__ = ["SCHEMA_VERSION", "AuditError", "AuditStore", "open_store", "sqlite_path"]


class Rows(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Db(Protocol):
    """A connection in autocommit mode taking ``?`` placeholders."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows: ...
    def begin(self) -> None: ...
    def close(self) -> None: ...


def open_store(dsn: str, *, clock: Callable[[], float] = time.time) -> AuditStore:
    target = parse_dsn(dsn)
    postgres = target.kind == "postgresql"
    if postgres:
        store = AuditStore(open_postgres(target.where), describe(target.where), clock)
    else:
        store = AuditStore(open_sqlite(target.where), target.where, clock)
    if store.schema_version() == FROM_VERSION:
        with store.transaction():
            upgrade_v2(store._conn.execute, store.get, postgres=postgres)
    version = store.schema_version()
    if version != SCHEMA_VERSION:
        store.close()
        raise AuditError(
            f"audit database {store.path} has schema {version}, this referee reads schema {SCHEMA_VERSION}"
            " (its entries are not typed events): move it aside and start a new one"
        )
    return store


def _state(name: str) -> State:
    try:
        return State(name)
    except ValueError:
        raise ValueError(f"unknown transfer state {name!r}") from None


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


class AuditStore:
    def __init__(self, db: Db, path: str, clock: Callable[[], float]) -> None:
        self._conn = db
        self.path = path
        self._clock = clock
        self._depth = 0

    def close(self) -> None:
        self._conn.close()

    def now(self) -> float:
        return float(self._clock())

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one commit (nesting joins the outer transaction)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._conn.begin()
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self._conn.execute("COMMIT")

    # -- writes ----------------------------------------------------------------------------

    def create(
        self,
        origin: str,
        *,
        state: str = State.STARTING,
        call_id: str | None = None,
        refer_cseq: str | None = None,
        flow: str | None = None,
        pbx: str | None = None,
        parties: dict[str, str] | None = None,
        when: float | None = None,
        cause: str = "",
    ) -> int:
        """A new record; its first entry says it was opened (in ``state``, on ``cause``: the origin
        when not given)."""
        state = _state(state)
        when = self.now() if when is None else when
        with self.transaction():
            row = self._conn.execute(
                "INSERT INTO transfers"
                " (call_id, refer_cseq, origin, flow, pbx, state, parties, created, updated, ended)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    call_id,
                    refer_cseq,
                    origin,
                    flow,
                    pbx,
                    str(state),
                    _dumps(parties or {}),
                    when,
                    when,
                    when if state in FINAL_STATES else None,
                ),
            ).fetchone()
            transfer_id = int(row[0])
            self._entry(transfer_id, TransferMove(when, transfer_id, None, state, cause or origin))
        return transfer_id

    def update(
        self,
        transfer_id: int,
        *,
        state: str | None = None,
        result: str | None = None,
        flow: str | None = None,
        pbx: str | None = None,
        call_id: str | None = None,
        refer_cseq: str | None = None,
        origin: str | None = None,
        parties: dict[str, str] | None = None,
        policy_version: str | None = None,
        when: float | None = None,
        cause: str = "",
    ) -> None:
        """Change fields; a state change is also an entry (moved on ``cause``); a final state sets
        ``ended``."""
        when = self.now() if when is None else when
        with self.transaction():
            row = self._conn.execute(
                "SELECT state, parties, ended, updated FROM transfers WHERE id = ?", (transfer_id,)
            ).fetchone()
            if row is None:
                raise AuditError(f"no transfer {transfer_id}")
            old_state, old_parties, ended, updated = row
            sets: dict[str, Any] = {"updated": max(updated, when)}
            if state is not None and state != old_state:
                after = _state(state)
                sets["state"] = str(after)
                if after in FINAL_STATES and ended is None:
                    sets["ended"] = when
                move = TransferMove(when, transfer_id, State(old_state), after, cause, result or "")
                self._entry(transfer_id, move)
            if result is not None:
                sets["result"] = result
            if flow is not None:
                sets["flow"] = flow
            if pbx is not None:
                sets["pbx"] = pbx
            if call_id is not None:
                sets["call_id"] = call_id
            if refer_cseq is not None:
                sets["refer_cseq"] = refer_cseq
            if origin is not None:
                sets["origin"] = origin
            if policy_version is not None:
                sets["policy_version"] = policy_version
            if parties:
                merged = {**json.loads(old_parties), **parties}
                sets["parties"] = _dumps(merged)
            columns = ", ".join(f"{name} = ?" for name in sets)
            self._conn.execute(f"UPDATE transfers SET {columns} WHERE id = ?", (*sets.values(), transfer_id))

    def add_entry(self, transfer_id: int, event: Event) -> int:
        """Record an event in a transfer (at the event's time); a PBX event or a NOTIFY has the record
        assessed again."""
        with self.transaction():
            seq = self._entry(transfer_id, event)
            self._conn.execute(
                "UPDATE transfers SET updated = CASE WHEN updated < ? THEN ? ELSE updated END WHERE id = ?",
                (event.time, event.time, transfer_id),
            )
            if isinstance(event, PbxEvent | NotifyOutcome):
                self._reassess(transfer_id, event.time)
        return seq

    def _reassess(self, transfer_id: int, when: float) -> None:
        """Keep the record's evidence current; fail a REFER's completion the PBX contradicts."""
        record = self.get(transfer_id)
        if record is None:
            return
        found = assess(record)
        if found.evidence != record.evidence:
            self._conn.execute(
                "UPDATE transfers SET evidence = ? WHERE id = ?", (found.evidence, transfer_id)
            )
        if found.contradiction and record.state == State.COMPLETED and record.origin == "refer":
            self.update(
                transfer_id, state=State.FAILED, result=found.contradiction, when=when, cause="the PBX's view"
            )

    def _entry(self, transfer_id: int, event: Event) -> int:
        cseq = event.cseq if isinstance(event, NotifyOutcome) else None
        row = self._conn.execute(
            "INSERT INTO entries (transfer_id, time, source, kind, cseq, data)"
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
            (transfer_id, event.time, event.source, label(event), cseq, _dumps(event.to_dict())),
        ).fetchone()
        return int(row[0])

    def absorb(self, into_id: int, from_id: int) -> None:
        """Move the events of record ``from_id`` into ``into_id`` (in their order) and drop ``from_id``,
        with its own state moves: a record one side opened before the other side's record was known."""
        with self.transaction():
            self._conn.execute(
                "UPDATE entries SET transfer_id = ? WHERE transfer_id = ? AND source <> 'state'",
                (into_id, from_id),
            )
            self._conn.execute("DELETE FROM entries WHERE transfer_id = ?", (from_id,))
            self._conn.execute("DELETE FROM transfers WHERE id = ?", (from_id,))
            record = self.get(into_id)
            if record is not None:  # the absorbed PBX events count as evidence too
                self._reassess(into_id, record.updated)

    def set_ingest_offset(self, path: str, inode: int, offset: int) -> None:
        with self.transaction():
            self._conn.execute(
                'INSERT INTO ingest (path, inode, "offset") VALUES (?, ?, ?)'
                ' ON CONFLICT (path) DO UPDATE SET inode = excluded.inode, "offset" = excluded."offset"',
                (path, inode, offset),
            )

    # -- reads -----------------------------------------------------------------------------

    def schema_version(self) -> int | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return None if row is None else int(row[0])

    def ended_counts(self) -> dict[tuple[str, str], int]:
        """Records in a final state by (flow, state), flow "" when unknown (referee.metrics.audit)."""
        rows = self._conn.execute(
            "SELECT COALESCE(flow, ''), state, COUNT(*) FROM transfers WHERE ended IS NOT NULL"
            " GROUP BY COALESCE(flow, ''), state"
        ).fetchall()
        return {(str(flow), str(state)): int(count) for flow, state, count in rows}

    def ingest_offset(self, path: str) -> tuple[int, int] | None:
        row = self._conn.execute('SELECT inode, "offset" FROM ingest WHERE path = ?', (path,)).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def find(self, call_id: str, refer_cseq: str | None = None) -> int | None:
        """The newest record for this Call-ID (and REFER CSeq, when given)."""
        if refer_cseq:
            row = self._conn.execute(
                "SELECT id FROM transfers WHERE call_id = ? AND refer_cseq = ? ORDER BY id DESC LIMIT 1",
                (call_id, refer_cseq),
            ).fetchone()
        else:
            row = self._conn.execute(
                "SELECT id FROM transfers WHERE call_id = ? ORDER BY id DESC LIMIT 1", (call_id,)
            ).fetchone()
        return None if row is None else int(row[0])

    def open_ids(self, origin: str) -> list[int]:
        """The transfers of this origin not in a final state yet, oldest first."""
        finals = sorted(str(state) for state in FINAL_STATES)
        marks = ", ".join("?" for _ in finals)
        rows = self._conn.execute(
            f"SELECT id FROM transfers WHERE origin = ? AND state NOT IN ({marks}) ORDER BY id",
            (origin, *finals),
        ).fetchall()
        return [int(row[0]) for row in rows]

    def state_of(self, transfer_id: int) -> State | None:
        row = self._conn.execute("SELECT state FROM transfers WHERE id = ?", (transfer_id,)).fetchone()
        return None if row is None else State(row[0])

    def get(self, transfer_id: int) -> TransferRecord | None:
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM transfers WHERE id = ?", (transfer_id,)).fetchone()
        if row is None:
            return None
        entries = tuple(
            _entry_from(r)
            for r in self._conn.execute(
                "SELECT seq, transfer_id, data FROM entries WHERE transfer_id = ? ORDER BY seq",
                (transfer_id,),
            ).fetchall()
        )
        return _record_from(row, entries)

    def records(self, *, limit: int = 50, state: str | None = None) -> list[TransferRecord]:
        """Newest first, without entries."""
        if state is None:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM transfers ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        else:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM transfers WHERE state = ? ORDER BY id DESC LIMIT ?", (state, limit)
            ).fetchall()
        return [_record_from(row, ()) for row in rows]

    def entries_after(self, seq: int, *, limit: int = 500) -> list[Entry]:
        rows = self._conn.execute(
            "SELECT seq, transfer_id, data FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        ).fetchall()
        return [_entry_from(r) for r in rows]

    def last_seq(self) -> int:
        row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM entries").fetchone()
        return int(row[0])


_COLUMNS = (
    "id, call_id, refer_cseq, origin, flow, pbx, state, result, parties, created, updated, ended,"
    " evidence, policy_version"
)


def _record_from(row: tuple[Any, ...], entries: tuple[Entry, ...]) -> TransferRecord:
    return TransferRecord(
        id=int(row[0]),
        call_id=row[1],
        refer_cseq=row[2],
        origin=row[3],
        flow=row[4],
        pbx=row[5],
        state=State(row[6]),
        result=row[7],
        parties=json.loads(row[8]),
        created=float(row[9]),
        updated=float(row[10]),
        ended=None if row[11] is None else float(row[11]),
        entries=entries,
        evidence=row[12],
        policy_version=row[13],
    )


def _entry_from(row: tuple[Any, ...]) -> Entry:
    try:
        event = from_dict(json.loads(row[2]))
    except (BadEvent, ValueError) as exc:
        raise AuditError(f"audit entry {row[0]} is not an event: {exc}") from None
    return Entry(seq=int(row[0]), transfer_id=int(row[1]), event=event)
