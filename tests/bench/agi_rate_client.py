"""The rate test's client: steady arrivals of one-round-trip guard sessions, on one epoll loop, no asyncio.

Why not asyncio: at 2,000 sessions/s an asyncio client (a Protocol, a future and a task per session)
needs about as much CPU per session as the server, on a core it shares with the rest of the machine;
when it falls behind it starts late sessions in bursts, and their lateness is counted as latency (from
each session's scheduled arrival). This client does per session only what Asterisk's res_agi does (a
non-blocking connect, the header in one send, ``200 result=1`` per command line, close at EOF), keeps
the server's lines raw (parsed after the run), and records how late it started each session, so the
report can say which side a tail comes from.
"""

from __future__ import annotations

import errno
import select
import socket
import time
from dataclasses import dataclass, field

TIMEOUT = 10.0  # a session not over by then is counted as failed


@dataclass
class Arrival:
    due: float  # its scheduled arrival (perf_counter)
    sock: socket.socket
    started: float = 0.0  # when the client actually called connect
    sent: float = 0.0  # the header sent (connected)
    asked: float = 0.0  # the server's first command line received
    answered: float = 0.0  # its result sent
    connected: bool = False
    pending: bytes = b""  # received, not yet a whole line
    lines: list[bytes] = field(default_factory=list)  # the server's command lines, raw
    failed: bool = False


# A session's phases, whose side each is: the client's lateness in starting it, its reaction to the connect,
# the server's answer (accept, header, decision, command), the client's reply, the server's close.
PHASES = {
    "late": "client",
    "connect": "client",
    "answer": "server",
    "reply": "client",
    "close": "server",
}


@dataclass
class Outcome:
    """Per session, in order of arrival: seconds from due to end, its phases, the command lines."""

    seconds: list[float] = field(default_factory=list)
    late: list[float] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)  # of sessions that completed
    lines: list[list[bytes]] = field(default_factory=list)
    failed: list[bool] = field(default_factory=list)
    wall: float = 0.0
    client_cpu: float = 0.0  # this process's user + system CPU seconds during the run


def steady_arrivals(host: str, port: int, header: bytes, rate: float, seconds: float) -> Outcome:
    """A session every 1/rate s for ``seconds``, started on time unless this loop itself is late."""
    total = max(1, round(rate * seconds))
    poller = select.epoll()
    live: dict[int, Arrival] = {}
    ended: dict[int, tuple[float, Arrival]] = {}  # arrival number -> (end time, arrival)
    number_of: dict[int, int] = {}  # fd -> arrival number
    cpu = time.process_time()
    start = time.perf_counter()
    started = 0

    def finish(fd: int, now: float, failed: bool = False) -> None:
        arrival = live.pop(fd)
        arrival.failed = arrival.failed or failed
        poller.unregister(fd)
        arrival.sock.close()
        ended[number_of.pop(fd)] = (now, arrival)

    while started < total or live:
        now = time.perf_counter()
        while started < total and start + started / rate <= now:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            arrival = Arrival(due=start + started / rate, sock=sock, started=time.perf_counter())
            fd = sock.fileno()
            live[fd], number_of[fd] = arrival, started
            started += 1
            code = sock.connect_ex((host, port))
            if code not in (0, errno.EINPROGRESS):
                poller.register(fd, 0)
                finish(fd, time.perf_counter(), failed=True)
                continue
            poller.register(fd, select.EPOLLOUT)
        wait = start + started / rate - time.perf_counter() if started < total else 0.05
        # epoll's timeout is in whole milliseconds (rounded up), select's in microseconds: wait on the epoll
        # descriptor with select, so that arrivals 0.5 ms apart are not sent in pairs every millisecond.
        select.select([poller], [], [], max(0.0, min(wait, 0.05)))
        for fd, _ in poller.poll(0):
            now = time.perf_counter()
            arrival = live[fd]
            try:
                if not arrival.connected:
                    error = arrival.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if error:
                        finish(fd, now, failed=True)
                        continue
                    arrival.connected = True
                    arrival.sent = now
                    arrival.sock.send(header)  # a few hundred bytes: the empty socket buffer takes them
                    poller.modify(fd, select.EPOLLIN)
                    continue
                data = arrival.sock.recv(65536)
                if not data:
                    finish(fd, now)
                    continue
                *whole, arrival.pending = (arrival.pending + data).split(b"\n")
                for line in whole:
                    arrival.lines.append(line)
                    arrival.sock.send(b"200 result=1\n")
                if whole and not arrival.asked:
                    arrival.asked, arrival.answered = now, time.perf_counter()
            except OSError:  # refused over the cap (a reset), or reset mid-session
                finish(fd, now, failed=True)
        if live and time.perf_counter() - start > total / rate + TIMEOUT:
            for fd in list(live):
                finish(fd, time.perf_counter(), failed=True)
    outcome = Outcome(wall=time.perf_counter() - start, client_cpu=time.process_time() - cpu)
    poller.close()
    for number in range(total):
        end, arrival = ended[number]
        outcome.seconds.append(end - arrival.due)
        outcome.late.append(arrival.started - arrival.due)
        if arrival.answered and not arrival.failed:
            marks = [arrival.due, arrival.started, arrival.sent, arrival.asked, arrival.answered, end]
            outcome.phases.append(
                {name: b - a for name, a, b in zip(PHASES, marks[:-1], marks[1:], strict=True)}
            )
        outcome.lines.append(arrival.lines)
        outcome.failed.append(arrival.failed)
    return outcome
