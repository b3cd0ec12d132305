"""Fixtures shared by unit tests: the audit store on both backends, the FastAGI server on both event loops."""

from __future__ import annotations

import asyncio
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


@pytest.fixture(params=["asyncio", "uvloop"])
def either_event_loop(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test's ``asyncio.run`` on asyncio's own loop, then on uvloop's: ``referee fastagi`` runs on
    either (referee.agi.event_loop), and the two differ in ways only a run shows (uvloop's transports
    are no ``asyncio.Transport``). Use with ``pytestmark = pytest.mark.usefixtures("either_event_loop")``."""
    if request.param == "uvloop":
        import uvloop  # noqa: PLC0415  # a dev dependency: a missing one fails, it does not skip

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        yield request.param
    finally:
        asyncio.set_event_loop_policy(None)
