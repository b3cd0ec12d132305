"""Two FastAGI servers, paired: this tree's and another's, on the same CPU at once, sessions alternated.

On a shared, loaded machine the CPU per session of one server run after the other moves by more than
the difference between two designs. Here both servers are up together, pinned to the same CPU, and the
client (on the other CPUs) alternates one-round-trip sessions between them, so both see the same load;
what is printed per round is each server's CPU per session, its median round trip, and the ratio.
Absolute figures are inflated (two processes share a CPU's caches); the ratio is the result.

    git archive main src | tar -x -C /tmp/main   # the other tree's src
    .venv/bin/python tests/bench/agi_server_pair.py /tmp/main/src [SESSIONS [ROUNDS]]
    .venv/bin/python tests/bench/agi_server_pair.py loops [SESSIONS [ROUNDS]]   # this tree: uvloop/asyncio

With ``loops`` both servers are this tree's, "this" on uvloop (``--loop uvloop``), "other" on asyncio's
own loop (``--loop asyncio``).

Loopback only (127.0.5.24); the servers are stopped by their PIDs.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from agi_guard_ratio import CLIENT_CPUS, ONE_ROUND_TRIP, SERVER_CPU, VARIABLES, cpu_seconds, fastagi_server

from referee.agi.guard import RESULT_VARIABLE
from referee.testing.fake_asterisk import call

HOST = "127.0.5.24"


async def session(port: int) -> float:
    start = time.perf_counter()
    channel = await call(HOST, port, ONE_ROUND_TRIP, VARIABLES)
    if RESULT_VARIABLE not in channel.variables:
        raise RuntimeError(f"no {RESULT_VARIABLE} from the server on port {port}")
    return time.perf_counter() - start


async def rounds(servers: dict[str, tuple[int, int]], sessions: int, count: int) -> list[str]:
    for port, _ in servers.values():  # warm-up: imports, policy caches
        for _ in range(50):
            await session(port)
    lines = []
    for number in range(1, count + 1):
        seconds: dict[str, list[float]] = {name: [] for name in servers}
        cpu = {name: cpu_seconds(pid) for name, (_, pid) in servers.items()}
        for i in range(sessions):
            order = (
                list(servers.items()) if i % 2 else list(reversed(servers.items()))
            )  # neither always first
            for name, (port, _) in order:
                seconds[name].append(await session(port))
        used = {name: (cpu_seconds(pid) - cpu[name]) / sessions for name, (_, pid) in servers.items()}
        figures = "   ".join(
            f"{name}: {used[name] * 1e6:.0f} µs CPU/session, p50 {statistics.median(seconds[name]) * 1e6:.0f} µs"
            for name in servers
        )
        ratio = f"{used['this'] / used['other']:.2f}" if used["other"] else "n/a (too few sessions)"
        lines.append(f"round {number}: {figures}   this/other CPU {ratio}")
        print(lines[-1], flush=True)
    return lines


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    loops = argv[0] == "loops"
    other = None if loops else Path(argv[0])
    sessions, count = (int(argv[1]) if len(argv) > 1 else 3000), (int(argv[2]) if len(argv) > 2 else 5)
    os.sched_setaffinity(0, CLIENT_CPUS)
    with ExitStack() as stack:
        servers = {
            "this": stack.enter_context(
                fastagi_server(host=HOST, cpu=SERVER_CPU, loop="uvloop" if loops else None)
            ),
            "other": stack.enter_context(
                fastagi_server(host=HOST, cpu=SERVER_CPU, src=other, loop="asyncio" if loops else None)
            ),
        }
        asyncio.run(rounds(servers, sessions, count))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
