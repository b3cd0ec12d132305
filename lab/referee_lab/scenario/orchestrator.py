"""The PBX host's orchestrator, for a scenario with an ``[operator]``: the lab's own
(:mod:`referee_lab.hosts`), running since ``lab up`` with AMI to its PBX only and the site's audit
database; reached by its API."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from referee.api.client import call
from referee_lab import database, hosts
from referee_lab.scenario.context import Run


class Orchestrator:
    """The orchestrator of one PBX host: its API (with the token it made) and the audit records."""

    def __init__(self, run: Run, pbx: str) -> None:
        node = next((p for p in run.topo.pbxs if p.name == pbx), None)
        if node is None:
            raise ValueError(f"scenario {run.scenario.name}: unknown PBX {pbx}")
        self.run = run
        self.host = hosts.orchestrator_host(node)

    def ready(self) -> None:
        """Until its /ready says the PBX link answered (it may be reconnecting after a PBX restart)."""
        hosts.wait_ready(self.run.state, self.host)

    def api(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        return call(self.host.base, self.host.token, method, path, body)

    def record(self, transfer_id: int) -> dict[str, Any]:
        """``referee transfers show ID --json`` on the site's audit database."""
        argv = [sys.executable, "-m", "referee.cli", "transfers", "show", str(transfer_id), "--json"]
        done = subprocess.run(
            [*argv, "--db", database.dsn()], capture_output=True, text=True, timeout=30, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"referee transfers show {transfer_id} failed: {done.stderr.strip()}")
        value = json.loads(done.stdout)
        return value if isinstance(value, dict) else {}
