"""Fixtures shared by the unit tests of the audit store on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_server import PgServer, pg_server


@pytest.fixture(scope="module")
def postgres() -> Iterator[PgServer]:
    """A real PostgreSQL server, once for the module (pg_server.py)."""
    with pg_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def dsn(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty audit database: an SQLite file, then a database of its own on the PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "audit.db")
    server: PgServer = request.getfixturevalue("postgres")
    return server.new_database()
