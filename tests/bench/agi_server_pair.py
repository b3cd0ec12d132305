"""Two FastAGI servers, paired: this tree's and another's, on the same CPU at once, sessions alternated.

On a shared, loaded machine the CPU per session of one server run after the other moves by more than
the difference between two designs. Here both servers are up together, pinned to the same CPU, and the
client (on the other CPUs) alternates one-round-trip sessions between them, so both see the same load;
what is printed per round is each server's CPU per session, its median round trip, and the ratio.
Absolute figures are inflated (two processes share a CPU's caches); the ratio is the result.

    git archive main src | tar -x -C /tmp/main   # the other tree's src
    .venv/bin/python tests/bench/agi_server_pair.py /tmp/main/src [SESSIONS [ROUNDS]]
    # this tree against itself with other options, e.g. uvloop against asyncio's own loop:
    .venv/bin/python tests/bench/agi_server_pair.py . --this-args="--loop uvloop" --other-args="--loop asyncio"

The client is a blocking socket per session (``call_blocking``, as res_agi's), the same for both.

Loopback only (127.0.5.24); the servers are stopped by their PIDs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from agi_guard_ratio import CLIENT_CPUS, ONE_ROUND_TRIP, SERVER_CPU, VARIABLES, cpu_seconds, fastagi_server

from referee.agi.guard import RESULT_VARIABLE
from referee.testing.fake_asterisk import call_blocking

HOST = "127.0.5.24"


def session(port: int) -> float:
    start = time.perf_counter()
    channel = call_blocking(HOST, port, ONE_ROUND_TRIP, VARIABLES)
    if RESULT_VARIABLE not in channel.variables:
        raise RuntimeError(f"no {RESULT_VARIABLE} from the server on port {port}")
    return time.perf_counter() - start


def rounds(servers: dict[str, tuple[int, int]], sessions: int, count: int) -> list[str]:
    for port, _ in servers.values():  # warm-up: imports, policy caches
        for _ in range(50):
            session(port)
    lines = []
    for number in range(1, count + 1):
        seconds: dict[str, list[float]] = {name: [] for name in servers}
        cpu = {name: cpu_seconds(pid) for name, (_, pid) in servers.items()}
        for i in range(sessions):
            order = (
                list(servers.items()) if i % 2 else list(reversed(servers.items()))
            )  # neither always first
            for name, (port, _) in order:
                seconds[name].append(session(port))
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
    parser = argparse.ArgumentParser(description="two FastAGI servers on one CPU, sessions alternated")
    parser.add_argument("other", metavar="OTHER", help="the other tree's src directory, or . for this tree")
    parser.add_argument("sessions", nargs="?", type=int, default=3000, help="per server and round")
    parser.add_argument("rounds", nargs="?", type=int, default=5)
    parser.add_argument("--this-args", default="", help="more referee fastagi options for this tree's")
    parser.add_argument("--other-args", default="", help="more referee fastagi options for the other")
    args = parser.parse_args(argv)
    other = None if args.other == "." else Path(args.other)
    os.sched_setaffinity(0, CLIENT_CPUS)
    with ExitStack() as stack:
        servers = {
            "this": stack.enter_context(
                fastagi_server(host=HOST, cpu=SERVER_CPU, options=shlex.split(args.this_args))
            ),
            "other": stack.enter_context(
                fastagi_server(host=HOST, cpu=SERVER_CPU, src=other, options=shlex.split(args.other_args))
            ),
        }
        rounds(servers, args.sessions, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
