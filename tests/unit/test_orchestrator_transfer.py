"""The transfer state machine: the two tables in the moves docstring, cell by cell, against the code,
and the hangup table against Hangup events replayed through the tracker."""

from __future__ import annotations

from pathlib import Path

import pytest
from ami_traces import ALICE, BOB, CAROL, trace

from referee.audit import open_store
from referee.audit.store import AuditStore
from referee.events import Flow, State
from referee.orchestrator import moves as moves_module
from referee.orchestrator.moves import HANGUP, HANGUP_OF, MOVES, Trigger, hangup_outcome, next_state
from referee.orchestrator.tracker import Tracker
from referee.orchestrator.transfer import Role, Transfer


def docstring_table() -> dict[tuple[Flow, State, Role], State]:
    doc = moves_module.__doc__ or ""
    block = doc.split("flow     state       initiator transferred recipient")[1].split("\n\n")[0]
    table: dict[tuple[Flow, State, Role], State] = {}
    for line in block.splitlines():
        if not line.strip() or line.startswith("="):
            continue
        flow, state, *cells = line.split()
        for role, cell in zip(Role, cells, strict=True):
            table[(Flow(flow), State(state), role)] = State(state) if cell == "=" else State(cell)
    return table


CELLS = sorted(docstring_table().items())


def test_the_docstring_table_has_every_cell() -> None:
    assert len(CELLS) == len(Flow) * len(State) * len(Role) == 48


def test_the_docstring_table_is_the_code() -> None:
    assert docstring_table() == HANGUP


def event_table() -> dict[tuple[Flow, State, Trigger], State]:
    doc = moves_module.__doc__ or ""
    block = doc.split("flow     state     trigger       next")[1].split("\n\n")[0]
    table: dict[tuple[Flow, State, Trigger], State] = {}
    for line in block.splitlines():
        if line.strip() and not line.startswith("="):
            flow, state, trigger, cell = line.split()
            table[(Flow(flow), State(state), Trigger(trigger))] = State(state) if cell == "=" else State(cell)
    return table


def test_the_moves_table_is_the_code() -> None:
    hangups = {(f, s, HANGUP_OF[r]): after for (f, s, r), after in HANGUP.items()}
    assert {**event_table(), **hangups} == MOVES
    assert len(event_table()) == 29


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    return open_store(str(tmp_path / "audit.db"))


def hangup_event(uniqueid: str) -> dict[str, str]:
    return {"Event": "Hangup", "Uniqueid": uniqueid, "Channel": "PJSIP/x", "Cause": "16"}


@pytest.mark.parametrize(("cell", "expected"), CELLS, ids=[f"{f}-{s}-{r}" for (f, s, r), _ in CELLS])
def test_each_hangup_cell_through_the_tracker(
    store: AuditStore, cell: tuple[Flow, State, Role], expected: State
) -> None:
    flow, state, role = cell
    tracker = Tracker("pbx1", store)
    for event in trace("call_setup.txt"):
        tracker.handle(event)
    record_id = store.create("operator", flow=str(flow), pbx="pbx1", state=str(state))
    transfer = Transfer(
        record_id, "pbx1", flow, "operator", initiator=BOB, transferred=ALICE, recipient=CAROL, state=state
    )
    tracker.add(transfer)
    uid = {Role.INITIATOR: BOB, Role.TRANSFERRED: ALICE, Role.RECIPIENT: CAROL}[role]
    tracker.handle(hangup_event(uid))
    assert transfer.state == expected
    record = store.get(record_id)
    assert record is not None
    assert record.state == str(expected)
    # a followed transfer gets the event in its record; a finished one is no longer followed
    assert [e.kind for e in record.entries if e.source == "pbx"] == ([] if state.final else ["Hangup"])
    if expected.final:
        assert tracker.get(record_id) is transfer and record_id not in tracker.active
        assert record.ended is not None
    else:
        assert record_id in tracker.active


def test_an_unrelated_hangup_changes_nothing(store: AuditStore) -> None:
    tracker = Tracker("pbx1", store)
    record_id = store.create("operator")
    transfer = Transfer(
        record_id, "pbx1", Flow.ATTENDED, "operator", initiator=BOB, transferred=ALICE, state=State.RINGBACK
    )
    tracker.add(transfer)
    tracker.handle(hangup_event("1764000000.99"))
    assert transfer.state == State.RINGBACK
    assert store.get(record_id).entries[-1].kind == "transfer.move"  # type: ignore[union-attr]


def test_outcomes_say_why() -> None:
    assert hangup_outcome(Flow.ATTENDED, State.ANSWERED, Role.INITIATOR) == (
        State.COMPLETED,
        "completed by the initiator hanging up",
    )
    assert hangup_outcome(Flow.BLIND, State.RINGBACK, Role.TRANSFERRED) == (
        State.ABANDONED,
        "the transferred party hung up",
    )
    assert hangup_outcome(Flow.BLIND, State.RINGBACK, Role.INITIATOR) == (State.RINGBACK, "")


def test_a_final_state_never_moves(store: AuditStore) -> None:
    tracker = Tracker("pbx1", store)
    transfer = Transfer(1, "pbx1", Flow.BLIND, "operator", initiator=BOB, state=State.CANCELLED)
    for trigger in Trigger:
        assert not tracker.fire(transfer, trigger, "test")
    assert transfer.state == State.CANCELLED
    assert all(next_state(f, s, t) is None for f in Flow for s in State if s.final for t in Trigger)


def test_only_the_latest_finished_transfers_stay_in_memory(
    store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("referee.orchestrator.tracker.KEEP_FINISHED", 2)
    tracker = Tracker("pbx1", store)
    for n in range(1, 4):
        tracker.add(Transfer(n, "pbx1", Flow.BLIND, "operator", initiator=BOB, state=State.FAILED))
    assert list(tracker.finished) == [2, 3]
    assert tracker.get(1) is None
