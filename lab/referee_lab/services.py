"""Bring the lab up and down: rootfs, mounts, provisioning, and the daemons started by PID in the chroot."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from referee_lab import chroot, database, hosts, provision, rootfs
from referee_lab.scenario import proxy_log
from referee_lab.topology import Topology

REPO = provision.REPO
WORK_DIR = REPO / "var" / "lab"
LOG_DIR = WORK_DIR / "logs"


@dataclass(frozen=True)
class Instance:
    """One Asterisk instance of the rootfs (the directories match the inventory's asterisk__* variables)."""

    name: str
    config_dir: str
    run_dir: str


ASTERISKS = (
    Instance("pbx1", "/etc/asterisk", "/run/asterisk"),
    Instance("pbx2", "/etc/asterisk-pbx2", "/run/asterisk-pbx2"),
)
KAMAILIO_RUN_DIR = "/run/kamailio"
POLICY_FILE = "/etc/referee/policy.toml"  # referee__policy_file
FASTAGI_METRICS_PORT = (
    9101  # each FastAGI's Prometheus /metrics, on its PBX's address (tests/lab/test_metrics.py)
)


@dataclass
class UpReport:
    rootfs: Path
    rootfs_built: bool
    rootfs_seconds: float
    provision: list[provision.ProvisionResult] = field(default_factory=list)
    start_seconds: float = 0.0


def say(line: str) -> None:
    """A progress line, shown at once also when stdout is a pipe (make, CI logs)."""
    print(line, flush=True)


def in_root(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def chroot_run(root: Path, *argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chroot", str(root), *argv], capture_output=True, text=True, timeout=timeout, check=False
    )


def prepare(log: Callable[[str], None] = say) -> tuple[chroot.LabState, rootfs.RootfsInfo]:
    """Build or reuse the rootfs and mount it (any leftover of an earlier lab is torn down first)."""
    info = rootfs.ensure_rootfs(log=WORK_DIR / "debootstrap.log", progress=log)
    if info.built:
        log(f"rootfs: {info.path} built in {info.seconds:.0f} s")
    _teardown(info.path)
    state = chroot.LabState(str(info.path))
    state.save()
    log("rootfs: mounting /proc, /dev, /dev/pts and a fresh /run in the chroot")
    chroot.mount_all(info.path)
    if changed := rootfs.resolve_locally(info.path, socket.gethostname()):
        log(f"rootfs: {' and '.join(changed)}: the host name resolved locally, DNS given up after 1 s")
    return state, info


def start_services(
    state: chroot.LabState, topo: Topology, log: Callable[[str], None] = lambda line: None
) -> None:
    root = Path(state.rootfs)
    for d in (KAMAILIO_RUN_DIR, "/run/referee-lab", *(a.run_dir for a in ASTERISKS)):
        in_root(root, d).mkdir(parents=True, exist_ok=True)
    for a in ASTERISKS:
        chroot_run(root, "chown", "asterisk:asterisk", a.run_dir)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    transports = "+".join(topo.proxy_transports)
    log(f"start: kamailio, proxy {topo.proxy_address}:{topo.proxy_port} ({transports})")
    _start_kamailio(state)
    addresses = {p.name: f"{p.address}:{p.sip_port}" for p in topo.pbxs}
    for a in ASTERISKS:
        log(f"start: asterisk {a.name}, sip {addresses.get(a.name, '?')}")
        _start_asterisk(state, a)
    for pbx in topo.pbxs:
        log(f"start: fastagi-{pbx.name}, agi {pbx.address}:{pbx.agi_port}")
        _start_fastagi(state, topo, pbx.name)
        # The referee role's policy push sends it SIGHUP through this (referee__fastagi_reload_command);
        # chroot execs the daemon, so the PID is the same inside the rootfs (/run is the lab's own tmpfs).
        pidfile = in_root(root, f"/run/referee-lab/fastagi-{pbx.name}.pid")
        pidfile.write_text(f"{state.pids[f'fastagi-{pbx.name}']}\n")
    log("start: waiting for the Asterisks to boot and every SIP and AGI port to listen")
    for a in ASTERISKS:
        _wait_booted(root, a)
    _wait_listening(topo)
    # The audit trail of a real site: the proxy host's ingest and each PBX host's orchestrator, all
    # writing to one PostgreSQL (docs/audit-across-hosts.md).
    log(f"start: audit database, PostgreSQL {database.HOST}:{database.PORT}")
    database.start(state)
    log("start: audit ingest of the proxy's event file, one orchestrator per PBX")
    hosts.start(state, topo, proxy_log.path_in(root))


def _start_fastagi(state: chroot.LabState, topo: Topology, name: str) -> int:
    """The FastAGI transfer guard of one PBX (the referee role's daemon; systemd runs it outside the lab)."""
    pbx = next(p for p in topo.pbxs if p.name == name)
    return chroot.start_daemon(
        state,
        f"fastagi-{pbx.name}",
        [
            "/usr/local/bin/referee",  # the referee role's virtualenv, /opt/referee
            "fastagi",
            "--listen",
            pbx.address,
            "--port",
            str(pbx.agi_port),
            "--policy",
            POLICY_FILE,
            "--domain",
            topo.domain,
            "--metrics-listen",
            f"{pbx.address}:{FASTAGI_METRICS_PORT}",
        ],
        LOG_DIR / f"fastagi-{pbx.name}.log",
    )


def stop_fastagi(name: str, state: chroot.LabState) -> None:
    """Stop a PBX's FastAGI guard (SIGTERM by its PID): its dialplan falls back to the process AGI."""
    pid = state.pids.get(f"fastagi-{name}")
    if pid is not None:
        chroot.stop_pids([pid])


def start_fastagi(name: str, topo: Topology, state: chroot.LabState) -> int:
    """Start a PBX's FastAGI guard again and wait until it listens; its new PID."""
    pid = _start_fastagi(state, topo, name)
    _wait_listening(topo)
    return pid


def _start_kamailio(state: chroot.LabState) -> None:
    # A SIGKILLed proxy leaves its control socket behind: it must not pass for the new one's.
    in_root(Path(state.rootfs), f"{KAMAILIO_RUN_DIR}/kamailio_ctl").unlink(missing_ok=True)
    chroot.start_daemon(
        state,
        "kamailio",
        [
            "kamailio",
            "-DD",
            "-E",
            "-f",
            "/etc/kamailio/kamailio.cfg",
            "-P",
            f"{KAMAILIO_RUN_DIR}/kamailio.pid",
        ],
        LOG_DIR / "kamailio.log",
        ready=Path(KAMAILIO_RUN_DIR) / "kamailio_ctl",
    )


def _start_asterisk(state: chroot.LabState, a: Instance) -> None:
    in_root(Path(state.rootfs), f"{a.run_dir}/asterisk.ctl").unlink(missing_ok=True)
    chroot.start_daemon(
        state,
        a.name,
        ["asterisk", "-f", "-n", "-C", f"{a.config_dir}/asterisk.conf"],
        LOG_DIR / f"{a.name}.log",
        ready=Path(a.run_dir) / "asterisk.ctl",
    )


def _wait_booted(root: Path, a: Instance) -> None:
    done = chroot_run(root, "asterisk", "-C", f"{a.config_dir}/asterisk.conf", "-rx", "core waitfullybooted")
    if done.returncode != 0:
        raise RuntimeError(f"{a.name} did not finish booting: {done.stdout}{done.stderr}")


# The nodes a user can kill and restart, and the daemon (state file name) of each.
NODES = {"proxy": "kamailio", **{a.name: a.name for a in ASTERISKS}}


def _running_state(node: str, state: chroot.LabState | None = None) -> chroot.LabState:
    """The lab's state: ``state`` when given (a scenario run's own, so that the run saves the new PIDs
    too), else the state file's."""
    if node not in NODES:
        raise ValueError(f"no node {node!r}: one of {', '.join(NODES)}")
    state = state or chroot.LabState.load()
    if state is None:
        raise RuntimeError("the lab is not up (referee lab up)")
    return state


def running(node: str, state: chroot.LabState | None = None) -> bool:
    """Whether the node's daemon is alive."""
    pid = _running_state(node, state).pids.get(NODES[node])
    return pid is not None and chroot.alive(pid)


def kill(node: str, state: chroot.LabState | None = None) -> int | None:
    """SIGKILL a node's daemon and everything of its process group (Kamailio's workers): a crash,
    no shutdown. The PID killed, None when it was not running."""
    state = _running_state(node, state)
    pid = state.pids.get(NODES[node])
    if pid is None or not chroot.alive(pid):
        return None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # start_daemon made it a session (and group) leader
    deadline = time.monotonic() + 5
    while chroot.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid


def start(node: str, topo: Topology, state: chroot.LabState | None = None) -> int:
    """Start a node's daemon again (after kill or stop) and wait until it listens; its new PID."""
    state = _running_state(node, state)
    pid = state.pids.get(NODES[node])
    if pid is not None and chroot.alive(pid):
        raise RuntimeError(f"{node} is running (pid {pid})")
    if node == "proxy":
        _start_kamailio(state)
    else:
        instance = next(a for a in ASTERISKS if a.name == node)
        _start_asterisk(state, instance)
        _wait_booted(Path(state.rootfs), instance)
    _wait_listening(topo)
    return state.pids[NODES[node]]


def restart(node: str, topo: Topology, *, hard: bool = False, state: chroot.LabState | None = None) -> int:
    """Stop a node (SIGTERM, a graceful shutdown; SIGKILL with ``hard``) and start it again."""
    state = _running_state(node, state)
    if hard:
        kill(node, state)
    else:
        pid = state.pids.get(NODES[node])
        if pid is not None:
            chroot.stop_pids([pid])
    return start(node, topo, state)


def _wait_listening(topo: Topology, timeout: float = 15.0) -> None:
    """Wait until the proxy and the PBXs have bound their SIP (UDP) ports and the FastAGI guards theirs."""
    want_udp = {(topo.proxy_address, topo.proxy_port), *((p.address, p.sip_port) for p in topo.pbxs)}
    want_tcp = {(p.address, p.agi_port) for p in topo.pbxs}
    deadline = time.monotonic() + timeout
    while True:
        missing = (want_udp - _udp_bound()) | (want_tcp - _tcp_listening())
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"not listening after {timeout:.0f}s: {sorted(missing)}")
        time.sleep(0.2)


def _sockets(table: str, state: str | None = None) -> set[tuple[str, int]]:
    """Local (address, port) of the IPv4 sockets in /proc/net/<table>, optionally in one TCP state."""
    found = set()
    for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
        fields = line.split()
        if state is not None and fields[3] != state:
            continue
        hexip, hexport = fields[1].split(":")
        octets = [str(int(hexip[i : i + 2], 16)) for i in (6, 4, 2, 0)]
        found.add((".".join(octets), int(hexport, 16)))
    return found


def _udp_bound() -> set[tuple[str, int]]:
    return _sockets("udp")


def _tcp_listening() -> set[tuple[str, int]]:
    return _sockets("tcp", "0A")


def up(topo: Topology, log: Callable[[str], None] = say, idempotence_check: bool = False) -> UpReport:
    """rootfs, mounts, provisioning and daemons. On any failure everything is torn down again."""
    ok = False
    try:
        state, info = prepare(log)
        report = UpReport(info.path, info.built, info.seconds)
        runs = 2 if idempotence_check else 1
        for i in range(runs):
            path = WORK_DIR / f"provision-{i + 1}.log"
            log(f"provision run {i + 1}: ansible-playbook site.yml, log {path}")
            res = provision.provision(info.path, path, progress=log)
            report.provision.append(res)
            log(f"provision run {i + 1}: changed={res.changed} failed={res.failed} in {res.seconds:.0f} s")
        start = time.monotonic()
        start_services(state, topo, log)
        report.start_seconds = time.monotonic() - start
        log(
            "services: "
            + ", ".join(f"{name} pid {pid}" for name, pid in state.pids.items())
            + f" (started in {report.start_seconds:.1f} s)"
        )
        ok = True
        return report
    finally:
        if not ok:
            down()


def down() -> dict[str, list[str]]:
    """Stop everything and unmount; idempotent. The audit writers go before their database, and the
    database by a fast shutdown that ends its backends (a SIGKILLed postmaster would leave them)."""
    root = rootfs.rootfs_path()
    return _teardown(root if root.exists() else None)


def _teardown(root: Path | None) -> dict[str, list[str]]:
    state = chroot.LabState.load()
    hosts.stop(state)
    database.stop(state)
    return chroot.teardown(root)
