"""A FastAGI server that survives bad clients: bounded in connections, bytes and time.

Built on :meth:`loop.create_server` with one :class:`~referee.agi.connection.AgiConnection` (an
``asyncio.Protocol``) per connection, rather than panoramisk's ``Application.handler`` (see
:mod:`referee.agi.protocol` for why) or asyncio's streams (see :mod:`referee.agi.connection`); routes
are panoramisk-style ``async def`` handlers taking a :class:`~referee.agi.protocol.AgiRequest`.

Limits, per server:

- ``max_connections``: sessions at once. A connection over the cap is closed as soon as it
  is accepted (Asterisk then sees AGISTATUS=FAILURE and the dialplan falls back and fails
  closed); it never queues, so the cap also bounds file descriptors and memory;
- ``max_per_address``: sessions at once from one peer address (half the total by default), so that
  a peer holding sessions open cannot take the slots of the PBX; ``allow``, when set, closes every
  connection from another address at once (the PBXs are the only legitimate FastAGI clients);
- ``header``: the request header must arrive whole within ``header.timeout`` seconds
  (however slowly it trickles), within ``header.max_bytes`` and ``header.max_lines``;
  each line within ``max_line`` bytes;
- ``session_timeout``: the whole session, header and commands, ends by then.

A bad client costs one connection object, one timer and one socket until its own timeout (no task
until its header is whole); it never blocks the event loop, so every other session goes on. A connection
is closed cleanly when its route ends cleanly (what it wrote is sent), else aborted; :meth:`close`
cancels the sessions still running.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from referee.agi.connection import AgiConnection, read_buffer
from referee.agi.event_loop import loop_name
from referee.agi.protocol import AgiRequest, HeaderLimits
from referee.slots import Slots

log = logging.getLogger("referee.agi.fastagi")

# A coroutine function (checked): its coroutine becomes the session's task.
Handler = Callable[[AgiRequest], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Limits:
    max_connections: int = 512
    max_per_address: int | None = None  # None: half of max_connections
    allow: frozenset[str] = frozenset()  # peer addresses allowed to connect; empty: any
    header: HeaderLimits = field(default_factory=HeaderLimits)
    max_line: int = 8 * 1024
    session_timeout: float = 10.0
    backlog: int = 1024


@dataclass
class Stats:
    """What the server has seen; read by tests and logged on shutdown."""

    accepted: int = 0
    active: int = 0
    peak: int = 0
    over_cap: int = 0  # refused: the total or the peer's cap reached, or a peer not allowed
    bad_requests: int = 0
    timeouts: int = 0
    unknown_routes: int = 0
    handler_errors: int = 0
    completed: int = 0
    last_error: str = ""  # why the last session that failed did

    def __str__(self) -> str:
        return ", ".join(f"{name} {value}" for name, value in vars(self).items() if name != "last_error")


# Told how each session ended ("" decided by its route, else timeout, bad_request, unknown_route, error,
# hangup) and how long it took from the accepted connection: referee.metrics.fastagi.FastAgiMetrics.ended.
SessionObserver = Callable[[str, float], None]


class FastAgiServer:
    def __init__(
        self,
        routes: Mapping[str, Handler],
        limits: Limits | None = None,
        on_session: SessionObserver | None = None,
    ) -> None:
        for path, handler in routes.items():
            if not asyncio.iscoroutinefunction(handler):
                raise TypeError(f"route {path!r}: handler must be an async def")
        self.routes = dict(routes)
        self.limits = limits or Limits()
        self.stats = Stats()
        self.on_session = on_session
        self.slots = Slots.of(
            self.limits.max_connections,
            self.limits.max_per_address
            if self.limits.max_per_address is not None
            else max(1, self.limits.max_connections // 2),
            self.limits.allow,
        )
        self.server: asyncio.Server | None = None
        self.connections: set[AgiConnection] = set()  # the sessions going on
        self.read_buffer = read_buffer()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; return the address actually bound (port 0 picks a free one)."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            functools.partial(AgiConnection, self), host, port, backlog=self.limits.backlog
        )
        bound: tuple[str, int] = self.server.sockets[0].getsockname()[:2]
        log.info(
            "FastAGI listening on %s:%d (%s event loop), routes %s",
            bound[0], bound[1], loop_name(loop), ", ".join(sorted(self.routes)),
        )  # fmt: skip
        return bound

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        tasks = [connection.task for connection in self.connections if connection.task is not None]
        for connection in list(self.connections):
            connection.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()
        log.info("FastAGI stopped: %s", self.stats)
