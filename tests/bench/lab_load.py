"""Transfers under sustained load in the lab (``make bench-lab``): RATE transfers per second for SECONDS,
half blind (pbx2), half attended (pbx1), SIPp phones authenticating to the proxy (referee_lab.load).

Prints, per rate: transfers placed / completed / failed, REFER -> NOTIFY 200 p50/p99 (from a capture of the
REFERs and NOTIFYs between the proxy and the referrers), the audit (one final record per REFER, none
stuck), SIPp's own counters and the CPU of Kamailio, each Asterisk, the FastAGI guards and SIPp (from
/proc/PID/stat). Goal: 0 failures, p99 <= 50 ms. When the first rate fails, a short ladder of lower rates
(LADDER, LADDER_SECONDS each) finds the highest one with no failure; it stops at the first clean one.

The lab has four phones, so all REFERs come from two addresses: the proxy's per-address REFER limit
(pike, 16 per 2 s) would refuse them. For the run the proxy is restarted with REFER_LIMIT instead, and the
lab's own file is put back before the lab goes down. Brings the lab up (or reuses it), always takes it down.
Root; hold /tmp/referee-net.lock (the Makefile does).

    .venv/bin/python tests/bench/lab_load.py [--rate 20] [--seconds 300] [--ladder 15,10,5]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from lab_attended_latency import lab_up

from referee_lab import chroot, services, topology
from referee_lab.load import run_step
from referee_lab.load_figures import StepFigures, report

KAMAILIO_CFG = "etc/kamailio/kamailio.cfg"  # in the rootfs
PIKE_LINE = 'modparam("pike", "reqs_density_per_unit", '
MAX_LADDER = 4  # lower rates tried at most
MAX_SECONDS = 600  # one step's duration at most


def with_refer_limit(cfg: str, limit: int) -> str:
    """The kamailio.cfg text with pike's per-address density set to ``limit``."""
    lines = cfg.splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.startswith(PIKE_LINE)]
    if len(hits) != 1:
        raise ValueError(f"expected one {PIKE_LINE!r} line in kamailio.cfg, found {len(hits)}")
    lines[hits[0]] = f"{PIKE_LINE}{limit})\n"
    return "".join(lines)


def ladder_rates(first: float, asked: list[float]) -> list[float]:
    """The lower rates to try after ``first`` failed: below it, highest first, at most MAX_LADDER."""
    return sorted({r for r in asked if 0 < r < first}, reverse=True)[:MAX_LADDER]


def parse(args: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=20.0, help="transfers per second (default 20)")
    p.add_argument("--seconds", type=float, default=300.0, help="duration of the first rate (default 300)")
    p.add_argument("--ladder", default="15,10,5", help="lower rates tried if the first fails (comma list)")
    p.add_argument("--ladder-seconds", type=float, default=60.0, help="duration of each lower rate")
    p.add_argument(
        "--refer-limit", type=int, default=1000, help="pike REFERs per address per 2 s for the run"
    )
    ns = p.parse_args(args)
    if not 0 < ns.seconds <= MAX_SECONDS or not 0 < ns.ladder_seconds <= MAX_SECONDS:
        p.error(f"durations must be in (0, {MAX_SECONDS}] s")
    ns.ladder = [float(r) for r in ns.ladder.split(",") if r.strip()]
    return ns


def main() -> int:
    if os.geteuid() != 0:
        raise SystemExit("lab_load: needs root (the lab)")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    ns = parse(sys.argv[1:])
    topo = topology.load()
    steps: list[StepFigures] = []
    cfg: Path | None = None
    original = ""
    try:
        state = lab_up(topo)
        if state is None:
            print("lab_load: the lab did not come up", file=sys.stderr)
            return 1
        cfg = Path(state.rootfs) / KAMAILIO_CFG
        original = cfg.read_text()
        cfg.write_text(with_refer_limit(original, ns.refer_limit))
        services.restart("proxy", topo, state=state)
        print(f"proxy restarted with pike {ns.refer_limit} REFERs per address per 2 s")
        for rate, seconds in [
            (ns.rate, ns.seconds),
            *((r, ns.ladder_seconds) for r in ladder_rates(ns.rate, ns.ladder)),
        ]:
            print(
                f"\n=== {rate:g} transfers/s for {seconds:g} s (half blind on pbx2, half attended on pbx1)",
                flush=True,
            )
            step = run_step(state, topo, rate, seconds)
            steps.append(step)
            print("\n".join(report(step)), flush=True)
            if step.clean:
                break
    finally:
        if cfg is not None and original:
            cfg.write_text(original)
        down = services.down()
        print(f"lab down: stopped {len(down['stopped'])} process(es), unmounted {len(down['unmounted'])}")
        leftover = chroot.LabState.load()
        if leftover is not None:
            print("lab_load: the lab state file is still there", file=sys.stderr)
    clean = [s.rate for s in steps if s.clean]
    print(f"\nhighest rate with 0 failures: {max(clean):g}/s" if clean else "\nno rate ran without failures")
    return 0 if steps and steps[0].clean else 1


if __name__ == "__main__":
    sys.exit(main())
