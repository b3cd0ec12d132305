"""``[operator]`` in scenario.toml: a transfer an operator drives through the orchestrator's HTTP API.

For such a scenario the runner starts ``referee orchestrator --config`` on the lab's PBXs (by PID, with the
run's own audit database, token file and an API port the kernel picks on 127.0.0.1), waits until it reports
the PBX connected, and, from a thread beside the phones:

1. waits until the PBX has reported the ``when`` events over AMI (the call to transfer is bridged);
2. ``POST /transfers`` (``flow``, ``pbx``, ``channel``, ``exten``, ``context``); a 404 or 409 (the
   orchestrator has not seen the channel or its bridge yet: it reads the same events) is asked again;
3. attended: once ``GET /transfers/{id}`` says ``answered``, ``POST /transfers/{id}/complete``;
4. waits for a final state.

After the phones the orchestrator is stopped and ``referee transfers --json --db <the run's db>`` must list
the transfer in ``record_state``.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from referee.api.client import ApiError, ApiUnreachable, call
from referee.events import FINAL_STATES
from referee_lab import topology

_API_LINE = re.compile(r"API on (http://\S+),")


@dataclass(frozen=True)
class OperatorSpec:
    pbx: str
    flow: str
    channel: str
    exten: str
    when: tuple[tuple[tuple[str, str], ...], ...]
    context: str = "referee-transfer"
    record_state: str = "completed"


def load(scenario: str, raw: Mapping[str, Any]) -> OperatorSpec:
    """The ``[operator]`` table."""
    missing = [k for k in ("pbx", "flow", "channel", "exten", "when") if k not in raw]
    if missing:
        raise ValueError(f"scenario {scenario}: [operator] needs {', '.join(missing)}")
    if raw["flow"] not in ("blind", "attended"):
        raise ValueError(f"scenario {scenario}: [operator] flow must be blind or attended")
    when = raw["when"]
    patterns = [when] if isinstance(when, dict) else when
    if not isinstance(patterns, list) or not patterns or not all(isinstance(p, dict) for p in patterns):
        raise ValueError(f"scenario {scenario}: [operator] when: an event table or a list of them")
    return OperatorSpec(
        pbx=str(raw["pbx"]),
        flow=str(raw["flow"]),
        channel=str(raw["channel"]),
        exten=str(raw["exten"]),
        when=tuple(tuple((str(k), str(v)) for k, v in p.items()) for p in patterns),
        context=str(raw.get("context", "referee-transfer")),
        record_state=str(raw.get("record_state", "completed")),
    )


@dataclass
class Outcome:
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    transfer_id: int | None = None


Api = Callable[[str, str, dict[str, Any] | None], dict[str, Any]]


def _state(answer: Mapping[str, Any]) -> str:
    live = answer.get("live")
    return str(live["state"] if isinstance(live, dict) else answer.get("state", ""))


def _wait_state(api: Api, transfer_id: int, wanted: frozenset[str], deadline: float) -> str:
    state = ""
    while time.monotonic() < deadline:
        state = _state(api("GET", f"/transfers/{transfer_id}", None))
        if state in wanted:
            return state
        time.sleep(0.1)
    return state


def drive(
    spec: OperatorSpec,
    wait_for: Callable[[Sequence[Mapping[str, str]], float], Mapping[str, str] | None],
    api: Api,
    timeout: float,
) -> Outcome:
    """Steps 1-4 of the module docstring; what happened in ``notes``, what went wrong in ``problems``."""
    out = Outcome()
    deadline = time.monotonic() + timeout
    when = [dict(p) for p in spec.when]
    if wait_for(when, timeout) is None:
        shown = " and ".join(", ".join(f"{k}: {v}" for k, v in p.items()) for p in when)
        out.problems.append(f"operator: no AMI event {shown} on {spec.pbx}: no transfer asked")
        return out
    body = {"flow": spec.flow, "pbx": spec.pbx, "channel": spec.channel, "exten": spec.exten}
    body["context"] = spec.context
    post_deadline = min(deadline, time.monotonic() + 10)
    try:
        while True:
            try:
                answer = api("POST", "/transfers", body)
                break
            except ApiError as exc:
                if exc.status in (404, 409) and time.monotonic() < post_deadline:
                    time.sleep(0.1)
                    continue
                out.problems.append(f"operator: POST /transfers: {exc.status} {exc.message}")
                return out
        out.transfer_id = int(answer["id"])
        out.notes.append(
            f"operator: POST /transfers {spec.flow} {spec.channel} -> {spec.exten}: "
            f"transfer {out.transfer_id} {answer.get('state')}"
        )
        if spec.flow == "attended":
            state = _wait_state(api, out.transfer_id, FINAL_STATES | {"answered"}, deadline)
            if state != "answered":
                out.problems.append(
                    f"operator: transfer {out.transfer_id} {state or 'unknown'}, not answered"
                )
                return out
            done = api("POST", f"/transfers/{out.transfer_id}/complete", None)
            out.notes.append(f"operator: POST /transfers/{out.transfer_id}/complete: {done.get('state')}")
        state = _wait_state(api, out.transfer_id, FINAL_STATES, deadline)
        out.notes.append(f"operator: transfer {out.transfer_id} ended {state or 'unknown'}")
    except ApiError as exc:
        out.problems.append(f"operator: {exc.status} {exc.message}")
    except ApiUnreachable as exc:
        out.problems.append(f"operator: {exc}")
    return out


def record_problems(spec: OperatorSpec, transfer_id: int, record: Mapping[str, Any]) -> list[str]:
    """The audit record of the operator's transfer, as ``referee transfers show ID --json`` prints it."""
    if record.get("id") != transfer_id:
        return [f"audit: no record {transfer_id}"]
    problems = []
    if record.get("state") != spec.record_state:
        problems.append(f"audit: record {transfer_id} is {record.get('state')}, expected {spec.record_state}")
    if record.get("flow") != spec.flow:
        problems.append(f"audit: record {transfer_id} flow {record.get('flow')}, expected {spec.flow}")
    return problems


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
    """``referee orchestrator`` for one run, on the lab's PBXs, started and stopped by PID."""

    def __init__(self, out_dir: Path, events: Path) -> None:
        self.db = out_dir / "audit.sqlite3"
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
        """Wait for the API line in the log, then for /health to say ``pbx`` is connected."""
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
                health = self.api("GET", "/health", None)
                if health.get("pbxs", {}).get(pbx, {}).get("connected"):
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
