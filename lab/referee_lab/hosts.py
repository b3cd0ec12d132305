"""The audit writers of a real site, one process per "host", all into the lab's PostgreSQL (database.py).

- the proxy host: ``referee audit ingest --events <Kamailio's event file> --db DSN --follow``, the only
  process that reads the proxy's event file;
- each PBX host: ``referee orchestrator --config hosts/<pbx>/orchestrator.toml --events ''``, with AMI to
  its own PBX only, connecting from the PBX's address (the AMI ``permit``), its API on the PBX's address.

Each host has a folder of its own (``var/lab/hosts/<name>``: settings, API token, log); no process reads
another's. They run outside the chroot (the repository's interpreter), started and stopped by PID and
recorded in the lab's state file, so a ``lab down`` stops them even if this process died.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from referee.api.client import ApiError, ApiUnreachable, readiness
from referee.audit.store import open_store
from referee_lab import chroot, database
from referee_lab.provision import REPO
from referee_lab.topology import Pbx, Topology

HOSTS_DIR = REPO / "var" / "lab" / "hosts"
LAB_POLICY = REPO / "examples" / "policy.toml"  # the policy the lab deploys: the page's playground checks it
API_PORT = 8090  # on each PBX's own address (loopback: the orchestrator's API is loopback only)
INGEST = "ingest-proxy"
INGEST_INTERVAL = "0.2"  # seconds between looks at the proxy's event file


def orchestrator_name(pbx: str) -> str:
    return f"orchestrator-{pbx}"


@dataclass(frozen=True)
class OrchestratorHost:
    """Where a PBX host's orchestrator is: its API and the token file it made."""

    pbx: str
    base: str
    token_file: Path

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()


def orchestrator_host(pbx: Pbx) -> OrchestratorHost:
    return OrchestratorHost(pbx.name, f"http://{pbx.address}:{API_PORT}", HOSTS_DIR / pbx.name / "api-token")


def write_config(path: Path, topo: Topology, pbx: Pbx) -> None:
    """One PBX host's orchestrator settings: its PBX only, connecting from the PBX's own address, the
    secret in this 0600 file rather than on the command line, the site's audit database."""
    q = json.dumps  # a JSON string is a TOML basic string
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text(
        f'[orchestrator]\ndb = {q(database.dsn())}\nevents = ""\napi = {q(f"{pbx.address}:{API_PORT}")}\n'
        f"token_file = {q(str(path.parent / 'api-token'))}\npolicy = {q(str(LAB_POLICY))}\n\n"
        f"[[pbx]]\nname = {q(pbx.name)}\nhost = {q(pbx.address)}\nport = {pbx.ami_port}\n"
        f"username = {q(topo.ami_user)}\nsecret = {q(topo.ami_secret)}\nsource = {q(pbx.address)}\n"
    )


def _start(state: chroot.LabState, name: str, argv: list[str], log: Path) -> int:
    return chroot.spawn(state, name, [sys.executable, "-m", "referee.cli", *argv], log).pid


def start(state: chroot.LabState, topo: Topology, events: Path) -> None:
    """The proxy host's ingest of ``events`` (Kamailio's event file) and one orchestrator per PBX host;
    returns once each orchestrator's API says its PBX link is ready."""
    proxy = HOSTS_DIR / "proxy"
    proxy.mkdir(parents=True, exist_ok=True)
    _start_at_the_end(events)
    _start(
        state,
        INGEST,
        [
            "audit",
            "ingest",
            "--events",
            str(events),
            "--db",
            database.dsn(),
            "--follow",
            "--interval",
            INGEST_INTERVAL,
        ],
        proxy / "ingest.log",
    )
    for pbx in topo.pbxs:
        folder = HOSTS_DIR / pbx.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "api-token").unlink(missing_ok=True)
        config = folder / "orchestrator.toml"
        write_config(config, topo, pbx)
        _start(
            state,
            orchestrator_name(pbx.name),
            ["orchestrator", "--config", str(config)],
            folder / "orchestrator.log",
        )
    for pbx in topo.pbxs:
        wait_ready(state, orchestrator_host(pbx))


def _start_at_the_end(events: Path) -> None:
    """The lab's database is new but the proxy's event file holds earlier labs' lines: the ingest starts
    where the file ends now (a site's new database would read it all)."""
    try:
        st = events.stat()
    except FileNotFoundError:
        return
    store = open_store(database.dsn())
    try:
        store.set_ingest_offset(str(events), st.st_ino, st.st_size)
    finally:
        store.close()


def wait_ready(state: chroot.LabState, host: OrchestratorHost, timeout: float = 30.0) -> None:
    """Until the orchestrator's /ready says its PBX link answered (raises if it died or never did)."""
    pid = state.pids[orchestrator_name(host.pbx)]
    deadline = time.monotonic() + timeout
    while True:
        try:
            if readiness(host.base).get("pbxs", {}).get(host.pbx, {}).get("ready"):
                return
        except (ApiUnreachable, ApiError):
            pass
        if not chroot.alive(pid) or time.monotonic() > deadline:
            raise RuntimeError(f"the orchestrator of {host.pbx} is not ready; see {host.token_file.parent}")
        time.sleep(0.1)


def stop(state: chroot.LabState | None) -> None:
    """Stop the ingest and the orchestrators (SIGTERM, then SIGKILL) and forget their PIDs."""
    if state is None:
        return
    names = [n for n in state.pids if n == INGEST or n.startswith("orchestrator-")]
    chroot.stop_pids([state.pids[n] for n in names], timeout=10)
    for name in names:
        del state.pids[name]
    state.save()
