"""The lab's Prometheus metrics: every /metrics page scraped, the counters checked against the scenarios.

Runs after test_lab_e2e.py (same package-scoped ``lab``). That module plays every scenario, but some
restart the proxy (its xhttp_prom counters start again from zero) and the orchestrator only runs inside
the operator scenario; so this module measures what a set of scenarios moves: it scrapes every page
(the proxy's xhttp_prom, each FastAGI, an orchestrator and a standalone ingest it starts itself, both
reading the proxy's event file from its current end), plays the scenarios again, scrapes again, and
checks the differences against

- what the scenario files say: the REFER statuses the phones get (``expect.refer_statuses``), the rule
  the lab's policy refuses their Refer-To with, the final sipfrag of the NOTIFYs (``notify_final``,
  ``notify_sipfrags``), the FastAGI rule and status the PBX sets (``expect.ami`` VarSet), the audit
  record's flow and state (``expect.audit``);
- the proxy's own event file over the same time: every decision, answer and NOTIFY outcome counted once.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from referee.audit import open_store
from referee.events import NotifyOutcome, ReferDecision, ReferResponse
from referee.metrics.scrape import Samples, fetch
from referee.policy import load_policy
from referee_lab import chroot, metrics, scenario, topology
from referee_lab.scenario import proxy_log

pytestmark = pytest.mark.lab


def write_config(path: Path, topo: topology.Topology) -> None:
    """This test's own orchestrator: every PBX of the lab (the lab's per-PBX orchestrators run beside it,
    each AMI login is its own), connecting from the PBX's address, the secret in a 0600 file."""
    q = json.dumps  # a JSON string is a TOML basic string
    path.touch(mode=0o600)
    path.write_text(
        "\n".join(
            f"[[pbx]]\nname = {q(p.name)}\nhost = {q(p.address)}\nport = {p.ami_port}\n"
            f"username = {q(topo.ami_user)}\nsecret = {q(topo.ami_secret)}\nsource = {q(p.address)}\n"
            for p in topo.pbxs
        )
    )


REPO = Path(__file__).resolve().parents[2]
# Scenarios without faults (a restarted proxy counts from zero) or an operator: each kind of outcome once.
PLAYED = (
    "blind_transfer",
    "blind_transfer_rejected",
    "blind_transfer_busy",
    "attended_transfer_consultation_gone",
    "fastagi_guard_rejects",
)
POLICY = "/etc/referee/policy.toml"  # referee__policy_file in the rootfs
_METRICS_LINE = re.compile(r"metrics on (http://\S+)")
_REFER_TO = re.compile(r"^\s*Refer-To:\s*(<[^>]*>)", re.MULTILINE)


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def wait_url(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while not self.url:
            if found := _METRICS_LINE.search(self.log.read_text(errors="replace")):
                self.url = found.group(1)
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no metrics line: {self.log.read_text(errors='replace')}")
            else:
                time.sleep(0.1)
        return self.url

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _start(argv: list[str], log: Path) -> Daemon:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "referee.cli", *argv], stdout=out, stderr=subprocess.STDOUT
        )
    return Daemon(proc, log)


def _from_the_end(db: Path, events: Path) -> None:
    """An audit database whose ingest starts at the event file's current end."""
    inode, size = proxy_log.position(events)
    store = open_store(str(db))
    try:
        with store.transaction():
            store.set_ingest_offset(str(events), inode, size)
    finally:
        store.close()


@dataclass
class Pages:
    """The URL of every /metrics page of the lab."""

    proxy: str
    fastagi: dict[str, str]
    orchestrator: str
    ingest: str
    orchestrator_log: Path

    def scrape(self) -> dict[str, Samples]:
        pages = {"proxy": self.proxy, "orchestrator": self.orchestrator, "ingest": self.ingest}
        pages.update({f"fastagi-{name}": url for name, url in self.fastagi.items()})
        return {name: fetch(url) for name, url in pages.items()}


@dataclass
class Played:
    before: dict[str, Samples]
    after: dict[str, Samples]
    events: list[Any]  # the proxy's events written while the scenarios played
    specs: dict[str, dict[str, Any]]  # scenario name -> its scenario.toml
    pages: Pages


def _wait(pages: Pages, ready: Any, timeout: float = 60.0) -> dict[str, Samples]:
    """Scrape until ``ready(samples)``; the last scrape either way (the test's asserts say what is wrong)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = pages.scrape()
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.25)


def _caught_up(samples: dict[str, Samples]) -> bool:
    return all(samples[n].get("referee_ingest_lag_bytes") == 0 for n in ("orchestrator", "ingest"))


@pytest.fixture(scope="module")
def played(lab: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Played]:
    state = chroot.LabState.load()
    assert state is not None
    topo = topology.load()
    root = Path(state.rootfs)
    events = proxy_log.path_in(root)
    work = tmp_path_factory.mktemp("metrics")
    for db in ("orchestrator.sqlite3", "ingest.sqlite3"):
        _from_the_end(work / db, events)
    config = work / "orchestrator.toml"
    write_config(config, topo)
    listen = ("--metrics-listen", "127.0.0.1:0")
    orchestrator = ("orchestrator", "--config", str(config), "--db", str(work / "orchestrator.sqlite3"))
    api = ("--api", "127.0.0.1:0", "--token-file", str(work / "token"))
    ingest = ("audit", "ingest", "--follow", "--db", str(work / "ingest.sqlite3"), "--interval", "0.2")
    daemons = [
        _start([*orchestrator, "--events", str(events), *api, *listen], work / "orchestrator.log"),
        _start([*ingest, "--events", str(events), *listen], work / "ingest.log"),
    ]
    try:
        pages = Pages(
            metrics.proxy_url(root),
            metrics.fastagi_urls(topo),
            daemons[0].wait_url(),
            daemons[1].wait_url(),
            daemons[0].log,
        )
        links_up = lambda s: all(  # noqa: E731
            s["orchestrator"].get("referee_ami_link_ready", pbx=p.name) == 1 for p in topo.pbxs
        )
        before = _wait(pages, lambda s: links_up(s) and _caught_up(s))
        start = proxy_log.position(events)
        specs = {}
        for name in PLAYED:
            path = REPO / "tests" / "scenarios" / name
            specs[name] = tomllib.loads((path / "scenario.toml").read_text())
            result = scenario.run(scenario.load(path), state, topo)
            assert result.passed, f"{name}: {result.error}"
        played_events = proxy_log.read(events, start)
        ended = sum(1 for spec in specs.values() if "audit" in spec.get("expect", {}))

        def settled(samples: dict[str, Samples]) -> bool:
            grown = samples["ingest"].total("referee_transfers_ended_total") - before["ingest"].total(
                "referee_transfers_ended_total"
            )
            return _caught_up(samples) and grown >= ended

        after = _wait(pages, settled)
        yield Played(before, after, played_events, specs, pages)
    finally:
        for daemon in daemons:
            daemon.stop()


def delta(played: Played, page: str, name: str, by: tuple[str, ...]) -> Counter[tuple[str, ...]]:
    """How much each label set of ``name`` on ``page`` grew while the scenarios played."""
    grown: Counter[tuple[str, ...]] = Counter()
    for items, value in played.after[page].select(name).items():
        labels = dict(items)
        old = played.before[page].get(name, **labels) or 0
        if value != old:
            key = tuple(labels.get(label, "") for label in by)
            grown[key] += int(value - old)
    return grown


# -- against the scenario files ---------------------------------------------------------------------------


def test_refers_by_status_are_what_the_phones_got(played: Played) -> None:
    expected = Counter(
        (str(s),) for spec in played.specs.values() for s in spec["expect"].get("refer_statuses", [])
    )
    assert expected, "the played scenarios send REFERs"
    assert delta(played, "proxy", "referee_proxy_refers_total", ("status",)) == expected


def test_refers_refused_by_the_premium_rate_rule_match_the_scenarios_that_send_one(played: Played) -> None:
    state = chroot.LabState.load()
    assert state is not None
    policy = load_policy(Path(state.rootfs) / POLICY.lstrip("/"))
    topo = topology.load()
    expected: Counter[str] = Counter()
    for name, spec in played.specs.items():
        statuses = spec["expect"].get("refer_statuses", [])
        for xml in sorted((REPO / "tests" / "scenarios" / name).glob("*.xml")):
            referrer = f"sip:{topo.phone(xml.stem.split('_')[0]).user}@{topo.domain}"
            for target in _REFER_TO.findall(xml.read_text()):
                if "[$" in target:
                    continue  # a Replaces built from the call: decided by the dialog, not by a rule
                decision = policy.decide(re.sub(r"\[field\d+\]", topo.domain, target), referrer=referrer)
                if not decision.allowed and decision.status in statuses:
                    expected[decision.rule] += 1
    assert expected["prefixes:deny:+449"] >= 1, "a played scenario sends a premium-rate REFER"
    refused = delta(played, "proxy", "referee_proxy_refers_total", ("decision", "rule"))
    assert {
        rule: n for (decision, rule), n in refused.items() if decision == "refused" and rule in expected
    } == dict(expected)


def test_final_notifies_by_sipfrag_status(played: Played) -> None:
    expected: Counter[str] = Counter()
    for spec in played.specs.values():
        frags = spec["expect"].get("notify_sipfrags")
        final = spec["expect"].get("notify_final", "none")
        if frags is not None:
            expected.update(str(frag).split()[0] for frag in frags if int(str(frag).split()[0]) >= 200)
        elif final != "none":
            expected[final.split()[0]] += 1
    assert expected
    counted = delta(played, "proxy", "referee_proxy_notifies_total", ("status",))
    assert {
        status: n for (status,), n in counted.items() if status == "invalid" or int(status) >= 200
    } == dict(expected)


def test_fastagi_refusals_by_rule_match_what_the_pbx_set(played: Played) -> None:
    expected: Counter[tuple[str, str]] = Counter()
    for spec in played.specs.values():
        sets = {
            (item["pbx"], item["match"]["Variable"]): item["carry"]["Value"]
            for item in spec["expect"].get("ami", [])
            if item["match"].get("Event") == "VarSet" and "Value" in item.get("carry", {})
        }
        for (pbx, variable), rule in sets.items():
            if variable == "REFEREE_RULE" and int(sets.get((pbx, "REFEREE_STATUS"), "200")) >= 300:
                expected[(pbx, rule)] += 1
    assert expected
    for pbx in played.pages.fastagi:
        refused = delta(played, f"fastagi-{pbx}", "referee_fastagi_sessions_total", ("result", "rule"))
        got = {(pbx, rule): n for (result, rule), n in refused.items() if result == "refused"}
        assert got == {key: n for key, n in expected.items() if key[0] == pbx}


def test_ended_transfers_by_flow_and_state_match_the_audit_expectations(played: Played) -> None:
    expected = Counter(
        (spec["expect"]["audit"]["flow"], spec["expect"]["audit"]["state"])
        for spec in played.specs.values()
        if "audit" in spec["expect"]
    )
    assert delta(played, "ingest", "referee_transfers_ended_total", ("flow", "state")) == expected


# -- against the proxy's event file and the daemons' state ---------------------------------------------------


def test_proxy_counters_match_its_event_file(played: Played) -> None:
    decisions = Counter(
        ("allowed" if e.allowed else "refused", e.rule, str(e.status))
        for e in played.events
        if isinstance(e, ReferDecision)
    )
    answers = Counter(
        (str(e.status), "1" if e.local else "0") for e in played.events if isinstance(e, ReferResponse)
    )
    notifies = Counter(
        ("invalid" if e.status is None else str(e.status),)
        for e in played.events
        if isinstance(e, NotifyOutcome)
    )
    assert decisions and answers and notifies
    assert delta(played, "proxy", "referee_proxy_refers_total", ("decision", "rule", "status")) == decisions
    assert delta(played, "proxy", "referee_proxy_refer_responses_total", ("status", "local")) == answers
    assert delta(played, "proxy", "referee_proxy_notifies_total", ("status",)) == notifies
    assert delta(played, "proxy", "referee_proxy_event_write_failures_total", ()) == Counter()


def test_the_proxy_names_its_policy_version(played: Played) -> None:
    versions = {e.policy_version for e in played.events if isinstance(e, ReferDecision)}
    page = played.after["proxy"]
    assert {
        v for items, value in page.select("referee_proxy_policy_info").items() if value == 1 for _, v in items
    } == versions


def test_links_and_lag(played: Played) -> None:
    topo = topology.load()
    orchestrator = played.after["orchestrator"]
    for pbx in topo.pbxs:
        assert orchestrator.get("referee_ami_link_connected", pbx=pbx.name) == 1
        assert orchestrator.get("referee_ami_link_ready", pbx=pbx.name) == 1
    for page in ("orchestrator", "ingest"):
        assert played.after[page].get("referee_ingest_lag_bytes") == 0
        assert played.after[page].get("referee_ingest_lag_seconds") == 0
    for pbx in played.pages.fastagi:
        assert played.after[f"fastagi-{pbx}"].get("referee_fastagi_open_connections") == 0


def test_every_metric_the_dashboard_names_is_on_a_lab_page(played: Played) -> None:
    shown = set().union(*(samples.names for samples in played.after.values()))
    assert metrics.dashboard_names() - shown == set()


def test_the_orchestrator_api_serves_its_metrics_too(played: Played) -> None:
    api = re.search(r"API on (http://\S+),", played.pages.orchestrator_log.read_text(errors="replace"))
    assert api is not None
    samples = fetch(f"{api.group(1)}/metrics")  # no token: like /ready
    for pbx in played.pages.fastagi:
        assert samples.get("referee_ami_link_ready", pbx=pbx) == 1
