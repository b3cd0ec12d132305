"""The PostgreSQL side of the store (psycopg 3, the ``postgres`` extra): connect, create the schema.

A connection error names the server and the problem (never the password) as :class:`AuditError`.
Statements are written with ``?`` placeholders (the SQLite form) and rewritten to ``%s`` here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from referee.audit.dsn import AuditError
from referee.audit.schema import POSTGRES_SCHEMA, SCHEMA_VERSION, SET_VERSION

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    HAVE_PSYCOPG = True
except ImportError:  # the postgres extra is not installed: open_postgres says so
    HAVE_PSYCOPG = False

CONNECT_TIMEOUT = 10


def describe(dsn: str) -> str:
    """user@host:port/dbname of a DSN, without its password."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "postgresql (unparsable DSN)"
    user = f"{info['user']}@" if info.get("user") else ""
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{info.get('host') or 'localhost'}{port}/{info.get('dbname') or ''}"


class PostgresDb:
    """A connection in autocommit mode; :class:`AuditStore` opens and ends transactions itself."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if params:
            return self.conn.execute(sql.replace("?", "%s"), tuple(params))
        return self.conn.execute(sql)

    def begin(self) -> None:
        self.conn.execute("BEGIN")

    def close(self) -> None:
        self.conn.close()


def open_postgres(dsn: str) -> PostgresDb:
    if not HAVE_PSYCOPG:
        raise AuditError("a postgresql DSN needs psycopg 3: pip install 'referee[postgres]'")
    where = describe(dsn)
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise AuditError(f"audit database {where}: cannot connect: {reason}") from None
    try:
        with conn.transaction():
            conn.execute(POSTGRES_SCHEMA)
            conn.execute(SET_VERSION.replace("?", "%s"), (str(SCHEMA_VERSION),))
    except psycopg.Error as exc:
        conn.close()
        raise AuditError(f"audit database {where}: {' '.join(str(exc).split())}") from None
    return PostgresDb(conn)
