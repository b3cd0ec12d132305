"""`referee lab up` says what it does as each step starts: rootfs, each ansible play and task, each daemon.

Root-free: a fake ansible-playbook, a rootfs that is only a stamp file, daemons that are not started.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from referee_lab import chroot, provision, rootfs, services, topology

# Prints a play and its tasks as ansible does; after a task it waits (a few seconds at most) for the
# file the progress callback creates on that task's line: it exits 1 unless lines reach us as they come.
FAKE_ANSIBLE = """#!{python}
import pathlib, sys, time
seen = pathlib.Path({seen!r})
def say(line):
    print(line, flush=True)
def wait_for(name):
    deadline = time.monotonic() + 5
    while not (seen / name).exists():
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.01)
say("")
say("PLAY [proxy: Kamailio with the referee KEMI script] ******************")
say("")
say("TASK [Gathering Facts] ************************************************")
wait_for("Gathering Facts")
say("ok: [proxy]")
say("")
say("TASK [kamailio : Install the Kamailio packages] ***********************")
wait_for("kamailio : Install the Kamailio packages")
say("changed: [proxy]")
say("")
say("RUNNING HANDLER [kamailio : Restart kamailio] *************************")
say("")
say("PLAY RECAP ************************************************************")
say("proxy                      : ok=2    changed=1    unreachable=0    failed=0    skipped=0")
"""


@pytest.fixture
def fake_ansible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    seen = tmp_path / "seen"
    seen.mkdir()
    script = tmp_path / "ansible-playbook"
    script.write_text(FAKE_ANSIBLE.format(python=sys.executable, seen=str(seen)))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(provision, "ansible_bin", lambda name: str(script))
    return seen


def recorder(seen: Path, lines: list[str]) -> Callable[[str], None]:
    """A progress callback that keeps the lines and marks each task it was told about."""

    def progress(line: str) -> None:
        lines.append(line)
        if line.startswith("provision: task "):
            (seen / line.removeprefix("provision: task ")).touch()

    return progress


def test_provision_reports_each_play_and_task_while_ansible_runs(tmp_path: Path, fake_ansible: Path) -> None:
    lines: list[str] = []
    log = tmp_path / "provision.log"
    result = provision.provision(tmp_path / "rootfs", log, progress=recorder(fake_ansible, lines))
    assert lines == [
        "provision: play proxy: Kamailio with the referee KEMI script",
        "provision: task Gathering Facts",
        "provision: task kamailio : Install the Kamailio packages",
        "provision: handler kamailio : Restart kamailio",
    ]
    assert (result.changed, result.failed) == (1, 0)
    assert "changed: [proxy]" in log.read_text()  # the whole output still goes to the log


def test_provision_fails_when_ansible_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provision, "ansible_bin", lambda name: "/bin/false")
    with pytest.raises(RuntimeError, match="exit 1"):
        provision.provision(tmp_path / "rootfs", tmp_path / "provision.log")


def _cached_rootfs(cache: Path) -> Path:
    target = cache / f"rootfs-{rootfs.cache_key()}"
    (target / "etc").mkdir(parents=True)
    (target / rootfs.STAMP).write_text(rootfs.cache_key() + "\n")
    return target


def test_lab_up_prints_a_line_per_step_as_it_starts(
    tmp_path: Path, fake_ansible: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    target = _cached_rootfs(cache)
    real_ensure = rootfs.ensure_rootfs
    monkeypatch.setattr(rootfs, "ensure_rootfs", lambda **kw: real_ensure(cache, **kw))
    monkeypatch.setattr(chroot, "STATE_DIR", tmp_path / "state")
    monkeypatch.setattr(chroot, "STATE_FILE", tmp_path / "state" / "state.json")
    monkeypatch.setattr(chroot, "teardown", lambda root=None: {"stopped": [], "unmounted": []})
    monkeypatch.setattr(chroot, "mount_all", lambda root: None)
    monkeypatch.setattr(rootfs, "resolve_locally", lambda root, hostname: [])
    monkeypatch.setattr(services, "WORK_DIR", tmp_path / "work")
    monkeypatch.setattr(services, "LOG_DIR", tmp_path / "work" / "logs")
    monkeypatch.setattr(services, "chroot_run", lambda *a, **kw: None)
    monkeypatch.setattr(services, "_wait_booted", lambda root, a: None)
    monkeypatch.setattr(services, "_wait_listening", lambda topo: None)
    # Never the real PostgreSQL, ingest or orchestrators (nor their teardown: a lab may be up beside this test).
    monkeypatch.setattr(services.database, "start", lambda state: lines.append("(started database)") or 0)
    monkeypatch.setattr(services.database, "stop", lambda state: None)
    monkeypatch.setattr(services.hosts, "start", lambda state, topo, events: lines.append("(started hosts)"))
    monkeypatch.setattr(services.hosts, "stop", lambda state: None)
    started: list[str] = []

    def start_daemon(state: chroot.LabState, name: str, *args: object, **kw: object) -> int:
        started.append(name)
        lines.append(f"(started {name})")
        state.pids[name] = 4000 + len(started)
        return state.pids[name]

    monkeypatch.setattr(chroot, "start_daemon", start_daemon)
    lines: list[str] = []
    topo = topology.load()
    services.up(topo, log=recorder(fake_ansible, lines))

    key = rootfs.cache_key()
    proxy = f"{topo.proxy_address}:{topo.proxy_port}"
    pbx1, pbx2 = topo.pbxs
    assert lines[0] == f"rootfs: reusing {target} (cache key {key})"
    assert lines[1].startswith("rootfs: mounting ")
    assert (
        lines[2] == f"provision run 1: ansible-playbook site.yml, log {tmp_path / 'work' / 'provision-1.log'}"
    )
    assert lines[3:7] == [
        "provision: play proxy: Kamailio with the referee KEMI script",
        "provision: task Gathering Facts",
        "provision: task kamailio : Install the Kamailio packages",
        "provision: handler kamailio : Restart kamailio",
    ]
    assert lines[7].startswith("provision run 1: changed=1 failed=0")
    # Each daemon's line comes before it is started, with its address.
    assert lines[8:16] == [
        f"start: kamailio, proxy {proxy} ({'+'.join(topo.proxy_transports)})",
        "(started kamailio)",
        f"start: asterisk pbx1, sip {pbx1.address}:{pbx1.sip_port}",
        "(started pbx1)",
        f"start: asterisk pbx2, sip {pbx2.address}:{pbx2.sip_port}",
        "(started pbx2)",
        f"start: fastagi-pbx1, agi {pbx1.address}:{pbx1.agi_port}",
        "(started fastagi-pbx1)",
    ]
    assert lines[16:18] == [
        f"start: fastagi-pbx2, agi {pbx2.address}:{pbx2.agi_port}",
        "(started fastagi-pbx2)",
    ]
    assert lines[18].startswith("start: waiting for ")
    assert lines[19:23] == [
        "start: audit database, PostgreSQL 127.0.0.12:5432",
        "(started database)",
        "start: audit ingest of the proxy's event file, one orchestrator per PBX",
        "(started hosts)",
    ]
    assert lines[23].startswith("services: kamailio pid 4001, pbx1 pid 4002")
    assert len(lines) == 24


def test_rootfs_build_is_announced_before_debootstrap_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []

    def debootstrap(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        lines.append("(debootstrap)")
        tree = Path(cmd[-2])
        for sub in ("etc", "usr/sbin", "var/cache/apt/archives"):
            (tree / sub).mkdir(parents=True, exist_ok=True)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(rootfs.shutil, "which", lambda name: "/usr/sbin/debootstrap")
    monkeypatch.setattr(rootfs.os, "geteuid", lambda: 0)
    monkeypatch.setattr(rootfs.subprocess, "run", debootstrap)
    info = rootfs.ensure_rootfs(tmp_path, log=tmp_path / "debootstrap.log", progress=lines.append)
    key = rootfs.cache_key()
    assert info.built
    assert lines == [
        f"rootfs: building {tmp_path / f'rootfs-{key}'} (cache key {key}) with debootstrap, "
        f"log {tmp_path / 'debootstrap.log'}",
        "(debootstrap)",
        "rootfs: debootstrap done, finishing the tree",
    ]


def test_the_chroot_resolves_the_host_name_locally_and_gives_dns_up_quickly(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "hosts").write_text("127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost\n")
    (etc / "resolv.conf").write_text("nameserver 10.255.255.53\n")
    assert rootfs.resolve_locally(tmp_path, "vm") == ["/etc/hosts", "/etc/resolv.conf"]
    assert "127.0.1.1\tvm" in (etc / "hosts").read_text().splitlines()
    assert (etc / "resolv.conf").read_text() == "nameserver 10.255.255.53\noptions timeout:1 attempts:1\n"
    assert rootfs.resolve_locally(tmp_path, "vm") == []  # the second lab up changes nothing
    assert rootfs.resolve_locally(tmp_path, "localhost") == []  # already there
