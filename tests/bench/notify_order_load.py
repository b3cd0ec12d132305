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
bob got the first NOTIFY of his REFER's subscription before the 202. A run where the NOTIFY came first
says by how much, and in which order pbx1 had sent the two to the proxy (the proxy reordered them, or
the PBX did); its capture is kept as ``notify-first-<run>.pcap`` beside the scenario's.
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
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

HOLD_TABLE = 'modparam("htable", "htable", "referee_refer=>size=10;autoexpire=60;")'
MARK_ON_SEND = ('#!define REFEREE_REFER_ANSWER_ON_SEND "1"', "onsend_route_reply=yes")
VARIANTS = {
    "as shipped (answer marked in onsend_route, 20 ms grace)": (),
    "answer marked in the onreply route (20 ms grace)": MARK_ON_SEND,
    "without the hold (before the fix)": (HOLD_TABLE,),
}


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


def proxy_run(rounds: int, removed: tuple[str, ...]) -> str:
    import harness  # noqa: PLC0415
    import notify_order  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix="referee-notify-order-"))
    try:
        shutil.copy(harness.POLICY, work / "policy.toml")
        cfg = harness.render_cfg(work, kamailio__children=4)
        text = cfg.read_text()
        for line in removed:
            assert line in text, f"the rendered cfg lacks {line!r}"
            text = text.replace(line, "")
        cfg.write_text(text)
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
    with both_cores_loaded(450):
        for label, removed in VARIANTS.items():
            print(f"proxy {label}: {proxy_run(rounds, removed)}", flush=True)
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
                messages = ladder.read_pcap(res.pcap, names)
                first = first_to_referrer(messages, "bob")
                overtaken += first == "NOTIFY"
                in_order += first == "202"
                unknown += first is None
                verdict = "PASS" if res.passed else f"FAIL ({res.error})"
                if not res.passed:  # the next run overwrites the folder: keep this one's logs and capture
                    run_dir = Path(res.pcap).parent
                    kept = run_dir.with_name(f"{run_dir.name}-failed-{i}")
                    shutil.rmtree(kept, ignore_errors=True)
                    shutil.copytree(run_dir, kept)
                    verdict += f", kept in {kept}"
                how = ""
                if first == "NOTIFY":
                    how = f" ({overtaking(messages, 'bob')})"
                    shutil.copy(res.pcap, Path(res.pcap).with_name(f"notify-first-{i}.pcap"))
                print(f"  run {i:3}: first to bob {first or 'n/a'}{how}, scenario {verdict}", flush=True)
    finally:
        report = services.down()
        print(f"lab down: stopped {len(report['stopped'])} process(es), unmounted {len(report['unmounted'])}")
    print(
        f"lab attended_transfer x{runs}: 202 first {in_order}, NOTIFY first {overtaken}, not captured {unknown}"
    )
    return 0 if overtaken == 0 and unknown == 0 else 1


def first_to_referrer(messages: list, referrer: str, proxy: str = "proxy") -> str | None:  # type: ignore[type-arg]
    """Which of the REFER's 202 and the first NOTIFY of its dialog ``proxy`` delivered to ``referrer`` first."""
    accepted, notify = on_hop(messages, referrer, proxy, referrer)
    if accepted is None and notify is None:
        return None
    if accepted is None or (notify is not None and notify.time < accepted.time):
        return "NOTIFY"
    return "202"


def on_hop(messages: list, referrer: str, src: str, dst: str) -> tuple[Any, Any]:  # type: ignore[type-arg]
    """The first 202 to ``referrer``'s first REFER and the first NOTIFY of its dialog that went ``src`` ->
    ``dst`` after the REFER (each None when not captured)."""
    from referee_lab.ladder import first_refer  # noqa: PLC0415 - the lab, as in bench_lab

    refer = first_refer(messages, referrer)
    if refer is None:
        return None, None
    hop = [m for m in messages if m.src == src and m.dst == dst and m.call_id == refer.call_id]
    hop = [m for m in hop if m.time >= refer.time]
    accepted = next(
        (m for m in hop if not m.is_request and m.label.startswith("202") and m.cseq == refer.cseq), None
    )
    notify = next((m for m in hop if m.is_request and m.label.startswith("NOTIFY")), None)
    return accepted, notify


def overtaking(messages: list, referrer: str, proxy: str = "proxy", pbx: str = "pbx1") -> str:  # type: ignore[type-arg]
    """How a NOTIFY overtook its 202 on the way to ``referrer``: by how much, and the order ``pbx`` sent them."""
    accepted, notify = on_hop(messages, referrer, proxy, referrer)
    if notify is None:
        return "no NOTIFY captured"
    lead = "no 202" if accepted is None else f"{(accepted.time - notify.time) * 1000:.1f} ms before the 202"
    sent_202, sent_notify = on_hop(messages, referrer, pbx, proxy)
    if sent_202 is None or sent_notify is None:
        return f"{lead}; {pbx}'s pair not captured"
    gap = abs(sent_notify.time - sent_202.time) * 1000
    order = "the 202 first" if sent_202.time <= sent_notify.time else "the NOTIFY first"
    return f"{lead}; {pbx} sent {order}, {gap:.1f} ms apart"


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "proxy"
    if mode == "proxy":
        return bench_proxy(int(sys.argv[2]) if len(sys.argv) > 2 else 400)
    if mode == "lab":
        return bench_lab(int(sys.argv[2]) if len(sys.argv) > 2 else 200)
    raise SystemExit("usage: notify_order_load.py [proxy|lab] [N]")


if __name__ == "__main__":
    sys.exit(main())
