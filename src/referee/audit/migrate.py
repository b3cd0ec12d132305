"""Upgrading an audit database of an older schema in place, on both dialects.

Schema 2 -> 3: each transfer gains ``evidence`` (what its outcome rests on, :mod:`referee.audit.evidence`)
and ``policy_version`` (the version of the policy the proxy decided its REFER with). Both are filled from
the entries already stored: the decision's ``policy_version`` (None in lines older than the field) and
the assessment of each record, so an upgraded record reads as if it had been written by this version.

One transaction: the columns, the values and the new version number are committed together, or nothing
is. The version is read again inside it (under the write lock: SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's
``FOR UPDATE`` on the version row), so two processes opening the same old database upgrade it once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from referee.audit.evidence import assess
from referee.audit.record import TransferRecord
from referee.events import ReferDecision

FROM_VERSION = 2
COLUMNS = ("evidence", "policy_version")


def upgrade_v2(
    execute: Callable[..., Any], get: Callable[[int], TransferRecord | None], *, postgres: bool
) -> bool:
    """Bring a schema 2 database to 3, inside the caller's transaction; False when another process
    did it first (the version is no longer 2). ``execute`` runs one statement, ``get`` reads a record
    as the store does (its new columns read as NULL until set here)."""
    lock = " FOR UPDATE" if postgres else ""
    row = execute(f"SELECT value FROM meta WHERE key = 'schema_version'{lock}").fetchone()
    if row is None or int(row[0]) != FROM_VERSION:
        return False
    for column in COLUMNS:
        execute(f"ALTER TABLE transfers ADD COLUMN {column} TEXT")
    ids = [int(r[0]) for r in execute("SELECT id FROM transfers ORDER BY id").fetchall()]
    for transfer_id in ids:
        record = get(transfer_id)
        if record is None:
            continue
        versions = [
            e.policy_version for e in record.events() if isinstance(e, ReferDecision) and e.policy_version
        ]
        execute(
            "UPDATE transfers SET evidence = ?, policy_version = ? WHERE id = ?",
            (assess(record).evidence, versions[-1] if versions else None, transfer_id),
        )
    execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(FROM_VERSION + 1),))
    return True
