"""Policy decision cost as CPU time, per case: steadier than wall-clock p50 on a shared machine.

Each case runs ROUNDS rounds of 1,000 decisions with the garbage collector off; the figure is the
least thread CPU time per decision over the rounds (the round the rest of the machine disturbed
least). Same cases and policy as test_policy_bench.py (``make bench``). For a before/after, run it
against another checkout's sources, alternating:

    .venv/bin/python tests/bench/policy_cpu.py [ROUNDS]
    PYTHONPATH=/path/to/other/checkout/src .venv/bin/python tests/bench/policy_cpu.py [ROUNDS]
"""

from __future__ import annotations

import gc
import sys
import time

from test_policy_bench import CASES, DIALOG, POLICY


def cpu_per_decision(refer_to: str, rounds: int, per_round: int = 1000) -> float:
    """Least CPU seconds per decision over ``rounds`` rounds."""
    dialogs = (DIALOG,)
    best = float("inf")
    for _ in range(rounds):
        start = time.thread_time_ns()
        for _ in range(per_round):
            POLICY.decide(refer_to, referrer="sip:1002@lab.test", dialogs=dialogs)
        best = min(best, (time.thread_time_ns() - start) / per_round)
    return best / 1e9


def main(argv: list[str]) -> int:
    rounds = int(argv[0]) if argv else 150
    gc.disable()
    import referee.sip  # noqa: PLC0415  (which sources: this checkout's or PYTHONPATH's)

    print(f"policy decision CPU time, least of {rounds} rounds of 1,000 ({referee.sip.__file__})")
    for case, refer_to in CASES.items():
        print(f"{case:>26}: {cpu_per_decision(refer_to, rounds) * 1e6:6.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
