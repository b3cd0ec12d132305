"""The transfer guard's round trip: FastAGI (``referee fastagi``) against the process AGI, and a rate test.

Not a timed test: figures printed, nothing asserted on time. Goals (issue 12): FastAGI 100x or more
faster than the process AGI by median; 2,000 guard sessions/s sustained on one core with p99 at 5 ms or
less. The client plays Asterisk (the AGI environment of a blind transfer to 1003 referred by 1002, as
the dialplan's ``[referee-guard]`` builds it) and answers the guard's commands:

1. sequential FastAGI sessions, one round trip (``transfer-guard?target=1003&...``: one SET VARIABLE);
2. the same, as the older dialplan asks (no query: GET VARIABLEs, then a SET VARIABLE per output), for
   the before/after in the same run;
3. the baseline: the process AGI, ``agi/referee_transfer_guard.py`` spawned per call (this interpreter),
   the same query as its argument, until it exits;
4. steady arrivals: RATE sessions/s for SECONDS, one every 1/RATE s whatever the server's pace, the
   server pinned to one CPU and the client to the others; latency from each session's scheduled
   arrival to its end (queueing included), the server's CPU per session, and which side the slowest
   1% spent their time on (agi_rate_client.PHASES), and how long each side waited for its CPU while
   other processes had it (/proc/PID/schedstat).

    make bench-agi   # or: .venv/bin/python tests/bench/agi_guard_ratio.py [FASTAGI [PROCESS [RATE [SECONDS]]]]
        [--client light|asyncio] [--server-loop auto|asyncio|uvloop] [--client-loop ...] [--nice N]
        [--server-option OPTION ...]

The client is light by default, as Asterisk's res_agi is (C, a channel thread with blocking I/O): a
blocking socket per sequential session, one epoll loop for the steady arrivals (agi_rate_client), so
that its own CPU counts as little as possible in a round trip; ``--client asyncio`` is the fake
Asterisk of the tests (asyncio streams) and an asyncio Protocol per arrival, as before. Client and
server share the machine: ``--nice -10`` (root) gives both, and their session's autogroup, priority
over other work; ``chrt -f 10`` in front keeps other work off their CPUs entirely (the process AGI then
inherits it too: read the rate test only). Loopback only (127.0.5.20); the server is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast
from urllib.parse import quote

import agi_rate_client

from referee.agi.event_loop import LOOPS, loop_factory
from referee.agi.event_loop import run as run_on
from referee.agi.guard import OUTPUT_VARIABLES, QUERY_VARIABLES, RESULT_VARIABLE, decode_result
from referee.testing.fake_asterisk import agi_env, call, call_blocking, play, split_args

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "ansible" / "roles" / "referee" / "files" / "referee_transfer_guard.py"
EXAMPLE = ROOT / "examples" / "policy.toml"
HOST = "127.0.5.20"
EXTEN = "1003"
VARIABLES = {"SIPREFERREDBYHDR": "<sip:1002@lab.test>"}
TARGET = "sip:1003@127.0.0.20:5060"
URIENCODE_KEEPS = "-_.!~*'()"  # and letters and digits: Asterisk's ast_uri_http


def query(target: str = EXTEN, variables: dict[str, str] = VARIABLES) -> str:
    """The dialplan's query: every input URIENCODEd (``quote`` with the same kept set), unset ones empty."""
    pairs = [("target", target)] + [(key, variables.get(var, "")) for key, var in QUERY_VARIABLES.items()]
    return "&".join(f"{key}={quote(value, safe=URIENCODE_KEEPS)}" for key, value in pairs)


ONE_ROUND_TRIP = agi_env("s", script=f"transfer-guard?{query()}")
ROUND_TRIPS = agi_env(EXTEN)
PROCESS = agi_env("s", script="", agi_arg_1=f"?{query()}")


@dataclass
class Result:
    """Per-session seconds and what each session decided (the variables the dialplan would hold)."""

    seconds: list[float] = field(default_factory=list)
    answers: list[dict[str, str]] = field(default_factory=list)
    commands: list[int] = field(default_factory=list)  # AGI commands per session
    wall: float = 0.0
    server_cpu: float = 0.0  # the server's user + system CPU seconds meanwhile (FastAGI only)
    offered: int = 0  # sessions started (rate test)
    late: list[float] = field(default_factory=list)  # rate test: how late the client started each session
    client_cpu: float = 0.0  # rate test: the client's user + system CPU seconds (the light client only)
    phases: list[dict[str, float]] = field(default_factory=list)  # rate test, light client: agi_rate_client
    server_waited: float = 0.0  # seconds the server was ready to run but another process had its CPU
    client_waited: float = 0.0  # the same, for the client (this process)

    def add(self, seconds: float, variables: dict[str, str], commands: int) -> None:
        self.seconds.append(seconds)
        self.commands.append(commands)
        if RESULT_VARIABLE in variables:
            self.answers.append(decode_result(variables[RESULT_VARIABLE]))
        else:  # the older dialplan's: one variable each (and the channel's own, left out)
            self.answers.append({k: v for k, v in variables.items() if k in OUTPUT_VARIABLES})

    def allowed(self) -> int:
        return sum(
            a.get("REFEREE_ALLOWED") == "1" and a.get("REFEREE_TARGET") == TARGET for a in self.answers
        )

    def p50(self) -> float:
        return statistics.median(self.seconds)

    def p99(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]

    def cpu_per_session(self) -> float:
        return self.server_cpu / len(self.seconds) if self.seconds else 0.0

    def line(self, name: str) -> str:
        return (
            f"{name:<34} n={len(self.seconds):<6} p50 {self.p50() * 1e3:8.3f} ms   p99 {self.p99() * 1e3:8.3f} ms"
            f"   {statistics.mean(self.commands):.0f} AGI commands"
        )


@contextmanager
def fastagi_server(
    policy: Path = EXAMPLE,
    host: str = HOST,
    cpu: int | None = None,
    src: Path | None = None,
    loop: str | None = None,
    options: Sequence[str] = (),
) -> Iterator[tuple[int, int]]:
    """``referee fastagi`` as a subprocess on a kernel-picked port (on CPU ``cpu`` alone, if given;
    from the ``referee`` package under ``src``, if given, else this tree's; on event loop ``loop``, if
    given, else its default; with more ``options``); yields (port, pid); SIGTERM by PID."""
    env = dict(os.environ, PYTHONPATH=str(src)) if src is not None else None
    options = [*(["--loop", loop] if loop is not None else []), *options]
    proc = subprocess.Popen(
        [sys.executable, "-m", "referee.cli", "fastagi", "--policy", str(policy), "--listen", host, "--port", "0",
         *options],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    try:
        if cpu is not None:
            os.sched_setaffinity(proc.pid, {cpu})
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "referee fastagi: listening on HOST:PORT", once ready
        if "listening on" not in line:
            raise RuntimeError(f"referee fastagi did not start: {line!r}")
        yield int(line.rsplit(":", 1)[1]), proc.pid
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def run_delay(pid: int) -> float:
    """Seconds the process has waited on a run queue, ready but not running (/proc/PID/schedstat)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def fastagi_sequential(
    port: int, n: int, env: dict[str, str], host: str = HOST, client: str = "light"
) -> Result:
    """``n`` sessions one after the other: a blocking socket per session as res_agi's (``light``), or
    asyncio's streams (``asyncio``, the fake Asterisk of the tests, whose own CPU counts in each round trip)."""
    result = Result()
    for _ in range(n):
        start = time.perf_counter()
        if client == "light":
            channel = call_blocking(host, port, env, VARIABLES)
        else:
            channel = await call(host, port, env, VARIABLES)
        result.add(time.perf_counter() - start, channel.variables, len(channel.commands))
    return result


async def process_agi(n: int, policy: Path = EXAMPLE) -> Result:
    """Spawn the process AGI per call, as Asterisk does; time spawn to exit."""
    env = {k: v for k, v in os.environ.items() if k != "REFEREE_DOMAIN"}
    env["REFEREE_POLICY"] = str(policy)
    result = Result()
    for _ in range(n):
        start = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(SCRIPT), cwd="/", env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        try:
            channel = await play(proc.stdout, proc.stdin, PROCESS, VARIABLES)
            proc.stdin.close()
            await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        result.add(time.perf_counter() - start, channel.variables, len(channel.commands))
    return result


HEADER = "".join(f"{k}: {v}\n" for k, v in ONE_ROUND_TRIP.items()).encode() + b"\n"


def variables_set(lines: list[bytes]) -> dict[str, str]:
    """What a session's SET VARIABLE lines set."""
    words = [split_args(line.decode()) for line in lines]
    return {w[2]: w[3] for w in words if w[:2] == ["SET", "VARIABLE"] and len(w) == 4}


def light_arrivals(port: int, rate: float, seconds: float) -> Result:
    """The rate test with the light client (agi_rate_client: one epoll loop, no asyncio)."""
    outcome = agi_rate_client.steady_arrivals(HOST, port, HEADER, rate, seconds)
    result = Result(
        wall=outcome.wall,
        offered=len(outcome.seconds),
        late=outcome.late,
        client_cpu=outcome.client_cpu,
        phases=outcome.phases,
    )
    for seconds_taken, lines, failed in zip(outcome.seconds, outcome.lines, outcome.failed, strict=True):
        result.add(seconds_taken, {} if failed else variables_set(lines), len(lines))
    return result


class _Session(asyncio.Protocol):
    """One asyncio client session (``--client asyncio``): send the environment, answer ``200 result=1``
    to each SET VARIABLE, done when the server closes."""

    HEADER = HEADER

    def __init__(self, done: asyncio.Future[tuple[dict[str, str], int]]) -> None:
        self.done = done
        self.buffer = b""
        self.variables: dict[str, str] = {}
        self.commands = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport
        transport.write(self.HEADER)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            words = split_args(line.decode())
            self.commands += 1
            if words[:2] == ["SET", "VARIABLE"] and len(words) == 4:
                self.variables[words[2]] = words[3]
            assert self.transport is not None
            self.transport.write(b"200 result=1\n")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result((self.variables, self.commands))


async def _arrival(port: int, due: float, result: Result) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[dict[str, str], int]] = loop.create_future()
    try:
        transport, _ = await loop.create_connection(lambda: _Session(done), HOST, port)
        variables, commands = await asyncio.wait_for(done, 10)
        transport.close()
    except (OSError, TimeoutError):
        variables, commands = {}, 0
    result.add(time.perf_counter() - due, variables, commands)


async def steady_arrivals(port: int, rate: float, seconds: float, client: str = "light") -> Result:
    """A session every 1/rate s for ``seconds``, started on time even when the server lags behind: by the
    light client (``light``), else by this asyncio loop (``asyncio``), a task and a Protocol a session."""
    if client == "light":
        return light_arrivals(port, rate, seconds)
    result = Result()
    total = max(1, round(rate * seconds))
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        result.late.append(time.perf_counter() - due)
        tasks.append(asyncio.create_task(_arrival(port, due, result)))
    await asyncio.gather(*tasks)
    result.wall = time.perf_counter() - start
    result.offered = total
    return result


def _cpus() -> tuple[int | None, set[int]]:
    """The server's CPU and the client's, when there are two or more."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[-1], set(cpus[:-1])) if len(cpus) > 1 else (None, set(cpus))


SERVER_CPU, CLIENT_CPUS = _cpus()  # before the client pins itself


@dataclass(frozen=True)
class Options:
    """The command line's: sessions, rate, and who plays which part."""

    n_fastagi: int = 300
    n_process: int = 30
    rate: float = 2000
    seconds: float = 5
    client: str = "light"  # light: blocking sockets and one epoll loop; asyncio: the fake Asterisk's streams
    server_loop: str = "auto"  # referee fastagi --loop
    client_loop: str = "auto"  # the loop of the asyncio parts of the client (the process AGI's pipes)
    nice: int = 0  # the FastAGI runs' niceness, server and client (negative: root only), against other work
    server_options: tuple[str, ...] = ()  # more referee fastagi options (--no-log-decisions)


def prioritise(server: int | None, nice: int) -> None:
    """This process's (and ``server``'s) niceness, and their autogroup's: with autogroups (Linux's default
    on a desktop kernel) a niceness only counts among the processes of one session, so the whole session
    (this client and its server) is given it too."""
    for process in (server, os.getpid()):
        if process is not None:
            os.setpriority(os.PRIO_PROCESS, process, nice)
    autogroup = Path("/proc/self/autogroup")
    if autogroup.exists():
        autogroup.write_text(str(nice))


async def bench(options: Options) -> dict[str, Result]:
    os.sched_setaffinity(0, CLIENT_CPUS)
    results: dict[str, Result] = {}
    n_fastagi, client = options.n_fastagi, options.client
    with fastagi_server(cpu=SERVER_CPU, loop=options.server_loop, options=options.server_options) as (
        port,
        pid,
    ):
        if options.nice:
            prioritise(pid, options.nice)
        await fastagi_sequential(port, 20, ONE_ROUND_TRIP, client=client)  # warm-up: imports, policy caches
        for name, run in (
            ("one", fastagi_sequential(port, n_fastagi, ONE_ROUND_TRIP, client=client)),
            ("older", fastagi_sequential(port, n_fastagi, ROUND_TRIPS, client=client)),
            ("rate", steady_arrivals(port, options.rate, options.seconds, client)),
        ):
            cpu, waited, client_waited = cpu_seconds(pid), run_delay(pid), run_delay(os.getpid())
            results[name] = await run
            results[name].server_cpu = cpu_seconds(pid) - cpu
            results[name].server_waited = run_delay(pid) - waited
            results[name].client_waited = run_delay(os.getpid()) - client_waited
    if options.nice:
        prioritise(None, 0)  # the process AGI as Asterisk would spawn it
    results["process"] = await process_agi(options.n_process)
    return results


def quantiles(values: list[float]) -> str:
    ordered = sorted(values) or [0.0]
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms, max {ordered[-1] * 1e3:.3f} ms"


def tail_split(result: Result) -> str:
    """Where the slowest 1% of the rate test's sessions spent their time, phase by phase and side by side
    (agi_rate_client.PHASES): whether the client or the server made the tail."""
    if not result.phases:
        return "steady arrivals: no phases (asyncio client)"
    totals = sorted(result.phases, key=lambda p: sum(p.values()))
    tail = totals[round(0.99 * (len(totals) - 1)) :]
    mean = {name: statistics.mean(p[name] for p in tail) for name in agi_rate_client.PHASES}
    side = {
        s: sum(v for n, v in mean.items() if agi_rate_client.PHASES[n] == s) for s in ("client", "server")
    }
    phases = ", ".join(f"{name} {value * 1e3:.2f}" for name, value in mean.items())
    return (
        f"steady arrivals, slowest 1% ({len(tail)}): mean ms {phases}; client {side['client'] * 1e3:.2f} ms,"
        f" server {side['server'] * 1e3:.2f} ms"
    )


def report(results: dict[str, Result], options: Options) -> list[str]:
    one, older, process, steady = results["one"], results["older"], results["process"], results["rate"]
    rate, seconds = options.rate, options.seconds
    pinned = f"server on CPU {SERVER_CPU}" if SERVER_CPU is not None else "one CPU shared"
    client_cpu = (
        f", client CPU {steady.client_cpu / steady.wall * 100:.0f}% of its core" if steady.client_cpu else ""
    )
    return [
        f"transfer guard round trip, {EXTEN} referred by 1002, examples/policy.toml, {os.cpu_count()} CPUs,"
        f" load average {os.getloadavg()[0]:.2f}; server --loop {options.server_loop}"
        f" {' '.join(options.server_options)}, {options.client} client"
        + (f", nice {options.nice}" if options.nice else ""),
        one.line("FastAGI, one round trip"),
        older.line("FastAGI, older dialplan (no query)"),
        process.line("process AGI (baseline)"),
        f"ratio of medians, process AGI / FastAGI: {process.p50() / one.p50():.1f}x   (goal 100x or more)",
        f"ratio of medians, older / one round trip FastAGI: {older.p50() / one.p50():.2f}x",
        f"server CPU per session: one round trip {one.cpu_per_session() * 1e3:.3f} ms,"
        f" older {older.cpu_per_session() * 1e3:.3f} ms",
        f"steady arrivals: {rate:.0f}/s offered for {seconds:g} s ({pinned}): {len(steady.seconds)} done,"
        f" {steady.allowed()} allowed, {len(steady.seconds) / steady.wall:.0f} sessions/s",
        steady.line("steady arrivals, from arrival"),
        f"steady arrivals: p99 {steady.p99() * 1e3:.3f} ms (goal 5 ms or less),"
        f" server CPU {steady.cpu_per_session() * 1e3:.3f} ms per session,"
        f" {steady.server_cpu / steady.wall * 100:.0f}% of its CPU",
        f"steady arrivals: the client started sessions late by {quantiles(steady.late)}{client_cpu}",
        tail_split(steady),
        f"steady arrivals: waited for their CPU (other processes on it): the server"
        f" {steady.server_waited * 1e3:.0f} ms in all ({steady.server_waited / steady.wall * 100:.1f}% of the run),"
        f" the client {steady.client_waited * 1e3:.0f} ms ({steady.client_waited / steady.wall * 100:.1f}%)",
    ]


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(description="FastAGI guard against the process AGI; steady arrivals")
    parser.add_argument("n_fastagi", nargs="?", type=int, default=Options.n_fastagi, metavar="FASTAGI")
    parser.add_argument("n_process", nargs="?", type=int, default=Options.n_process, metavar="PROCESS")
    parser.add_argument("rate", nargs="?", type=float, default=Options.rate, metavar="RATE")
    parser.add_argument("seconds", nargs="?", type=float, default=Options.seconds, metavar="SECONDS")
    parser.add_argument("--client", choices=("light", "asyncio"), default=Options.client)
    parser.add_argument("--server-loop", choices=LOOPS, default=Options.server_loop)
    parser.add_argument("--client-loop", choices=LOOPS, default=Options.client_loop)
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of the FastAGI server and client (-10: other work yields)",
    )
    parser.add_argument(
        "--server-option",
        dest="server_options",
        action="append",
        default=[],
        metavar="OPTION",
        help="one more referee fastagi option (repeatable), e.g. --server-option=--no-log-decisions",
    )
    args = vars(parser.parse_args(argv))
    return Options(**{**args, "server_options": tuple(args["server_options"])})


def main(argv: list[str]) -> int:
    options = parse(argv)
    _, new_loop = loop_factory(options.client_loop)
    results = run_on(bench(options), new_loop)
    print(*report(results, options), sep="\n")
    wrong = sum(len(r.seconds) - r.allowed() for r in results.values())
    if wrong:
        print(f"WARNING: {wrong} sessions did not end allowed to {TARGET}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
