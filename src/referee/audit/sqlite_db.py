"""The SQLite side of the store: WAL, synchronous=FULL, foreign keys, the schema."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from typing import Any

from referee.audit.dsn import AuditError
from referee.audit.schema import SCHEMA_VERSION, SET_VERSION, SQLITE_SCHEMA


class SqliteDb:
    """A connection in autocommit mode; :class:`AuditStore` opens and ends transactions itself."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def close(self) -> None:
        self.conn.close()


def open_sqlite(path: str) -> SqliteDb:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise AuditError(f"audit database directory {parent} does not exist")
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(SQLITE_SCHEMA)
        conn.execute(SET_VERSION, (str(SCHEMA_VERSION),))
    except sqlite3.Error as exc:
        raise AuditError(f"audit database {path}: {exc}") from None
    return SqliteDb(conn)
