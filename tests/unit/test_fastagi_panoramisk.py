"""The panoramisk 1.4 bugs referee.agi works around, shown on panoramisk itself and then fixed.

If panoramisk fixes one of them, its test here fails: time to drop the workaround.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from panoramisk.fast_agi import Application, Request

from referee.agi.fastagi import FastAgiServer
from referee.agi.protocol import AgiHangup, AgiRequest


class _Spinning(Exception):
    pass


class _EofReader:
    """A StreamReader at EOF: read() returns b'' at once, as asyncio's does."""

    def __init__(self, limit: int) -> None:
        self.reads = 0
        self.limit = limit

    async def read(self, n: int = -1) -> bytes:
        self.reads += 1
        if self.reads > self.limit:
            raise _Spinning
        return b""

    async def readline(self) -> bytes:
        return b""


class _Writer:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.2.20", 1)


def test_panoramisk_application_handler_keeps_reading_after_eof() -> None:
    """Application.handler never stops at EOF: asyncio's read() returns b'' without
    suspending, so on a real loop this is a busy loop that stalls every other session."""

    async def main() -> None:
        app = Application(loop=asyncio.get_running_loop())
        reader = _EofReader(limit=10_000)
        with pytest.raises(_Spinning):
            await app.handler(reader, _Writer())
        assert reader.reads > 10_000

    asyncio.run(main())


def test_panoramisk_request_fails_with_valueerror_at_eof_and_ours_says_hangup() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="invalid literal for int"):
            await Request(None, {}, _EofReader(0), _Writer()).send_command("GET VARIABLE X")
        with pytest.raises(AgiHangup):
            await AgiRequest(None, {}, _EofReader(0), _Writer()).send_command("GET VARIABLE X")

    asyncio.run(main())


def test_panoramisk_sync_routes_fail_on_python_311_so_ours_refuse_them_up_front() -> None:
    def sync_route(request: AgiRequest) -> None:
        pass

    async def main() -> None:
        app = Application(loop=asyncio.get_running_loop())
        with pytest.raises(AttributeError, match="coroutine"):
            app.add_route("x", sync_route)  # asyncio.coroutine is gone in 3.11

    asyncio.run(main())
    with pytest.raises(TypeError, match="async def"):
        FastAgiServer({"x": sync_route})  # type: ignore[dict-item]
