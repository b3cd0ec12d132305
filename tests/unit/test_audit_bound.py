"""Every accepted REFER reaches a final audit state within a bound: ``pbx lost`` when the proxy saw its
PBX go down, ``no final NOTIFY`` when the PBX said nothing for NOTIFY_TIMEOUT seconds. A fake clock."""

from __future__ import annotations

from pathlib import Path

from referee.audit import open_store
from referee.audit.correlate import NO_FINAL_NOTIFY, NOTIFY_TIMEOUT, PBX_LOST, Correlator
from referee.audit.ingest import EventFileIngest
from referee.events import NotifyOutcome, PbxHealth, ReferDecision, ReferResponse, State, to_json

PBX1 = "sip:127.0.0.20:5060"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def decision(call_id: str, when: float, *, pbx: str = PBX1, subscription: bool = True) -> ReferDecision:
    return ReferDecision(
        when, call_id, 2, "sip:1002@lab.test", "127.0.0.32", True, 202, "Accepted", "r1",
        subscription=subscription, decision={"pbx": pbx},
    )  # fmt: skip


def write(path: Path, *events: object) -> None:
    with path.open("a") as handle:
        for event in events:
            handle.write(to_json(event) + "\n")  # type: ignore[arg-type]


def test_a_transfer_whose_pbx_goes_silent_fails_after_the_bound(tmp_path: Path) -> None:
    clock = Clock(100.0)
    store = open_store(str(tmp_path / "audit.db"), clock=clock)
    events = tmp_path / "events.jsonl"
    write(
        events,
        decision("silent", 100.0),
        ReferResponse(100.1, "silent", 2, 202),
        NotifyOutcome(101.0, "silent", 5, None, status=100, reason="Trying"),
        decision("done", 100.0),
        NotifyOutcome(102.0, "done", 5, None, status=200, reason="OK"),
        decision("quiet", 100.0, subscription=False),
    )
    ingest = EventFileIngest(store, str(events))
    ingest.poll()
    clock.now = 101.0 + NOTIFY_TIMEOUT - 0.5
    ingest.poll()
    silent = store.get(store.find("silent") or 0)
    assert silent is not None and silent.state == State.RINGBACK
    clock.now = 101.0 + NOTIFY_TIMEOUT  # the last word (the 100 NOTIFY) is NOTIFY_TIMEOUT old
    ingest.poll()
    silent = store.get(store.find("silent") or 0)
    assert silent is not None
    assert (silent.state, silent.result, silent.ended) == (State.FAILED, NO_FINAL_NOTIFY, clock.now)
    done = store.get(store.find("done") or 0)
    assert done is not None and (done.state, done.result) == (State.COMPLETED, "NOTIFY 200 OK")
    # Refer-Sub: false asked for no NOTIFY: the proxy's view cannot end it.
    quiet = store.get(store.find("quiet") or 0)
    assert quiet is not None and quiet.state == State.STARTING


def test_a_pbx_going_down_fails_the_transfers_it_holds_at_once(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "audit.db"), clock=Clock(100.0))
    correlator = Correlator(store)
    mine = correlator.proxy(decision("mine", 100.0))
    other = correlator.proxy(decision("other", 100.0, pbx="sip:127.0.0.21:5060"))
    correlator.pbx_health(PbxHealth(100.5, "pbx1", PBX1, up=True))
    assert store.state_of(mine) == State.STARTING
    assert correlator.pbx_health(PbxHealth(101.0, "pbx1", PBX1, up=False)) == [mine]
    record = store.get(mine)
    assert record is not None and (record.state, record.result) == (State.FAILED, PBX_LOST)
    assert any(isinstance(entry.event, PbxHealth) for entry in record.entries)
    assert store.state_of(other) == State.STARTING
    # A final state stands: the PBX coming back, or going down again, changes nothing.
    assert correlator.pbx_health(PbxHealth(102.0, "pbx1", PBX1, up=False)) == []


def test_an_attended_transfer_is_matched_by_the_replaced_dialogs_pbx(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "audit.db"), clock=Clock(100.0))
    correlator = Correlator(store)
    attended = ReferDecision(
        100.0, "att", 3, "sip:1002@lab.test", "127.0.0.32", True, 202, "Accepted", "r1", replaces_pbx="pbx2"
    )
    tid = correlator.proxy(attended)
    assert correlator.pbx_health(PbxHealth(101.0, "pbx1", PBX1, up=False)) == []
    assert correlator.pbx_health(PbxHealth(101.0, "pbx2", "sip:127.0.0.21:5060", up=False)) == [tid]
