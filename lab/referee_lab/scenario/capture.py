"""tcpdump on lo for one run: the SIP between lab nodes, read back as a ladder."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
from pathlib import Path

from referee_lab.topology import Topology


def capture_filter(topo: Topology) -> str:
    """SIP between lab nodes only (other tests on this machine may use other loopback addresses)."""
    hosts = " or ".join(f"host {a}" for a in topo.node_names())
    return f"port 5060 and ({hosts})"


def start(pcap: Path, log: Path, bpf: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        # --immediate-mode: without it libpcap hands packets over a buffer block at a time, and the last
        # block (the final BYEs) could still be in the kernel when tcpdump is stopped.
        # -B: a 32 MiB ring (libpcap's default is 2 MiB). With both cores busy (the NOTIFY-order benchmark's
        # stress-ng), tcpdump was not scheduled in time, the kernel dropped 20 packets of 238, among them a
        # REFER, and the run failed its checks ("no REFER captured") while every phone had passed.
        command = ["tcpdump", "-i", "lo", "-n", "-s", "0", "-B", "32768", "-U", "--immediate-mode"]
        proc = subprocess.Popen(
            [*command, "-w", str(pcap), bpf],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 10
    while b"listening on" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"tcpdump did not start: {log.read_text(errors='replace')}")
        time.sleep(0.05)
    return proc


_DROPPED = re.compile(rb"^(\d+) packets? dropped by kernel", re.M)


def dropped(log: Path) -> int:
    """Packets the kernel dropped before tcpdump read them, from the summary tcpdump writes as it stops."""
    found = _DROPPED.search(log.read_bytes()) if log.exists() else None
    return int(found[1]) if found else 0


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
    """Stop one process of the run by its PID (tcpdump takes SIGINT to flush its file)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
