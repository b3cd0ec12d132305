"""202 before NOTIFY under load: how many NOTIFYs reach the referrer before their REFER's 202.

Not a timed test: counts. Both cores are kept busy by ``stress-ng --cpu 2`` (bounded: ``--timeout``, and
stopped by its PID at the end). Two ways to run it, each under the network lock:

    flock /tmp/referee-net.lock .venv/bin/python tests/bench/notify_order_load.py proxy [N]   # make bench-notify-order
    flock /tmp/referee-net.lock .venv/bin/python tests/bench/notify_order_load.py lab [N]     # root: the lab

``proxy`` (default N 400): the real Kamailio of tests/integration (4 workers), a pbx1 stand-in that sends
each NOTIFY right after its 202, 16 phones at once; once with the proxy as shipped, once with a cfg
without the ``referee_refer`` htable (no hold: the proxy before the fix), for comparison.

``lab`` (default N 200): the lab's ``attended_transfer`` scenario N times (real Kamailio 6.1 and
Asterisk 22; brings the lab up or reuses it, takes it down at the end); from each run's pcap, whether
bob got the first NOTIFY of his REFER's subscription before the 202.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

HOLD_TABLE = 'modparam("htable", "htable", "referee_refer=>size=10;autoexpire=60;")'


@contextmanager
def both_cores_loaded(seconds: int) -> Iterator[None]:
    """``stress-ng --cpu 2`` for at most ``seconds``; stopped by its PID when the block ends."""
    if shutil.which("stress-ng") is None:
        raise SystemExit("notify_order_load: stress-ng is needed (apt-get install stress-ng)")
    load = subprocess.Popen(["stress-ng", "--cpu", "2", "--timeout", f"{seconds}s", "--quiet"])
    try:
        time.sleep(1.0)  # the stressors are running
        yield
    finally:
        load.terminate()
        try:
            load.wait(10)
        except subprocess.TimeoutExpired:
            load.kill()
            load.wait()


def proxy_run(rounds: int, hold: bool) -> str:
    import harness  # noqa: PLC0415
    import notify_order  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix="referee-notify-order-"))
    try:
        shutil.copy(harness.POLICY, work / "policy.toml")
        cfg = harness.render_cfg(work, kamailio__children=4)
        if not hold:
            cfg.write_text(cfg.read_text().replace(HOLD_TABLE, ""))
        proxy = harness.Kamailio(work, cfg)
        proxy.start()
        try:
            started = time.monotonic()
            tally = notify_order.race(rounds, parallel=16)
            return f"{tally} in {time.monotonic() - started:.1f} s"
        finally:
            proxy.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_proxy(rounds: int) -> int:
    with both_cores_loaded(300):
        for hold in (True, False):
            label = "as shipped (NOTIFY held for its 202)" if hold else "without the hold (before the fix)"
            print(f"proxy {label}: {proxy_run(rounds, hold)}", flush=True)
    return 0


def bench_lab(runs: int) -> int:
    from lab_attended_latency import lab_up  # noqa: PLC0415

    from referee_lab import ladder, scenario, services, topology  # noqa: PLC0415

    topo = topology.load()
    names = topo.node_names()
    overtaken = in_order = unknown = 0
    try:
        state = lab_up(topo)
        if state is None:
            print("notify_order_load: the lab did not come up", file=sys.stderr)
            return 1
        attended = {s.name: s for s in scenario.discover()}["attended_transfer"]
        with both_cores_loaded(30 * runs + 60):
            for i in range(1, runs + 1):
                res = scenario.run(attended, state, topo)
                first = first_to_referrer(ladder.read_pcap(res.pcap, names), "bob")
                overtaken += first == "NOTIFY"
                in_order += first == "202"
                unknown += first is None
                verdict = "PASS" if res.passed else f"FAIL ({res.error})"
                print(f"  run {i:3}: first to bob {first or 'n/a'}, scenario {verdict}", flush=True)
    finally:
        report = services.down()
        print(f"lab down: stopped {len(report['stopped'])} process(es), unmounted {len(report['unmounted'])}")
    print(
        f"lab attended_transfer x{runs}: 202 first {in_order}, NOTIFY first {overtaken}, not captured {unknown}"
    )
    return 0 if overtaken == 0 and unknown == 0 else 1


def first_to_referrer(messages: list, referrer: str, proxy: str = "proxy") -> str | None:  # type: ignore[type-arg]
    """Which of the REFER's 202 and the first NOTIFY of its dialog ``proxy`` delivered to ``referrer`` first."""
    from referee_lab.ladder import first_refer  # noqa: PLC0415 - the lab, as in bench_lab

    refer = first_refer(messages, referrer, proxy)
    if refer is None:
        return None
    for m in messages:
        if m.src != proxy or m.dst != referrer or m.call_id != refer.call_id or m.time < refer.time:
            continue
        if m.is_request and m.label.startswith("NOTIFY"):
            return "NOTIFY"
        if not m.is_request and m.label.startswith("202") and m.cseq == refer.cseq:
            return "202"
    return None


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "proxy"
    if mode == "proxy":
        return bench_proxy(int(sys.argv[2]) if len(sys.argv) > 2 else 400)
    if mode == "lab":
        return bench_lab(int(sys.argv[2]) if len(sys.argv) > 2 else 200)
    raise SystemExit("usage: notify_order_load.py [proxy|lab] [N]")


if __name__ == "__main__":
    sys.exit(main())
