"""The phones: SIPp processes inside the chroot, one per scenario file, on the phones' lab addresses."""

from __future__ import annotations

import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from referee_lab import chroot
from referee_lab.scenario.capture import stop
from referee_lab.scenario.model import PhoneSpec
from referee_lab.topology import Topology

PHONES_DIR = "/opt/referee-lab"  # sipp_phones__dir
REGISTER = f"{PHONES_DIR}/register.xml"


def is_uac(xml_file: Path) -> bool:
    """A SIPp scenario whose first message is sent (not received) is a client: it needs the remote host."""
    for element in ET.parse(xml_file).getroot():
        if element.tag in ("send", "recv"):
            return element.tag == "send"
    return False


def start(
    state: chroot.LabState,
    topo: Topology,
    role: str,
    scenario_file: str,
    run_dir: str,
    log: Path,
    spec: PhoneSpec | None = None,
) -> subprocess.Popen[bytes]:
    """SIPp playing ``scenario_file`` (a path inside the chroot) as the phone ``role``."""
    phone = topo.phone(role)
    name = spec.name if spec else role
    port = spec.port if spec and spec.port else phone.port
    argv = [
        "chroot",
        state.rootfs,
        "sipp",
        "-sf",
        scenario_file,
        "-inf",
        f"{PHONES_DIR}/phones/{role}.csv",
        "-i",
        phone.address,
        "-p",
        str(port),
        "-mi",
        phone.address,
        "-m",
        str(spec.calls if spec else 1),
        "-nostdin",
        "-aa",  # answer NOTIFY, INFO, OPTIONS and UPDATE the scenario does not wait for, like a phone
        "-timeout_error",
        "-trace_err",
        "-error_file",
        f"{run_dir}/{name}-errors.log",
        "-trace_msg",
        "-message_file",
        f"{run_dir}/{name}-messages.log",
    ]
    if port != phone.port:
        # Two SIPp processes on one address: keep the second one's media (RTP echo) ports apart too.
        argv += ["-mp", str(6000 + port - phone.port + 100)]
    if spec and spec.twin:
        argv += ["-3pcc", spec.twin]
    if is_uac(Path(state.rootfs) / scenario_file.lstrip("/")):
        argv.insert(3, f"{topo.proxy_address}:{topo.proxy_port}")
    with log.open("ab") as out:
        out.write(("$ " + " ".join(argv) + "\n").encode())
        out.flush()
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_all(procs: dict[str, subprocess.Popen[bytes]], timeout: float) -> set[str]:
    """Wait for every process; stop those still running after ``timeout`` and return their names.

    A SIPp stopped by a signal may exit 0 (no call failed, none succeeded either): it counts as failed.
    """
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs.values()):
        if time.monotonic() > deadline:
            late = {name for name, p in procs.items() if p.poll() is None}
            for p in procs.values():
                stop(p)
            return late
        time.sleep(0.05)
    return set()
