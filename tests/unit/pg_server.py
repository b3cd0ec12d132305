"""A real PostgreSQL server for the audit store's tests, on 127.0.4.1 and a free port.

``initdb`` refuses root, so as root the cluster lives in a temporary directory owned by ``postgres``
and every server program runs as that user; any other user runs them as themselves, so that
``make unit`` needs no root. The server is stopped by its PID. A missing PostgreSQL (Debian package
``postgresql``, ``make deps``) fails the tests that need it: never a skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

HOST = "127.0.4.1"
USER = "postgres"
PASSWORD = "referee-test"
READY_TRIES = 150


def bindir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed (/usr/lib/postgresql/*/bin): apt-get install postgresql"
        )
    return os.path.dirname(found[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class PgServer:
    bindir: str
    port: int
    proc: subprocess.Popen[bytes]
    count: int = 0

    def dsn(self, dbname: str, *, password: str = PASSWORD, host: str = HOST) -> str:
        return f"postgresql://{USER}:{password}@{host}:{self.port}/{dbname}"

    def new_database(self) -> str:
        """A DSN for a database of its own."""
        self.count += 1
        name = f"audit{self.count}"
        self._run("createdb", "-h", HOST, "-p", str(self.port), "-U", USER, name)
        return self.dsn(name)

    def _run(self, program: str, *args: str) -> None:
        env = {**os.environ, "PGPASSWORD": PASSWORD}
        subprocess.run([os.path.join(self.bindir, program), *args], check=True, env=env, capture_output=True)


def _as_postgres(*argv: str) -> None:
    prefix = ["runuser", "-u", USER, "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *argv], check=True, capture_output=True)


def _run_as(account: pwd.struct_passwd) -> dict[str, Any]:
    """Popen's arguments that switch to the server's account: only root may (and must) switch."""
    if os.geteuid() != 0:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


@contextmanager
def pg_server() -> Iterator[PgServer]:
    bin_ = bindir()
    account = pwd.getpwnam(USER) if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    top = tempfile.mkdtemp(prefix="referee-pg-")
    try:
        os.chmod(top, 0o700)
        os.chown(top, account.pw_uid, account.pw_gid)
        data, sockets, pwfile = (os.path.join(top, n) for n in ("data", "sock", "pw"))
        with open(pwfile, "w") as handle:
            handle.write(PASSWORD + "\n")
        os.chown(pwfile, account.pw_uid, account.pw_gid)
        _as_postgres("mkdir", "-m", "700", sockets)
        _as_postgres(
            os.path.join(bin_, "initdb"), "-D", data, "-U", USER, f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        port = _free_port()
        log = open(os.path.join(top, "server.log"), "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [os.path.join(bin_, "postgres"), "-D", data, "-k", sockets, "-h", HOST, "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            **_run_as(account),
        )
        try:
            for _ in range(READY_TRIES):
                if proc.poll() is not None:
                    break
                ready = subprocess.run(
                    [os.path.join(bin_, "pg_isready"), "-q", "-h", HOST, "-p", str(port)], check=False
                )
                if ready.returncode == 0:
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError(f"PostgreSQL on {HOST}:{port} not ready after {READY_TRIES} tries")
            if proc.poll() is not None:
                with open(os.path.join(top, "server.log")) as handle:
                    raise RuntimeError(f"PostgreSQL exited {proc.returncode}:\n{handle.read()}")
            yield PgServer(bin_, port, proc)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # fast shutdown: ends the backends, then itself
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()
    finally:
        shutil.rmtree(top, ignore_errors=True)
