"""``referee orchestrator`` for one run of a scenario with an ``[operator]``, on the lab's PBXs, started and
stopped by its PID."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from referee.api.client import ApiError, ApiUnreachable, call, readiness
from referee_lab import topology

_API_LINE = re.compile(r"API on (http://\S+),")
DB = "orchestrator.sqlite3"


def write_config(path: Path, topo: topology.Topology) -> None:
    """The orchestrator's settings file for the lab: one ``[[pbx]]`` per PBX, connecting from the PBX's own
    address (its AMI ``permit``), the secret in this 0600 file rather than on the command line."""
    q = json.dumps  # a JSON string is a TOML basic string
    tables = [
        f"[[pbx]]\nname = {q(p.name)}\nhost = {q(p.address)}\nport = {p.ami_port}\n"
        f"username = {q(topo.ami_user)}\nsecret = {q(topo.ami_secret)}\nsource = {q(p.address)}\n"
        for p in topo.pbxs
    ]
    path.touch(mode=0o600)
    path.write_text("\n".join(tables))


class Orchestrator:
    """``referee orchestrator --config`` for one run, started and stopped by PID."""

    def __init__(self, out_dir: Path, events: Path) -> None:
        self.db = out_dir / DB
        self.log = out_dir / "orchestrator.log"
        self.token_file = out_dir / "api-token"
        self.config = out_dir / "orchestrator.toml"
        for leftover in (self.db, self.token_file):
            leftover.unlink(missing_ok=True)
        write_config(self.config, topology.load())
        argv = [sys.executable, "-m", "referee.cli", "orchestrator", "--config", str(self.config)]
        argv += ["--db", str(self.db)]
        argv += ["--events", str(events), "--api", "127.0.0.1:0", "--token-file", str(self.token_file)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.base = ""
        self.token = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ready(self, pbx: str, timeout: float = 20.0) -> None:
        """Wait for the API line in the log, then for /ready to say ``pbx`` is ready."""
        deadline = time.monotonic() + timeout
        while not self.base:
            if found := _API_LINE.search(self.log.read_text(errors="replace")):
                self.base = found.group(1)
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the orchestrator did not start: {self.log.read_text(errors='replace')}")
            else:
                time.sleep(0.1)
        self.token = self.token_file.read_text().strip()
        while True:
            with contextlib.suppress(ApiUnreachable, ApiError):
                if readiness(self.base).get("pbxs", {}).get(pbx, {}).get("ready"):
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the orchestrator did not connect to {pbx}; see {self.log}")
            time.sleep(0.1)

    def api(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        return call(self.base, self.token, method, path, body)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def record(self, transfer_id: int) -> dict[str, Any]:
        """``referee transfers show ID --json`` on this run's database (the orchestrator also records the
        transfers of the proxy's event file, so a listing may not reach this one)."""
        argv = [sys.executable, "-m", "referee.cli", "transfers", "show", str(transfer_id), "--json"]
        done = subprocess.run(
            [*argv, "--db", str(self.db)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"referee transfers show {transfer_id} failed: {done.stderr.strip()}")
        value = json.loads(done.stdout)
        return value if isinstance(value, dict) else {}
