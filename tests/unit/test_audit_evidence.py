"""``completed`` agrees with the PBX where the record has its view, and every record says what its outcome
rests on (``evidence``): over the lab's recorded runs (tests/unit/data), the proxy's lines and pbx1's AMI
events in either order, the proxy's lines alone, and runs whose AMI events contradict the NOTIFY 200."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from recorded_store import DATA, Ticker, first_time, proxy_lines

from referee.audit import open_store
from referee.audit.correlate import Correlator
from referee.audit.render import list_line, show
from referee.audit.store import AuditStore
from referee.events import PbxEvent, State, from_json
from referee.orchestrator.amitext import parse_messages
from referee.orchestrator.tracker import Tracker

BLIND, ATTENDED = "recorded_blind_refer", "recorded_attended_refer"


def ami(run: str, *, fail: bool = False) -> str:
    """The run's AMI text; with ``fail``, the PBX reports the transfer failed: the AttendedTransfer's
    ``Result: Fail``, or, for the blind run, the transferee's dial to the target ``NOANSWER``."""
    text = (DATA / "ami" / f"{run}.txt").read_text()
    if not fail:
        return text
    if run == ATTENDED:
        return text.replace("Result: Success", "Result: Fail").replace("DestType: Bridge", "DestType: Fail")
    head, _, tail = text.rpartition("DialStatus: ANSWER")  # the transferee's dial to 1003
    return head + "DialStatus: NOANSWER" + tail


def store_for(tmp: Path, run: str) -> AuditStore:
    return open_store(str(tmp / "audit.db"), clock=Ticker(first_time(run)))


def feed_proxy(store: AuditStore, run: str) -> None:
    for line in proxy_lines(run):
        Correlator(store).proxy(from_json(line))


def feed_pbx(store: AuditStore, run: str, *, fail: bool = False) -> None:
    tracker = Tracker("pbx1", store)
    for message in parse_messages(ami(run, fail=fail)):
        tracker.handle(message)


def only_record(store: AuditStore) -> tuple[State, str | None, str | None]:
    (listed,) = store.records()
    record = store.get(listed.id)
    assert record is not None
    return record.state, record.result, record.evidence


@pytest.mark.parametrize("proxy_first", [True, False], ids=["proxy-first", "pbx-first"])
@pytest.mark.parametrize(
    ("run", "evidence"),
    [
        (BLIND, "pbx: BlindTransfer Success + target bridged"),
        (ATTENDED, "pbx: AttendedTransfer Success + target bridged"),
    ],
)
def test_a_transfer_the_pbx_saw_complete_rests_on_its_view(
    tmp_path: Path, run: str, evidence: str, proxy_first: bool
) -> None:
    store = store_for(tmp_path, run)
    feeds = [lambda: feed_proxy(store, run), lambda: feed_pbx(store, run)]
    for feed in feeds if proxy_first else reversed(feeds):
        feed()
    state, _, found = only_record(store)
    assert (state, found) == (State.COMPLETED, evidence)


@pytest.mark.parametrize("run", [BLIND, ATTENDED])
def test_with_the_proxys_view_only_notify_200_is_the_evidence_and_the_record_says_so(
    tmp_path: Path, run: str
) -> None:
    store = store_for(tmp_path, run)
    feed_proxy(store, run)
    assert only_record(store) == (State.COMPLETED, "NOTIFY 200 OK", "notify-200 (proxy view only)")
    (record,) = store.records()
    assert record.evidence == "notify-200 (proxy view only)"
    assert list_line(record).endswith("NOTIFY 200 OK [notify-200 (proxy view only)]")
    assert "evidence notify-200 (proxy view only)" in show(record)
    assert record.to_dict(entries=False)["evidence"] == "notify-200 (proxy view only)"


@pytest.mark.parametrize(
    ("run", "said"),
    [
        (
            ATTENDED,
            ("pbx reports Fail", "pbx: AttendedTransfer Fail + target answered; NOTIFY 200 disagrees"),
        ),
        (
            BLIND,
            (
                "pbx reports DialEnd NOANSWER",
                "pbx: BlindTransfer Success + target NOANSWER; NOTIFY 200 disagrees",
            ),
        ),
    ],
)
def test_a_notify_200_the_pbx_contradicts_read_first_is_undone_when_the_pbx_speaks(
    tmp_path: Path, run: str, said: tuple[str, str]
) -> None:
    store = store_for(tmp_path, run)
    feed_proxy(store, run)
    assert only_record(store)[0] == State.COMPLETED  # the proxy's view, for now
    feed_pbx(store, run, fail=True)
    state, result, evidence = only_record(store)
    assert (state, result, evidence) == (State.FAILED, *said)
    (record,) = store.records()
    moves = [e.event for e in (store.get(record.id) or record).entries if e.kind == "transfer.move"]
    assert [str(m.after) for m in moves][-2:] == ["completed", "failed"]  # type: ignore[union-attr]


def test_a_notify_200_for_a_transfer_the_pbx_already_reported_failed_does_not_complete_it(
    tmp_path: Path,
) -> None:
    store = store_for(tmp_path, ATTENDED)
    feed_pbx(store, ATTENDED, fail=True)
    feed_proxy(store, ATTENDED)
    state, result, evidence = only_record(store)
    assert state == State.FAILED
    assert result is not None and "Fail" in result
    assert evidence == "pbx: AttendedTransfer Fail + target answered; NOTIFY 200 disagrees"
    (record,) = store.records()
    full = store.get(record.id)
    assert full is not None
    assert State.COMPLETED not in [e.event.after for e in full.entries if e.kind == "transfer.move"]  # type: ignore[union-attr]


def test_a_blind_pbx_failure_known_before_the_notify_200_fails_it_at_once(tmp_path: Path) -> None:
    store = store_for(tmp_path, BLIND)
    lines = proxy_lines(BLIND)
    for line in lines[:-1]:  # everything but the NOTIFY 200
        Correlator(store).proxy(from_json(line))
    feed_pbx(store, BLIND, fail=True)
    assert only_record(store)[0] == State.FAILED  # the tracker's own move on the failed dial
    Correlator(store).proxy(from_json(lines[-1]))
    assert only_record(store)[0] == State.FAILED


def test_a_contradicting_notify_200_read_while_open_is_failed_with_the_pbx_words(tmp_path: Path) -> None:
    """The record is still open (nothing final yet) when the PBX's failure is in it and the NOTIFY 200
    comes: the NOTIFY does not complete it."""
    store = store_for(tmp_path, ATTENDED)
    decision, response, trying, ok = proxy_lines(ATTENDED)
    correlator = Correlator(store)
    for line in (decision, response, trying):
        correlator.proxy(from_json(line))
    (record,) = store.records()
    store.add_entry(record.id, PbxEvent(record.created + 0.5, "pbx1", "AttendedTransfer", {"Result": "Fail"}))
    assert store.state_of(record.id) == State.RINGBACK  # no completion to undo: nothing moves
    correlator.proxy(from_json(ok))
    state, result, evidence = only_record(store)
    assert (state, result) == (State.FAILED, "pbx reports Fail (NOTIFY 200 says otherwise)")
    assert evidence == "pbx: AttendedTransfer Fail; NOTIFY 200 disagrees"


def test_a_refused_refer_has_no_evidence_of_an_outcome(tmp_path: Path) -> None:
    store = store_for(tmp_path, BLIND)
    decision = json.loads(proxy_lines(BLIND)[0])
    decision["decision"] = {**decision["decision"], "allowed": False, "status": 403, "reason": "No"}
    Correlator(store).proxy(from_json(json.dumps(decision)))
    state, _, evidence = only_record(store)
    assert (state, evidence) == (State.FAILED, None)
