"""Provision the lab rootfs with the project's own playbook through the chroot connection."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from referee_lab import checkout

REPO = checkout.root()
ANSIBLE_DIR = REPO / "ansible"
PLAYBOOK = ANSIBLE_DIR / "site.yml"
LOCAL_INVENTORY = ANSIBLE_DIR / "inventories" / "local" / "hosts.yml"

_RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)
# The header ansible prints as a play or a task starts: "TASK [role : name] ****".
_STEP = re.compile(r"^(PLAY|TASK|RUNNING HANDLER) \[(.*)\] \**\s*$")
_STEP_WORDS = {"PLAY": "play", "TASK": "task", "RUNNING HANDLER": "handler"}


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


def step_of(line: str) -> str | None:
    """The progress line for an ansible output line that starts a play, a task or a handler."""
    found = _STEP.match(line)
    if found is None:
        return None
    kind, name = found.groups()
    return f"provision: {_STEP_WORDS[kind]} {name}"


def _run_streamed(
    cmd: list[str], env: dict[str, str], out: TextIO, progress: Callable[[str], None], timeout: float
) -> int:
    """Run ansible-playbook, its output into ``out``, a progress line per play/task as it starts."""
    proc = subprocess.Popen(
        cmd, cwd=ANSIBLE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    watchdog = threading.Timer(timeout, proc.kill)  # as subprocess.run(timeout=) did
    watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            step = step_of(line)
            if step is not None:
                progress(step)
        return proc.wait()
    finally:
        watchdog.cancel()


def provision(
    rootfs: Path,
    log: Path,
    limit: str | None = None,
    extra: list[str] | None = None,
    timeout: float = 900.0,
    progress: Callable[[str], None] = lambda line: None,
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
        returncode = _run_streamed(cmd, env, out, progress, timeout)
    seconds = time.monotonic() - start
    text = log.read_text()
    recap = _RECAP.findall(text)
    changed = sum(int(r[2]) for r in recap)
    unreachable = sum(int(r[3]) for r in recap)
    failed = sum(int(r[4]) for r in recap)
    if returncode != 0 or not recap:
        tail = "\n".join(text.splitlines()[-40:])
        raise RuntimeError(f"ansible-playbook failed (exit {returncode}); log {log}:\n{tail}")
    return ProvisionResult(changed, failed, unreachable, seconds, log)
