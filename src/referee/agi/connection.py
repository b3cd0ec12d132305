"""One FastAGI connection as an :class:`asyncio.BufferedProtocol`: its header, its route, its limits, its end.

Why a Protocol rather than :func:`asyncio.start_server`'s streams: a guard session is one header in and
one command out, and asyncio's per-connection stream machinery (a StreamReader, a StreamWriter, a task
from the first byte, a timeout scope for the header and one for the session, a wake-up per read) cost
more than twice the guard's own work. Here the header is parsed in the read callback as it arrives (no
task while a slow or bad client trickles), one timer handle holds the deadline (the header's, then the
session's), and a task exists only once a route has been found, to run its ``async def`` handler.

The connection is also the byte stream the handler's :class:`~referee.agi.protocol.AgiRequest` reads and
writes: ``readline`` (as a StreamReader's: a line, the rest at EOF, the error of a lost connection) and
``write``/``drain`` (as a StreamWriter's, with the transport's flow control).

Outcomes, stats and logs are those of :mod:`referee.agi.fastagi`'s docstring, unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, cast

from referee.agi.protocol import AgiHangup, AgiRequest, BadRequest, HeaderParser
from referee.slots import peer_address

if TYPE_CHECKING:
    from referee.agi.fastagi import FastAgiServer

log = logging.getLogger("referee.agi.fastagi")


def read_buffer() -> memoryview:
    """What a server's connections read into (``asyncio.BufferedProtocol``), one per server: its loop calls
    get_buffer, recv_into and buffer_updated in a row, so connections never see each other's bytes. A plain
    Protocol gets a fresh bytes object per read, allocated at asyncio's 256 KiB read size; glibc serves that
    with mmap/mremap/munmap each time (over its mmap threshold), ~50 µs of system CPU a session."""
    return memoryview(bytearray(64 * 1024))


class AgiConnection(asyncio.BufferedProtocol):
    def __init__(self, server: FastAgiServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None  # the peername, as the logs show it
        self.address = ""
        self.started = 0.0
        self.header: HeaderParser | None = None  # while the header is being read
        self.task: asyncio.Task[None] | None = None  # the route's, once the header is in
        self.timer: asyncio.TimerHandle | None = None
        self.script = ""  # agi_network_script, for the logs
        self.timed_out = False
        self.ended = False
        # The stream the route reads: the bytes after the header, until EOF or a lost connection.
        self.buffer = bytearray()
        self.eof = False
        self.error: Exception | None = None  # the connection's loss, raised by readline
        self.lost = False
        self.reading_paused = False
        self.writing_paused = False
        self.waiter: asyncio.Future[None] | None = None  # the route's, for a result or room to write

    # -- the session's life ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP transport, whatever its class: uvloop's are not subclasses of asyncio.Transport.
        self.transport = transport = cast(asyncio.Transport, transport)
        server, stats = self.server, self.server.stats
        stats.accepted += 1
        self.peer = transport.get_extra_info("peername")
        self.address = peer_address(self.peer)
        refused = server.slots.take(self.address)
        if refused is not None:
            self.ended = True
            stats.over_cap += 1
            if stats.over_cap == 1 or stats.over_cap % 1000 == 0:
                log.warning("FastAGI refused a connection (%s): %d refused so far", refused, stats.over_cap)
            transport.abort()
            return
        self.started = self.loop.time()
        stats.active += 1
        stats.peak = max(stats.peak, stats.active)
        server.connections.add(self)
        limits = server.limits
        self.header = HeaderParser(limits.header, limits.max_line)
        self.timer = self.loop.call_later(min(limits.header.timeout, limits.session_timeout), self._timed_out)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.server.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self.server.read_buffer[:nbytes]))

    def data_received(self, data: bytes) -> None:
        if self.ended:
            return
        if self.header is None:  # the route's command results
            self.buffer += data
            if len(self.buffer) > 2 * self.server.limits.max_line and not self.reading_paused:
                self.reading_paused = True  # the route reads slower than the client writes: bound memory
                assert self.transport is not None
                self.transport.pause_reading()
            self._wake()
            return
        try:
            rest = self.header.feed(data)
        except BadRequest as err:
            self._end(self._bad_request(err))
            return
        if rest is not None:
            headers, self.header = self.header.headers, None
            self._route(headers, rest)

    def eof_received(self) -> bool:
        if self.header is not None and not self.ended:
            self._end(self._bad_request(self.header.closed()))
        self.eof = True
        self._wake()
        return True  # half-closed: the route may still write (as asyncio's streams allow)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended and self.header is not None:
            self._end(self._hangup(exc) if exc is not None else self._bad_request(self.header.closed()))
        self.lost = True
        self.eof = True
        self.error = exc
        self._wake()

    def _route(self, headers: dict[str, str], rest: bytes) -> None:
        server = self.server
        self.script = script = headers.get("agi_network_script", "")
        handler = server.routes.get(script.split("?", 1)[0].strip("/"))
        if handler is None:
            server.stats.unknown_routes += 1
            server.stats.last_error = f"no route {script!r}"
            log.error("FastAGI from %s: no route %r", self.peer, script)
            self._end("unknown_route")
            return
        self.buffer += rest
        request = AgiRequest(app=None, headers=headers, reader=self, writer=self)
        self.task = self.loop.create_task(handler(request))
        # A done callback rather than a try/finally in the task: it also runs for a task cancelled
        # before its first step (close() or the deadline right after the header).
        self.task.add_done_callback(self._route_done)

    def _route_done(self, task: asyncio.Task[None]) -> None:
        self._end(self._outcome(task))

    def _outcome(self, task: asyncio.Task[None]) -> str:
        """How the route ended: "" cleanly, else as ``SessionObserver`` says."""
        stats = self.server.stats
        if task.cancelled():
            return self._timeout() if self.timed_out else "error"  # else close() cancelled it
        err = task.exception()
        if err is None:
            stats.completed += 1
            return ""
        if isinstance(err, BadRequest):
            return self._bad_request(err)
        if isinstance(err, TimeoutError):
            return self._timeout()
        if isinstance(err, (AgiHangup, ConnectionError)):
            return self._hangup(err)
        if not isinstance(err, Exception):
            return "error"  # KeyboardInterrupt and the like: not the route's failure
        stats.handler_errors += 1
        stats.last_error = "route failed"
        log.error("FastAGI from %s: route %r failed", self.peer, self.script, exc_info=err)
        return "error"

    def _timed_out(self) -> None:
        self.timer = None
        if self.ended:
            return
        # The timer was set for the header's deadline (or the session's, if sooner); a route still running
        # then gets the rest of the session's. Re-armed here rather than when the header is whole: most
        # sessions end long before, and then never pay for a second timer.
        session_deadline = self.started + self.server.limits.session_timeout
        if self.task is not None and self.loop.time() < session_deadline:
            self.timer = self.loop.call_at(session_deadline, self._timed_out)
            return
        if self.task is None:
            self._end(self._timeout())
        else:  # the route's awaits raise CancelledError, counted as a timeout by _outcome
            self.timed_out = True
            self.task.cancel()

    def cancel(self) -> None:
        """The server closes: end the session now, as an error."""
        if self.task is not None:
            self.task.cancel()
        else:
            self._end("error")

    def _end(self, outcome: str) -> None:
        if self.ended:
            return
        self.ended = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        server = self.server
        if server.on_session is not None:
            server.on_session(outcome, self.loop.time() - self.started)
        server.stats.active -= 1
        server.slots.give(self.address)
        server.connections.discard(self)
        assert self.transport is not None
        if outcome == "":
            self.transport.close()  # after what is still unsent
        else:
            self.transport.abort()  # drop what is unsent: the peer is not listening

    # -- how each failure counts (the stats and logs of the streams version) ---------------------------

    def _bad_request(self, err: BadRequest) -> str:
        self.server.stats.bad_requests += 1
        self.server.stats.last_error = str(err)
        log.info("FastAGI from %s: bad request: %s", self.peer, err)
        return "bad_request"

    def _timeout(self) -> str:
        self.server.stats.timeouts += 1
        self.server.stats.last_error = "timed out"
        log.info("FastAGI from %s: timed out", self.peer)
        return "timeout"

    def _hangup(self, err: BaseException) -> str:
        self.server.stats.completed += 1
        self.server.stats.last_error = f"channel gone: {err}"
        log.info("FastAGI from %s: channel gone: %s", self.peer, err)
        return "hangup"

    # -- the stream AgiRequest reads and writes --------------------------------------------------------

    async def readline(self) -> bytes:
        """The next line with its ``\\n``; at EOF what is left (maybe ``b""``); a lost connection's error.

        A line of ``max_line`` bytes or more raises ValueError, as a StreamReader's over its limit.
        """
        max_line = self.server.limits.max_line
        while True:
            if self.error is not None:
                raise self.error
            end = self.buffer.find(b"\n")
            if end >= max_line or (end < 0 and len(self.buffer) >= max_line):
                raise ValueError("AGI result line too long")
            if end >= 0 or self.eof:
                size = end + 1 if end >= 0 else len(self.buffer)
                line = bytes(self.buffer[:size])
                del self.buffer[:size]
                if self.reading_paused and len(self.buffer) <= max_line:
                    self.reading_paused = False
                    assert self.transport is not None
                    self.transport.resume_reading()
                return line
            await self._wait()

    async def _wait(self) -> None:
        """Until something changes: bytes, EOF, loss, or room to write. The route awaits one thing at a time
        (a result or a drain), so one waiter serves both; each caller looks again at why it waited."""
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        while True:
            if self.lost:
                raise ConnectionResetError("Connection lost")
            if not self.writing_paused:
                return
            await self._wait()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        assert self.transport is not None
        return self.transport.get_extra_info(name, default)
