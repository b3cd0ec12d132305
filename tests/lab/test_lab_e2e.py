"""End to end: the chroot lab with real Kamailio and real Asterisk 22, as `make test` runs it.

Builds or reuses the sid rootfs, provisions it twice with ansible/site.yml (the second run must report
changed=0), starts the daemons, runs the basic_call scenario, and tears everything down, checking that no
bind mount and no process is left.

Never skipped: without root, debootstrap, chroot or tcpdump the tests fail (`make test` installs them, and
CI runs as root).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from referee.lab import chroot, ladder, rootfs, scenario, services, topology
from referee.lab.services import UpReport

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]


def _prerequisites() -> None:
    if os.geteuid() != 0:
        pytest.fail(
            "the lab e2e tests need root (debootstrap, chroot, mount, tcpdump); run `make test` as root"
        )
    missing = [
        tool for tool in ("debootstrap", "chroot", "tcpdump", "mount", "umount") if not shutil.which(tool)
    ]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: `make deps` installs them")


@pytest.fixture(scope="module")
def lab() -> Iterator[object]:
    _prerequisites()

    try:
        report = services.up(topology.load(), idempotence_check=True)
        yield report
    finally:
        services.down()


def test_rootfs_has_asterisk_22_and_kamailio_6(lab: object) -> None:
    root = rootfs.rootfs_path()
    ast = subprocess.run(["chroot", str(root), "asterisk", "-V"], capture_output=True, text=True, check=True)
    kam = subprocess.run(["chroot", str(root), "kamailio", "-v"], capture_output=True, text=True, check=True)
    assert ast.stdout.startswith("Asterisk 22."), ast.stdout
    assert "kamailio 6." in kam.stdout, kam.stdout


def test_second_provisioning_changes_nothing(lab: object) -> None:
    assert isinstance(lab, UpReport)
    first, second = lab.provision
    assert first.failed == 0
    assert second.changed == 0, f"not idempotent; see {second.log}"


def test_daemons_are_listening_on_the_lab_addresses(lab: object) -> None:
    state = chroot.LabState.load()
    assert state is not None
    assert set(state.pids) == {"kamailio", "pbx1", "pbx2"}
    assert all(chroot.alive(pid) for pid in state.pids.values())
    topo = topology.load()
    bound = services._udp_bound()
    assert (topo.proxy_address, 5060) in bound
    assert {(p.address, 5060) for p in topo.pbxs} <= bound


def test_basic_call_through_kamailio_and_asterisk(lab: object) -> None:
    state = chroot.LabState.load()
    assert state is not None
    topo = topology.load()
    result = scenario.run(scenario.load(REPO / "tests" / "scenarios" / "basic_call"), state, topo)
    print(result.ladder_text)
    assert result.passed, result.error
    assert result.pcap.stat().st_size > 0
    assert result.svg.read_text().startswith("<svg")

    messages = ladder.read_pcap(result.pcap, topo.node_names())
    arrows = [(m.src, m.dst, m.label) for m in messages]
    # alice -> proxy -> pbx1 (B2BUA) -> proxy -> bob, answered, and the BYE crosses pbx1 to bob.
    assert ("alice", "proxy", "INVITE") in arrows
    assert ("proxy", "pbx1", "INVITE") in arrows
    assert ("pbx1", "proxy", "INVITE") in arrows
    assert ("proxy", "bob", "INVITE") in arrows
    assert ("bob", "proxy", "200 OK (INVITE)") in arrows
    assert ("proxy", "alice", "200 OK (INVITE)") in arrows
    assert ("alice", "proxy", "BYE") in arrows
    assert ("proxy", "bob", "BYE") in arrows
    assert ("proxy", "alice", "401 Unauthorized (REGISTER)") in arrows


def test_lab_info_json_names_topology_and_credentials() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "referee.lab", "info", "--json"], capture_output=True, text=True, check=True
    )
    info = json.loads(done.stdout)
    assert info["proxy"]["address"] == "127.0.0.10"
    assert [p["address"] for p in info["pbxs"]] == ["127.0.0.20", "127.0.0.21"]
    phones = {p["name"]: p for p in info["phones"]}
    assert phones["dave"]["user"] == "2001" and phones["dave"]["pbx"] == "pbx2"
    assert phones["alice"]["password"]
    assert info["ami"]["user"] and info["ami"]["secret"]


def test_down_leaves_no_mount_and_no_process(lab: object) -> None:
    services.down()
    services.down()  # idempotent
    root = rootfs.rootfs_path()
    assert chroot.mounts_below(root) == []
    assert chroot.processes_in(root) == []
    assert chroot.LabState.load() is None
