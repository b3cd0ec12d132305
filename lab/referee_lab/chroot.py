"""Chroot mounts and daemons of the lab, with a teardown that always leaves the host clean.

Everything the lab starts is recorded in a state file (PIDs and the rootfs). ``teardown`` is idempotent: it
stops the recorded PIDs, then any process still running with its root inside the rootfs (those were started by
the lab, directly or by its daemons), then unmounts everything mounted below the rootfs, deepest first.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_DIR = Path(os.environ.get("REFEREE_LAB_STATE", "/run/referee-lab"))
STATE_FILE = STATE_DIR / "state.json"

# (source, target inside the rootfs, mount arguments)
MOUNTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("proc", "proc", ("-t", "proc")),
    ("/dev", "dev", ("--bind",)),
    ("devpts", "dev/pts", ("-t", "devpts", "-o", "newinstance,ptmxmode=0666")),
    ("tmpfs", "run", ("-t", "tmpfs", "-o", "mode=0755")),
)


@dataclass
class LabState:
    rootfs: str
    pids: dict[str, int] = field(default_factory=dict)

    def save(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = STATE_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps({"rootfs": self.rootfs, "pids": self.pids}, indent=2))
        tmp.rename(STATE_FILE)

    @classmethod
    def load(cls) -> LabState | None:
        try:
            data = json.loads(STATE_FILE.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return cls(rootfs=str(data["rootfs"]), pids={str(k): int(v) for k, v in data["pids"].items()})


def mounts_below(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first."""
    prefix = str(root.resolve()).rstrip("/") + "/"
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if (point + "/").startswith(prefix):
            found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def mount_all(root: Path) -> None:
    """Mount /proc, /dev, /dev/pts and a fresh /run inside the rootfs (skipping those already mounted)."""
    present = set(mounts_below(root))
    for source, rel, args in MOUNTS:
        target = root / rel
        target.mkdir(parents=True, exist_ok=True)
        if str(target) in present:
            continue
        subprocess.run(["mount", *args, source, str(target)], check=True)


def umount_all(root: Path) -> list[str]:
    """Unmount everything below ``root``; a busy mount is detached lazily so nothing stays behind."""
    done = []
    for point in mounts_below(root):
        if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", point], check=True)
        done.append(point)
    return done


def processes_in(root: Path) -> list[int]:
    """PIDs of processes whose root directory is ``root`` (or below it)."""
    want = str(root.resolve()).rstrip("/")
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            proc_root = os.readlink(entry / "root")
        except OSError:
            continue
        if proc_root == want or proc_root.startswith(want + "/"):
            pids.append(int(entry.name))
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    with contextlib.suppress(ChildProcessError):
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


def stop_pids(pids: Sequence[int], timeout: float = 5.0) -> None:
    """SIGTERM each PID, wait, then SIGKILL whatever is left."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)


def spawn(
    state: LabState, name: str, argv: Sequence[str], log: Path, **popen: Any
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, output appended to ``log``, and record its PID in the state file
    under ``name`` (so that ``down`` stops it). ``popen``: more Popen arguments (user, group...)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **popen,
        )
    state.pids[name] = proc.pid
    state.save()
    return proc


def start_daemon(
    state: LabState, name: str, argv: Sequence[str], log: Path, ready: Path | None = None, wait: float = 20.0
) -> int:
    """Start ``argv`` in the chroot in the foreground mode of the daemon; record its PID in the state file.

    ``chroot`` execs the command, so the PID is the daemon's own. With ``ready`` (a path inside the rootfs,
    e.g. a control socket), wait until it exists.
    """
    root = Path(state.rootfs)
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = spawn(state, name, ["chroot", str(root), *argv], log)
    if ready is not None:
        deadline = time.monotonic() + wait
        while not (root / str(ready).lstrip("/")).exists():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {wait:.0f}s ({ready} missing); see {log}")
            time.sleep(0.1)
    return proc.pid


def teardown(root: Path | None = None) -> dict[str, list[str]]:
    """Stop every lab process and unmount everything; safe to call any number of times."""
    state = LabState.load()
    roots = {Path(state.rootfs)} if state else set()
    if root is not None:
        roots.add(root)
    report: dict[str, list[str]] = {"stopped": [], "unmounted": []}
    if state:
        recorded = [pid for pid in state.pids.values() if alive(pid)]
        stop_pids(recorded)
        report["stopped"] += [f"{name}:{pid}" for name, pid in state.pids.items() if pid in recorded]
    for r in roots:
        leftover = processes_in(r)
        if leftover:
            stop_pids(leftover)
            report["stopped"] += [f"pid:{pid}" for pid in leftover]
        report["unmounted"] += umount_all(r)
    with contextlib.suppress(FileNotFoundError):
        STATE_FILE.unlink()
    return report
