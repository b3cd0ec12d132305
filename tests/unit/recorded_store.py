"""An audit store filled from the lab's recorded runs (tests/unit/data/proxy and ami/recorded_*): the blind
and the attended transfer by REFER, each the proxy's lines then pbx1's AMI events, as the daemon would
have stored them; and a refused REFER whose Refer-To and display name are markup (a phone sends what it
likes)."""

from __future__ import annotations

import json
from pathlib import Path

from referee.audit import open_store
from referee.audit.correlate import Correlator
from referee.audit.store import AuditStore
from referee.events import ReferDecision, from_json
from referee.orchestrator.amitext import parse_messages
from referee.orchestrator.tracker import Tracker

DATA = Path(__file__).resolve().parent / "data"
RUNS = ("recorded_blind_refer", "recorded_attended_refer")
HOSTILE_REFER_TO = "<sip:1003@lab.test?x=<script>window.pwned=1</script>>"
HOSTILE_FROM = '"<img src=x onerror=window.pwned=2>" <sip:6666@lab.test>'


class Ticker:
    """The store's clock: a millisecond a reading, from ``start`` (the recording's own times, so that a
    ladder's PBX events follow its proxy lines instead of coming days later)."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


def proxy_lines(run: str) -> list[str]:
    return (DATA / "proxy" / f"{run}.jsonl").read_text().splitlines()


def replay(store: AuditStore, run: str) -> None:
    for line in proxy_lines(run):
        Correlator(store).proxy(from_json(line))
    tracker = Tracker("pbx1", store)
    for message in parse_messages((DATA / "ami" / f"{run}.txt").read_text()):
        tracker.handle(message)


def hostile_line(time: float, call_id: str = "hostile-call@127.0.0.66") -> str:
    """A proxy line: a REFER refused (foreign domain), its Refer-To and From written as markup."""
    decision = ReferDecision(
        time,
        call_id,
        1,
        HOSTILE_FROM,
        "127.0.0.66",
        False,
        403,
        "Transfer target not served here",
        "target",
        refer_to=HOSTILE_REFER_TO,
    )
    return json.dumps(decision.to_dict())


def first_time(run: str) -> float:
    return float(json.loads(proxy_lines(run)[0])["time"])


def filled_store(path: str) -> AuditStore:
    clock = Ticker(first_time(RUNS[0]))
    store = open_store(path, clock=clock)
    for run in RUNS:
        clock.now = first_time(run)
        replay(store, run)
    Correlator(store).proxy(from_json(hostile_line(clock.now + 60)))
    return store
