"""Policy decision latency on the example policy: p50 and p99 per case.

Run with `make bench` (pytest-benchmark). Under `make test` benchmarks are disabled and
each case runs once, as a smoke test. The target is 10 us p50 and 50 us p99.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from referee.policy import Dialog, load_policy

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy.toml"
POLICY = load_policy(EXAMPLE)
DIALOG = Dialog("c1@127.0.0.32", "bobtag", "caroltag")
CASES = {
    "extension": "<sip:1003@lab.test>",
    "extension-params-screened": "<sip:1003@lab.test;maddr=198.51.100.7;transport=tcp>",
    "premium-rejected": "<sip:09001234567@lab.test>",
    "national-number": "<sip:020-7946-0000@lab.test>",
    "attended-replaces": "<sip:1003@lab.test?Replaces=c1%40127.0.0.32%3Bto-tag%3Dcaroltag%3Bfrom-tag%3Dbobtag>",
    "http-rejected": "http://www.ietf.org",
}


@pytest.mark.parametrize("case", list(CASES))
def test_decision_latency(benchmark: BenchmarkFixture, case: str) -> None:
    refer_to = CASES[case]

    def decide() -> bool:
        return POLICY.decide(refer_to, referrer="sip:1002@lab.test", dialogs=(DIALOG,)).allowed

    allowed = benchmark.pedantic(decide, rounds=20000, iterations=1, warmup_rounds=500)
    assert allowed == (case not in ("premium-rejected", "http-rejected"))
    stats = benchmark.stats
    if stats is not None:  # None when benchmarks are disabled
        data = sorted(stats.stats.data)
        p50, p99 = data[len(data) // 2], data[int(len(data) * 0.99)]
        benchmark.extra_info.update(p50_us=round(p50 * 1e6, 2), p99_us=round(p99 * 1e6, 2))
        print(f"\n{case:>20}: p50 {p50 * 1e6:6.2f} us   p99 {p99 * 1e6:6.2f} us")


def test_the_cpu_time_script_runs_every_case() -> None:
    from policy_cpu import cpu_per_decision  # noqa: PLC0415

    assert all(cpu_per_decision(refer_to, rounds=1, per_round=3) > 0 for refer_to in CASES.values())
