"""The PostgreSQL side of the store (psycopg 3, the ``postgres`` extra): connect, create the schema.

A connection error names the server and the problem (never the password) as :class:`AuditError`.
Statements are written with ``?`` placeholders (the SQLite form) and rewritten to ``%s`` here.

Several writers share one database on a real site: the proxy hosts' ingests and the PBX hosts'
orchestrators. The correlator reads (is there a record for this Call-ID?) and then writes (join it,
or open one) in one transaction, so two writers must not interleave there: every write transaction
first takes one transaction-scoped advisory lock (:data:`WRITE_LOCK`), which is what SQLite's
``BEGIN IMMEDIATE`` gives the other dialect. Under READ COMMITTED each statement after the lock sees
everything the previous holder committed, whichever side came first. Reads outside a transaction
take no lock. Transfers are rare next to what PostgreSQL serialises per second, so one lock is enough.
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
# The key of the write lock (pg_advisory_xact_lock takes any bigint): "referee" in ASCII.
WRITE_LOCK = 0x7265666572656500


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
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))

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
            # Processes starting together on an empty database: CREATE ... IF NOT EXISTS is not safe
            # against a concurrent twin (a duplicate key in pg_type), so one creates, the others wait.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            conn.execute(POSTGRES_SCHEMA)
            conn.execute(SET_VERSION.replace("?", "%s"), (str(SCHEMA_VERSION),))
    except psycopg.Error as exc:
        conn.close()
        raise AuditError(f"audit database {where}: {' '.join(str(exc).split())}") from None
    return PostgresDb(conn)
