"""Provision the lab rootfs with the project's own playbook through the chroot connection."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from referee_lab import checkout

REPO = checkout.root()
ANSIBLE_DIR = REPO / "ansible"
PLAYBOOK = ANSIBLE_DIR / "site.yml"
LOCAL_INVENTORY = ANSIBLE_DIR / "inventories" / "local" / "hosts.yml"

_RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


@dataclass(frozen=True)
class ProvisionResult:
    changed: int
    failed: int
    unreachable: int
    seconds: float
    log: Path


def ansible_bin(name: str) -> str:
    """The ansible executable next to the running interpreter (the venv), else from PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def provision(
    rootfs: Path,
    log: Path,
    limit: str | None = None,
    extra: list[str] | None = None,
    timeout: float = 900.0,
) -> ProvisionResult:
    env = dict(os.environ)
    env["REFEREE_LAB_ROOTFS"] = str(rootfs)
    env["ANSIBLE_CONFIG"] = str(ANSIBLE_DIR / "ansible.cfg")
    env.setdefault("ANSIBLE_NOCOLOR", "1")
    env.setdefault("ANSIBLE_FORCE_COLOR", "0")
    cmd = [ansible_bin("ansible-playbook"), "-i", str(LOCAL_INVENTORY), str(PLAYBOOK)]
    if limit:
        cmd += ["--limit", limit]
    cmd += extra or []
    start = time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.run(
            cmd, cwd=ANSIBLE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, check=False, timeout=timeout
        )
    seconds = time.monotonic() - start
    text = log.read_text()
    recap = _RECAP.findall(text)
    changed = sum(int(r[2]) for r in recap)
    unreachable = sum(int(r[3]) for r in recap)
    failed = sum(int(r[4]) for r in recap)
    if proc.returncode != 0 or not recap:
        tail = "\n".join(text.splitlines()[-40:])
        raise RuntimeError(f"ansible-playbook failed (exit {proc.returncode}); log {log}:\n{tail}")
    return ProvisionResult(changed, failed, unreachable, seconds, log)
