"""A FastAGI server that survives bad clients: bounded in connections, bytes and time.

Built on :func:`asyncio.start_server` rather than panoramisk's ``Application.handler``
(see :mod:`referee.agi.protocol` for why); routes are panoramisk-style ``async def``
handlers taking a :class:`~referee.agi.protocol.AgiRequest`.

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

A bad client costs one task and one socket until its own timeout; it never blocks the
event loop, so every other session goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from referee.agi.protocol import AgiHangup, AgiRequest, BadRequest, HeaderLimits, read_request
from referee.slots import Slots, peer_address

log = logging.getLogger("referee.agi.fastagi")

Handler = Callable[[AgiRequest], Awaitable[None]]


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
        self._sessions: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; return the address actually bound (port 0 picks a free one)."""
        self.server = await asyncio.start_server(
            self._connected, host, port, limit=self.limits.max_line, backlog=self.limits.backlog
        )
        bound: tuple[str, int] = self.server.sockets[0].getsockname()[:2]
        log.info("FastAGI listening on %s:%d, routes %s", bound[0], bound[1], ", ".join(sorted(self.routes)))
        return bound

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._sessions):
            task.cancel()
        if self._sessions:
            await asyncio.gather(*self._sessions, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()
        log.info("FastAGI stopped: %s", self.stats)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stats = self.stats
        stats.accepted += 1
        peer = peer_address(writer.get_extra_info("peername"))
        refused = self.slots.take(peer)
        if refused is not None:
            stats.over_cap += 1
            if stats.over_cap == 1 or stats.over_cap % 1000 == 0:
                log.warning("FastAGI refused a connection (%s): %d refused so far", refused, stats.over_cap)
            writer.transport.abort()
            return
        started = time.monotonic()
        stats.active += 1
        stats.peak = max(stats.peak, stats.active)
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        outcome = "error"
        try:
            outcome = await self._session(reader, writer)
        finally:
            clean = outcome == ""
            if self.on_session is not None:
                self.on_session(outcome, time.monotonic() - started)
            stats.active -= 1
            self.slots.give(peer)
            if task is not None:
                self._sessions.discard(task)
            if clean:
                writer.close()
            else:
                writer.transport.abort()  # drop what is unsent: the peer is not listening

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        """Run one session; "" if it ended cleanly, else how it ended (see :data:`SessionObserver`)."""
        peer = writer.get_extra_info("peername")
        stats = self.stats
        headers: dict[str, str] = {}
        try:
            async with asyncio.timeout(self.limits.session_timeout):
                headers = await read_request(reader, self.limits.header, self.limits.max_line)
                script = headers.get("agi_network_script", "")
                handler = self.routes.get(script.split("?", 1)[0].strip("/"))
                if handler is None:
                    stats.unknown_routes += 1
                    stats.last_error = f"no route {script!r}"
                    log.error("FastAGI from %s: no route %r", peer, script)
                    return "unknown_route"
                await handler(AgiRequest(app=None, headers=headers, reader=reader, writer=writer))
        except BadRequest as err:
            stats.bad_requests += 1
            stats.last_error = str(err)
            log.info("FastAGI from %s: bad request: %s", peer, err)
            return "bad_request"
        except TimeoutError:
            stats.timeouts += 1
            stats.last_error = "timed out"
            log.info("FastAGI from %s: timed out", peer)
            return "timeout"
        except (AgiHangup, ConnectionError) as err:
            stats.completed += 1
            stats.last_error = f"channel gone: {err}"
            log.info("FastAGI from %s: channel gone: %s", peer, err)
            return "hangup"
        except Exception:
            stats.handler_errors += 1
            stats.last_error = "route failed"
            log.exception("FastAGI from %s: route %r failed", peer, headers.get("agi_network_script"))
            return "error"
        stats.completed += 1
        return ""
