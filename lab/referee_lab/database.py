"""The lab's audit database: a private PostgreSQL cluster on 127.0.0.12, started and stopped with the lab.

It plays the site's one PostgreSQL that the proxy host's ingest and every PBX host's orchestrator write to
(docs/audit-across-hosts.md). The host's PostgreSQL programs (``/usr/lib/postgresql/*/bin``, Debian's
``postgresql``) run as the ``postgres`` user (``initdb`` refuses root) on a cluster in ``CLUSTER_DIR``, a
directory of the lab's state (a tmpfs): ``stop`` shuts the server down (a fast shutdown, which ends its
backends) and removes the directory, so nothing is left behind. The server's PID is in the lab's state file
under ``postgres``, so a ``lab down`` after a crash of this process still stops it (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

from referee_lab import chroot

HOST = "127.0.0.12"
PORT = 5432
SUPERUSER = "postgres"
USER = "referee"
PASSWORD = "referee-lab"  # the lab's, like its AMI secret: a test bed's, written in the repository
DATABASE = "audit"
CLUSTER_DIR = chroot.STATE_DIR / "postgres"
NAME = "postgres"  # in the lab's state file
READY_SECONDS = 30.0


def dsn() -> str:
    """The audit database's DSN, as every lab process that writes or reads the audit trail gets it."""
    return f"postgresql://{USER}:{PASSWORD}@{HOST}:{PORT}/{DATABASE}"


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (/usr/lib/postgresql/*/bin): make deps")
    return Path(found[-1]).parent


def _as_postgres(*argv: str, stdin: str | None = None) -> None:
    done = subprocess.run(
        ["runuser", "-u", SUPERUSER, "--", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} failed: {done.stdout}{done.stderr}")


def start(state: chroot.LabState) -> int:
    """initdb a new cluster, start its server, create the ``referee`` role and the ``audit`` database.
    The server's PID (recorded in ``state``)."""
    bindir = _bindir()
    account = pwd.getpwnam(SUPERUSER)
    shutil.rmtree(CLUSTER_DIR, ignore_errors=True)  # an earlier lab's, if it died before its down
    CLUSTER_DIR.mkdir(parents=True, mode=0o700)
    os.chown(CLUSTER_DIR, account.pw_uid, account.pw_gid)
    data, sockets = CLUSTER_DIR / "data", CLUSTER_DIR / "sock"
    _as_postgres("mkdir", "-m", "700", str(sockets))
    _as_postgres(
        str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth-host=scram-sha-256",
        "--auth-local=peer", "-E", "UTF8", "--no-sync",
    )  # fmt: skip
    log = CLUSTER_DIR / "server.log"
    server = [str(bindir / "postgres"), "-D", str(data), "-k", str(sockets), "-h", HOST, "-p", str(PORT)]
    proc = chroot.spawn(state, NAME, server, log, user=account.pw_uid, group=account.pw_gid, extra_groups=[])
    deadline = time.monotonic() + READY_SECONDS
    while subprocess.run(
        [str(bindir / "pg_isready"), "-q", "-h", str(sockets), "-p", str(PORT)], check=False
    ).returncode:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL on {HOST}:{PORT} did not start; see {log}")
        time.sleep(0.1)
    psql = [
        str(bindir / "psql"),
        "-h",
        str(sockets),
        "-p",
        str(PORT),
        "-U",
        SUPERUSER,
        "-v",
        "ON_ERROR_STOP=1",
    ]
    _as_postgres(*psql, "-c", f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
    _as_postgres(*psql, "-c", f"CREATE DATABASE {DATABASE} OWNER {USER}")
    return proc.pid


def stop(state: chroot.LabState | None) -> None:
    """Fast shutdown of the server (SIGINT: it ends its backends, then itself); the cluster is removed."""
    pid = None if state is None else state.pids.get(NAME)
    if pid is not None and chroot.alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while chroot.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        chroot.stop_pids([pid])  # still there after 30 s: SIGTERM, then SIGKILL
    if state is not None and state.pids.pop(NAME, None) is not None:
        state.save()
    shutil.rmtree(CLUSTER_DIR, ignore_errors=True)


def running() -> list[int]:
    """PIDs of processes whose working files are the lab's cluster (for the no-leftovers check)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(CLUSTER_DIR)):
            found.append(int(entry.name))
    return found
