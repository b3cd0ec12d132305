"""Which database a DSN names: an SQLite file (a path, ``sqlite:///abs``, ``sqlite:rel``) or a
PostgreSQL server (``postgresql://...`` or ``postgres://...``, handed to libpq as it is)."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_DB = "/var/lib/referee/audit.sqlite3"


def default_db() -> str:
    """The DSN used when none is given: ``$REFEREE_AUDIT_DB``, else the packaged path."""
    return os.environ.get("REFEREE_AUDIT_DB", DEFAULT_DB)


class AuditError(Exception):
    """The store cannot be opened or used; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    kind: str  # "sqlite" or "postgresql"
    where: str  # the SQLite file, or the libpq connection URI


def parse_dsn(dsn: str) -> Target:
    scheme, sep, rest = dsn.partition(":")
    if not sep or len(scheme) == 1 or "/" in scheme:  # a plain path (or a Windows drive letter)
        return Target("sqlite", dsn)
    scheme = scheme.lower()
    if scheme in ("postgresql", "postgres"):
        if not rest.startswith("//"):
            raise AuditError("postgresql DSN must be postgresql://[user[:password]@]host[:port]/dbname")
        return Target("postgresql", dsn)
    if scheme != "sqlite":
        raise AuditError(
            f"unknown DSN scheme {scheme!r} (use an SQLite path, sqlite:///path or postgresql://...)"
        )
    if rest.startswith("///"):
        return Target("sqlite", rest[2:])
    if rest.startswith("//"):
        raise AuditError("sqlite DSN must be sqlite:///absolute/path or sqlite:relative/path")
    if not rest:
        raise AuditError("sqlite DSN names no file")
    return Target("sqlite", rest)


def sqlite_path(dsn: str) -> str:
    """The file an SQLite DSN names; AuditError for anything else."""
    target = parse_dsn(dsn)
    if target.kind != "sqlite":
        raise AuditError(f"{target.kind} DSN names no SQLite file")
    return target.where
