"""The lab, brought up once for the tests/lab package and shared by its modules.

Teardown is a test of its own: `services.down()` must leave no bind mount, no process in the chroot and
no state file, and a second `down()` must be harmless. A failure there is reported as an error of the last
lab test, so CI fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from referee_lab import chroot, database, rootfs, services, topology
from referee_lab.services import UpReport


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


@pytest.fixture(scope="package")
def lab() -> Iterator[object]:
    _prerequisites()

    try:
        report: UpReport = services.up(topology.load(), idempotence_check=True)
        yield report
    finally:
        services.down()
    services.down()  # idempotent
    root = rootfs.rootfs_path()
    assert chroot.mounts_below(root) == [], "lab down left bind mounts"
    assert chroot.processes_in(root) == [], "lab down left processes in the chroot"
    assert chroot.LabState.load() is None, "lab down left its state file"
    assert database.running() == [], "lab down left PostgreSQL processes"
    assert not database.CLUSTER_DIR.exists(), "lab down left the audit database's cluster"
