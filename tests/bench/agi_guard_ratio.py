"""The transfer guard's round-trip: FastAGI (``referee fastagi``) vs the process AGI, as a ratio.

Not a timed test: figures printed, nothing asserted on time (goal: FastAGI 50x or more faster
by median; p99 at 2 ms or less with 200 concurrent sessions). The client plays Asterisk with
:mod:`referee.testing.fake_asterisk`: the AGI environment of the transfer context for extension
1003, answers to the guard's GET VARIABLEs (Referred-By 1002), until it sets REFEREE_ALLOWED.

1. sequential FastAGI sessions against ``referee fastagi`` (a subprocess on 127.0.5.20, a
   kernel-picked port, examples/policy.toml): connect, header, commands, close;
2. the same check as a process AGI: ``agi/referee_transfer_guard.py`` spawned per call (with
   this interpreter: the venv holds referee and pyst2), environment on its stdin, commands
   answered on its pipes, until it exits;
3. rounds of 200 concurrent FastAGI sessions.

    make bench-agi      # or: .venv/bin/python tests/bench/agi_guard_ratio.py [FASTAGI [PROCESS [ROUNDS]]]

Client and server share the machine. Loopback only; the server is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from referee.testing.fake_asterisk import Channel, agi_env, call, play

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "ansible" / "roles" / "referee" / "files" / "referee_transfer_guard.py"
EXAMPLE = ROOT / "examples" / "policy.toml"
HOST = "127.0.5.20"
EXTEN = "1003"
VARIABLES = {"SIPREFERREDBYHDR": "<sip:1002@lab.test>"}
CONCURRENT = 200


@dataclass
class Result:
    """Per-session round-trips (seconds) and the channels they left."""

    seconds: list[float]
    channels: list[Channel]
    wall: float = 0.0  # seconds for all the sessions, start to end
    server_cpu: float = 0.0  # the server's user + system CPU seconds meanwhile (FastAGI only)

    def rate(self) -> float:
        return len(self.seconds) / self.wall if self.wall else 0.0

    def p50(self) -> float:
        return statistics.median(self.seconds)

    def p99(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]

    def line(self, name: str) -> str:
        return f"{name:<28} n={len(self.seconds):<5} p50 {self.p50() * 1e3:8.3f} ms   p99 {self.p99() * 1e3:8.3f} ms"


@contextmanager
def fastagi_server(policy: Path = EXAMPLE, host: str = HOST) -> Iterator[tuple[int, int]]:
    """``referee fastagi`` as a subprocess on a kernel-picked port; yields (port, pid); SIGTERM by PID."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "referee.cli", "fastagi", "--policy", str(policy), "--listen", host, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _timed_call(port: int, host: str) -> tuple[float, Channel]:
    start = time.perf_counter()
    channel = await call(host, port, agi_env(EXTEN), VARIABLES)
    return time.perf_counter() - start, channel


async def fastagi_sequential(port: int, n: int, host: str = HOST) -> Result:
    result = Result([], [])
    for _ in range(n):
        seconds, channel = await _timed_call(port, host)
        result.seconds.append(seconds)
        result.channels.append(channel)
    return result


async def fastagi_concurrent(port: int, rounds: int, sessions: int = CONCURRENT, host: str = HOST) -> Result:
    result = Result([], [])
    start = time.perf_counter()
    for _ in range(rounds):
        for seconds, channel in await asyncio.gather(*(_timed_call(port, host) for _ in range(sessions))):
            result.seconds.append(seconds)
            result.channels.append(channel)
    result.wall = time.perf_counter() - start
    return result


async def process_agi(n: int, policy: Path = EXAMPLE) -> Result:
    """Spawn the process AGI per call, as Asterisk does; time spawn to exit."""
    env = {k: v for k, v in os.environ.items() if k != "REFEREE_DOMAIN"}
    env["REFEREE_POLICY"] = str(policy)
    result = Result([], [])
    for _ in range(n):
        start = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(SCRIPT), cwd="/", env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        try:
            channel = await play(proc.stdout, proc.stdin, agi_env(EXTEN, script=""), VARIABLES)
            proc.stdin.close()
            await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        result.seconds.append(time.perf_counter() - start)
        result.channels.append(channel)
    return result


async def bench(n_fastagi: int, n_process: int, rounds: int) -> dict[str, Result]:
    with fastagi_server() as (port, pid):
        await fastagi_sequential(port, 20)  # warm-up: imports, policy caches
        results = {}
        for name, run in (
            ("fastagi", fastagi_sequential(port, n_fastagi)),
            ("concurrent", fastagi_concurrent(port, rounds)),
        ):
            cpu = cpu_seconds(pid)
            results[name] = await run
            results[name].server_cpu = cpu_seconds(pid) - cpu
    results["process"] = await process_agi(n_process)
    return results


def main(argv: list[str]) -> int:
    n_fastagi, n_process, rounds = (int(a) for a in (argv + ["300", "30", "5"][len(argv) :])[:3])
    results = asyncio.run(bench(n_fastagi, n_process, rounds))
    denied = sum(c.allowed != "1" for r in results.values() for c in r.channels)
    print(f"transfer guard round-trip, {EXTEN} referred by 1002, examples/policy.toml, {os.cpu_count()} CPUs")
    print(results["fastagi"].line("FastAGI, sequential"))
    print(results["process"].line("process AGI, sequential"))
    print(results["concurrent"].line(f"FastAGI, {CONCURRENT} concurrent"))
    ratio = results["process"].p50() / results["fastagi"].p50()
    print(f"ratio of medians (process / FastAGI): {ratio:.1f}x   (goal 50x or more)")
    for name in ("fastagi", "concurrent"):
        r = results[name]
        print(f"{name}: server CPU {r.server_cpu / len(r.seconds) * 1e3:.3f} ms per session")
    print(f"200-concurrent: {results['concurrent'].rate():.0f} sessions/s through the server")
    print(f"200-concurrent p99 {results['concurrent'].p99() * 1e3:.3f} ms (goal 2 ms or less)")
    if denied:
        print(f"WARNING: {denied} sessions did not end with REFEREE_ALLOWED=1")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
