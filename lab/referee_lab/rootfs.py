"""Build or reuse the lab's Debian sid rootfs.

The rootfs is built by debootstrap into a temporary directory next to the cache entry and renamed into place
only when the build and its post-steps succeeded, so a half-built tree is never reused. The cache key is the
suite plus the package list: changing either builds a new rootfs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SUITE = "sid"
MIRROR = os.environ.get("REFEREE_LAB_MIRROR", "http://deb.debian.org/debian")
DEFAULT_CACHE = Path(os.environ.get("REFEREE_LAB_CACHE", "/var/cache/referee-lab"))

# Everything the playbook installs is already here: provisioning needs no network, a 2nd run is a no-op.
PACKAGES: tuple[str, ...] = (
    "asterisk",
    "asterisk-modules",
    "asterisk-config",
    "kamailio",
    "kamailio-python3-modules",
    "sip-tester",
    "python3",
    "python3-apt",
    "python3-jinja2",
    "python3-panoramisk",
    "python3-venv",  # the referee role's virtualenv
)

STAMP = "etc/referee-lab-rootfs"

# Keep daemons from being started by package scripts inside the chroot: the lab runner starts them.
POLICY_RC_D = (
    "#!/bin/sh\n# referee lab: services are started by the lab runner, not by package scripts\nexit 101\n"
)


@dataclass(frozen=True)
class RootfsInfo:
    path: Path
    built: bool
    seconds: float


def cache_key(packages: tuple[str, ...] = PACKAGES, suite: str = SUITE) -> str:
    digest = hashlib.sha256((suite + "\n" + "\n".join(sorted(packages))).encode()).hexdigest()[:12]
    return f"{suite}-{digest}"


def rootfs_path(cache: Path = DEFAULT_CACHE) -> Path:
    return cache / f"rootfs-{cache_key()}"


def is_complete(path: Path) -> bool:
    stamp = path / STAMP
    return stamp.is_file() and stamp.read_text().splitlines()[:1] == [cache_key()]


def ensure_rootfs(
    cache: Path = DEFAULT_CACHE, log: Path | None = None, progress: Callable[[str], None] = lambda line: None
) -> RootfsInfo:
    """Return the cached rootfs, building it first when there is none."""
    target = rootfs_path(cache)
    if is_complete(target):
        progress(f"rootfs: reusing {target} (cache key {cache_key()})")
        _link_current(cache, target)
        return RootfsInfo(target, built=False, seconds=0.0)
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed (make deps installs it)")
    if os.geteuid() != 0:
        raise RuntimeError("building the lab rootfs needs root (debootstrap, chroot)")
    cache.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-", dir=cache))
    tmp.chmod(0o755)  # mkdtemp makes it 0700: the chroot's / must be traversable by its daemons' users
    try:
        cmd = [
            "debootstrap",
            "--variant=minbase",
            "--include=" + ",".join(PACKAGES),
            SUITE,
            str(tmp),
            MIRROR,
        ]
        logfile = log or cache / "debootstrap.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)
        progress(f"rootfs: building {target} (cache key {cache_key()}) with debootstrap, log {logfile}")
        with logfile.open("w") as out:
            subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT, timeout=1800)
        progress("rootfs: debootstrap done, finishing the tree")
        _post_build(tmp)
        if target.exists():  # an incomplete tree from an older layout: replace it
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _link_current(cache, target)
    return RootfsInfo(target, built=True, seconds=time.monotonic() - start)


def _link_current(cache: Path, target: Path) -> None:
    """``<cache>/rootfs`` points at the current rootfs (the local inventory's default ansible_host)."""
    link = cache / "rootfs"
    if link.is_symlink() and os.readlink(link) == target.name:
        return
    tmp = cache / "rootfs.link-tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(target.name)
    tmp.replace(link)


def _post_build(root: Path) -> None:
    resolv = root / "etc/resolv.conf"
    # for apt inside the chroot, should a role ever need a package the rootfs lacks
    if not resolv.exists() and Path("/etc/resolv.conf").is_file():
        shutil.copy2("/etc/resolv.conf", resolv)
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text(POLICY_RC_D)
    policy.chmod(0o755)
    # debootstrap leaves its own apt cache; the lab never needs it again.
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    (root / STAMP).write_text(cache_key() + "\n" + "\n".join(PACKAGES) + "\n")


LAB_RESOLVER_OPTIONS = "options timeout:1 attempts:1"


def resolve_locally(root: Path, hostname: str) -> list[str]:
    """Keep the chroot's daemons off DNS they cannot reach (only loopback here): the host's name (the chroot
    shares it) in the rootfs's /etc/hosts, and a resolver that gives up after 1 s, not 5 s x 2. Without
    them Asterisk looked up the host name and A.ROOT-SERVERS.NET while setting up call legs and stalled
    5 s at a time: the proxy's INVITEs timed out (408), the PBX was marked down, calls failed in batches
    (docs/benchmarks.md, "Transfers under sustained load"). Idempotent; the files changed."""
    changed = []
    hosts = root / "etc/hosts"
    lines = hosts.read_text().splitlines() if hosts.exists() else ["127.0.0.1\tlocalhost"]
    if not any(hostname in line.split()[1:] for line in lines if line.strip() and not line.startswith("#")):
        hosts.write_text("\n".join([*lines, f"127.0.1.1\t{hostname}"]) + "\n")
        changed.append("/etc/hosts")
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink():
        resolv.unlink()
    text = resolv.read_text() if resolv.exists() else ""
    if LAB_RESOLVER_OPTIONS not in text.splitlines():
        resolv.write_text(
            text + ("" if text.endswith("\n") or not text else "\n") + LAB_RESOLVER_OPTIONS + "\n"
        )
        changed.append("/etc/resolv.conf")
    return changed
