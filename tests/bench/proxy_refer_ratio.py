"""REFER throughput of the real Kamailio: full referee policy vs a pass-through KEMI script.

Not a timed test: one run of each, printed as a ratio (goal: 0.9 or better). Both runs use
the same rendered kamailio.cfg, allocator (``-x tlsf -m 256``: Kamailio's default allocator is
slow); only ``kamailio__kemi_script`` differs. SIPp sends out-of-dialog REFERs from phone
1002 (127.0.1.32) to the proxy (127.0.1.10), which relays them to a SIPp PBX (127.0.1.20)
that answers 202.

    make bench-proxy            # or: .venv/bin/python tests/bench/proxy_refer_ratio.py [REFERS]
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

import harness  # noqa: E402
import sippgen  # noqa: E402

CALL_LIMIT = 50  # REFERs in flight: enough to keep the proxy busy, few enough for no UDP loss
RATE = 20000  # offered REFERs per second: more than the proxy can take


def kamailio_cpu_seconds(main_pid: int) -> float:
    """User + system CPU of Kamailio's main process and its children, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    pids = [main_pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == main_pid:  # ppid
                pids.append(int(entry.name))
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def run_once(tmp: Path, script: Path, refers: int) -> tuple[float, float]:
    """REFERs per second through Kamailio running ``script``, and its CPU microseconds per REFER."""
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy(harness.POLICY, tmp / "policy.toml")
    cfg = harness.render_cfg(tmp, kamailio__kemi_script=str(script), kamailio__refer_rate=10**6)
    proxy = harness.Kamailio(tmp, cfg, shm_mb=256)
    uas_xml = harness.scenario(tmp, "pbx", sippgen.uas_refer())
    uac_xml = harness.scenario(tmp, "phone", sippgen.ood_refer("<sip:1003@lab.test>", 202))
    common = ["-p", "5060", "-nostdin", "-timeout", "120s", "-timeout_error"]
    uas = subprocess.Popen(
        [harness.SIPP, "-sf", str(uas_xml), "-i", harness.PBX1, *common],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proxy.start()
        time.sleep(0.3)
        assert proxy.proc is not None
        cpu_start = kamailio_cpu_seconds(proxy.proc.pid)
        start = time.monotonic()
        uac = subprocess.run(
            [
                *(harness.SIPP, f"{harness.PROXY}:5060", "-sf", str(uac_xml), "-i", harness.PHONES["1002"]),
                *(*common, "-m", str(refers), "-l", str(CALL_LIMIT), "-r", str(RATE)),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.monotonic() - start
        cpu = kamailio_cpu_seconds(proxy.proc.pid) - cpu_start
        retrans = re.search(r"REFER -+>\s+\d+\s+(\d+)", uac.stdout)
        retransmissions = retrans.group(1) if retrans else "?"
        print(f"  {script.name}: {refers / elapsed:.0f} REFER/s, {retransmissions} retransmissions")
        if uac.returncode != 0:
            raise RuntimeError(
                f"SIPp failed ({uac.returncode}):\n{uac.stdout[-3000:]}\n{proxy.log()[-3000:]}"
            )
    finally:
        proxy.stop()
        uas.send_signal(signal.SIGTERM)
        uas.wait(timeout=10)
    return refers / elapsed, cpu / refers * 1e6


def main() -> int:
    refers = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    with harness.exclusive(), tempfile.TemporaryDirectory(prefix="referee-bench-") as tmpdir:
        tmp = Path(tmpdir)
        baseline, baseline_cpu = run_once(tmp / "passthrough", HERE / "passthrough_kemi.py", refers)
        full, full_cpu = run_once(tmp / "referee", harness.KEMI_SCRIPT, refers)
        events = sum(1 for _ in (tmp / "referee" / "events.jsonl").open())
    print(f"REFERs per run:          {refers} (in flight: {CALL_LIMIT})")
    print(f"pass-through KEMI:       {baseline:8.0f} REFER/s   {baseline_cpu:6.0f} us Kamailio CPU per REFER")
    print(f"referee (full policy):   {full:8.0f} REFER/s   {full_cpu:6.0f} us Kamailio CPU per REFER")
    print(f"                         ({events} decision and response events logged)")
    print(f"throughput ratio referee/pass-through:  {full / baseline:.2f}")
    print(f"CPU ratio pass-through/referee:         {baseline_cpu / full_cpu:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
