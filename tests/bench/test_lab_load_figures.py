"""The lab load benchmark's counting, percentiles and report, without the lab (tests/bench/lab_load.py)."""

from __future__ import annotations

import pytest
from lab_load import ladder_rates, with_refer_limit

from referee.audit.record import TransferRecord
from referee.events import State
from referee_lab.ladder import Message
from referee_lab.load import plan
from referee_lab.load_figures import (
    AuditSummary,
    CpuMeter,
    SippCounts,
    StepFigures,
    audit_summary,
    cpu_ticks,
    percentile,
    refer_latencies,
    report,
    sipp_counts,
)


def record(rid: int, call_id: str, state: State) -> TransferRecord:
    return TransferRecord(rid, call_id, "1", "refer", "blind", "pbx1", state, None, {}, 0.0, 0.0, None)


def refer(t: float, call_id: str, src: str = "bob") -> Message:
    return Message(t, src, "proxy", "REFER", True, call_id, 2)


def notify(t: float, call_id: str, frag: str, dst: str = "bob") -> Message:
    return Message(t, "proxy", dst, f"NOTIFY ({frag})", True, call_id, 3, sipfrag=frag)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_refer_latency_is_first_refer_to_first_notify_200_of_that_dialog() -> None:
    messages = [
        notify(0.5, "c1", "200 OK"),  # before its REFER: not this transfer's
        refer(1.0, "c1"),
        refer(1.2, "c1"),  # a retransmission
        notify(1.01, "c1", "100 Trying"),
        notify(1.03, "c1", "200 OK"),
        notify(1.5, "c1", "200 OK"),
        refer(2.0, "c2", src="alice"),
        notify(2.02, "c2", "503 Service Unavailable", dst="alice"),
        refer(3.0, "c3", src="carol"),  # not a referrer watched
        notify(3.01, "c3", "200 OK", dst="carol"),
    ]
    got = refer_latencies(messages, {"alice", "bob"})
    assert set(got) == {"c1", "c2"}
    assert got["c1"] == pytest.approx(0.03)
    assert got["c2"] is None


def test_audit_wants_exactly_one_final_record_per_refer() -> None:
    records = [
        record(1, "ok", State.COMPLETED),
        record(2, "failed", State.FAILED),
        record(3, "twice", State.COMPLETED),
        record(4, "twice", State.COMPLETED),
        record(5, "stuck", State.RINGBACK),
        record(6, "other-run", State.COMPLETED),
    ]
    got = audit_summary(records, ["ok", "failed", "twice", "stuck", "lost", "ok"])
    assert got.refers == 5
    assert got.one_final == 2
    assert got.missing == ["lost"]
    assert got.duplicated == ["twice"]
    assert got.stuck == ["stuck"]
    assert got.completed == {"ok"}
    assert got.states == {"completed": 3, "failed": 1, "ringback": 1}
    assert not got.ok
    assert audit_summary([record(1, "ok", State.COMPLETED)], ["ok"]).ok


def test_sipp_stat_file_last_line_counts() -> None:
    csv = (
        "StartTime;TotalCallCreated;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);\n"
        "t0;3;3;3;0;0;\n"
        "t1;10;7;9;1;1;\n"
    )
    assert sipp_counts(csv) == SippCounts(created=10, successful=9, failed=1)
    assert sipp_counts("StartTime;TotalCallCreated;\n") is None
    assert sipp_counts("") is None


def test_proc_stat_line_with_spaces_in_the_name() -> None:
    line = "1234 (kamailio worker) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 100 0 0"
    assert cpu_ticks(line) == ("kamailio worker", 300)


def test_cpu_meter_counts_only_between_samples() -> None:
    meter = CpuMeter(ticks_per_second=100)
    meter.sample(10.0, {1: ("kamailio", 1000), 2: ("kamailio", 500), 3: ("pbx1", 0)})
    meter.sample(20.0, {1: ("kamailio", 1500), 2: ("kamailio", 600), 3: ("pbx1", 800), 4: ("sipp", 200)})
    meter.sample(30.0, {1: ("kamailio", 1600), 3: ("pbx1", 1000)})  # 2 and 4 exited: last figures stay
    assert meter.seconds() == {"kamailio": 7.0, "pbx1": 10.0, "sipp": 2.0}
    assert meter.percent() == {"kamailio": 35.0, "pbx1": 50.0, "sipp": 10.0}
    assert CpuMeter(100).percent() == {}


def step(
    latencies: dict[str, float | None], attempted: int, audit: AuditSummary, failed_calls: int = 0
) -> StepFigures:
    return StepFigures(
        rate=2,
        seconds=1,
        attempted=attempted,
        latencies=latencies,
        audit=audit,
        sipp={"alice-calls": SippCounts(attempted, attempted - failed_calls, failed_calls), "carol": None},
        cpu={"kamailio": 12.0, "pbx1": 40.0},
    )


def test_a_transfer_completes_with_its_notify_200_and_completed_record() -> None:
    audit = audit_summary([record(1, "a", State.COMPLETED), record(2, "b", State.FAILED)], ["a", "b"])
    s = step({"a": 0.004, "b": None}, attempted=3, audit=audit)
    assert s.completed == 1
    assert s.failed == 2  # b had no NOTIFY 200, the third call never got to its REFER
    assert not s.clean
    text = "\n".join(report(s))
    assert "3 transfers placed, 1 completed, 2 failed" in text
    assert "p50 4.0 ms" in text
    assert "carol no stats" in text
    assert "NOT met" in text


def test_clean_needs_every_counter_right() -> None:
    audit = audit_summary([record(1, "a", State.COMPLETED)], ["a"])
    good = StepFigures(2, 1, 1, {"a": 0.01}, audit, {"alice-calls": SippCounts(1, 1, 0)}, {})
    assert good.clean
    assert "goal (0 failures, p99 <= 50 ms): met" in "\n".join(report(good))
    assert not StepFigures(2, 1, 1, {"a": 0.01}, audit, {"alice-calls": SippCounts(1, 0, 1)}, {}).clean
    assert not StepFigures(2, 1, 1, {"a": 0.01}, audit, {"carol": None}, {}).clean
    assert "NOT met" in "\n".join(report(good, goal_p99_ms=5))


def test_plan_splits_the_rate_between_blind_and_attended() -> None:
    legs = {leg.name: leg for leg in plan(20, 300)}
    assert legs["alice-calls"].calls == legs["dave-calls"].calls == 3000
    assert legs["alice-calls"].rate == legs["dave-calls"].rate == 10
    assert legs["carol"].calls == 6000
    assert legs["bob"].calls == legs["bob-consult"].calls == legs["alice-refers"].calls == 3000
    # bob's twin listens before bob starts, the callers start last
    names = list(legs)
    assert names.index("bob-consult") < names.index("bob") < names.index("alice-calls")
    assert sum(leg.calls for leg in plan(1, 2) if leg.rate) == 2
    with pytest.raises(ValueError):
        plan(0, 10)
    with pytest.raises(ValueError):
        plan(1000, 600)


def test_refer_limit_rewrites_the_one_pike_line() -> None:
    cfg = 'loadmodule "pike.so"\nmodparam("pike", "reqs_density_per_unit", 16)\nmodparam("pike", "remove_latency", 4)\n'
    assert with_refer_limit(cfg, 1000) == cfg.replace("16)", "1000)")
    with pytest.raises(ValueError):
        with_refer_limit("no pike here\n", 1000)


def test_ladder_goes_down_from_the_failed_rate_and_is_bounded() -> None:
    assert ladder_rates(20, [5, 15, 10, 25, 15]) == [15, 10, 5]
    assert ladder_rates(20, [19, 18, 17, 16, 15, 1]) == [19, 18, 17, 16]
    assert ladder_rates(5, [15, 10]) == []
