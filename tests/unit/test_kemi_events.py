"""The JSON-lines event log and the htable-backed dialog store of referee.kemi."""

from __future__ import annotations

import json
from pathlib import Path

from kemi_fixtures import Clock, make, refer

from referee import events
from referee.events import NotifyOutcome, ReferResponse
from referee.kemi import DialogRecord, DialogStore, EventLog
from referee.testing.fake_ksr import FakeKSR


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def response(cseq: int) -> ReferResponse:
    return ReferResponse(1.0, "c1", cseq, 202)


def test_events_are_one_json_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(str(path), clock=lambda: 12.5)
    log.write(ReferResponse(log.now(), "c1", 2, 202))
    log.write(NotifyOutcome(log.now(), "c1", 3, 2, status=200, reason="Caf\u00e9 OK"))
    assert lines(path) == [
        {"time": 12.5, "event": "refer.response", "call_id": "c1", "cseq": 2, "status": 202},
        {
            "time": 12.5,
            "event": "refer.outcome",
            "call_id": "c1",
            "cseq": 3,
            "refer_cseq": 2,
            "subscription_state": "",
            "status": 200,
            "reason": "Caf\u00e9 OK",
            "final": True,
        },
    ]
    # The same lines referee.events reads back: no other module writes an event's keys.
    assert [events.from_json(line) for line in path.read_text().splitlines()] == [
        ReferResponse(12.5, "c1", 2, 202),
        NotifyOutcome(12.5, "c1", 3, 2, status=200, reason="Caf\u00e9 OK"),
    ]


def test_event_file_rotation_is_followed(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    mono = Clock(100.0)
    log = EventLog(str(path), monotonic=mono)
    log.write(response(1))
    path.rename(tmp_path / "events.jsonl.1")  # logrotate
    log.write(response(2))  # within the second: still the old (renamed) file
    mono.now += 1.5
    log.write(response(3))
    assert [e["cseq"] for e in lines(tmp_path / "events.jsonl.1")] == [1, 2]
    assert [e["cseq"] for e in lines(path)] == [3]


def test_dialog_store_round_trip_and_tags_in_either_order() -> None:
    fake = FakeKSR()
    store = DialogStore(fake, "referee_dlg")
    store.put(DialogRecord("c1", "pbx2", "ft", "", "2001", "1003"))
    store.set_to_tag("c1", "tt")
    store.set_to_tag("c1", "other")  # the first to-tag (first answer) stays
    record = store.get("c1")
    assert record is not None
    assert record.has_tags("tt", "ft") and record.has_tags("ft", "tt")
    assert not record.has_tags("ft", "other")
    assert record.has_party("2001") and not record.has_party("") and not record.has_party("1002")
    store.forget("c1")
    assert store.get("c1") is None


def test_a_replaces_names_a_dialog_by_both_tags_or_by_its_from_tag_while_the_to_tag_is_unknown() -> None:
    # The existing-mode drop-in writes this JSON natively from the INVITE (referee.cfg.j2).
    fake = FakeKSR()
    fake.tables["referee_dlg"] = {
        "c2": '{"pbx":"","from_tag":"ft","to_tag":"","from_user":"1002","to_user":"1003"}'
    }
    learned = DialogStore(fake, "referee_dlg").get("c2")
    assert learned is not None and learned.pbx == "" and learned.has_party("1002")
    assert learned.named_by("tt", "ft") and learned.named_by("ft", "anything")
    assert not learned.named_by("tt", "other")
    answered = DialogRecord("c1", "pbx2", "ft", "tt", "2001", "1003")
    assert answered.named_by("tt", "ft") and not answered.named_by("ft", "other")


def test_dialog_store_ignores_foreign_values() -> None:
    fake = FakeKSR()
    store = DialogStore(fake, "referee_dlg")
    fake.tables["referee_dlg"] = {"a": "not json", "b": json.dumps({"pbx": "pbx1"}), "c": "[1]"}
    assert store.get("a") is None
    assert store.get("b") is None  # missing fields
    assert store.get("c") is None
    assert store.get("missing") is None


def test_unwritable_event_file_loses_events_not_decisions(tmp_path: Path) -> None:
    errors: list[str] = []
    mono = Clock(100.0)
    log = EventLog(str(tmp_path / "no-such-dir" / "events.jsonl"), monotonic=mono, on_error=errors.append)
    log.write(response(1))
    log.write(response(2))
    assert log.lost == 2
    assert len(errors) == 1  # reported at most every 10 s
    assert "cannot write events" in errors[0]
    mono.now += 11
    log.write(response(3))
    assert len(errors) == 2


def test_refer_still_decided_when_events_cannot_be_written(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    handler.events.path = str(tmp_path / "missing" / "events.jsonl")
    fake.request(refer("<sip:09001234567@lab.test>"))
    handler.ksr_request_route(None)
    assert fake.replies == [(403, "Transfer to +449001234567 denied: premium-rate (09)")]
    fake.request(refer("<sip:1003@lab.test>", call_id="c2"))
    handler.ksr_request_route(None)
    assert len(fake.relays) == 1
    assert any("cannot write events" in text for text in fake.logged("err"))


def test_a_record_starts_with_its_tags_for_a_native_cfg_and_reads_back_in_either_form() -> None:
    fake = FakeKSR()
    store = DialogStore(fake, "referee_dlg")
    record = DialogRecord("c3", "pbx1", "ft", "tt", "1002", "1003", depth=2, party="1002")
    store.put(record)
    raw = fake.tables["referee_dlg"]["c3"]
    assert raw.partition("|")[0] == "ft:tt"  # kamailio.cfg.j2 reads the tags with {s.before,|}
    assert store.get("c3") == record
    # Tags a lenient parser let through, with the separators in them: the JSON form, still read back.
    for odd in ("f:t", "f|t", "{ft"):
        store.put(DialogRecord("c4", "pbx1", odd, "tt", "1002", "1003"))
        assert fake.tables["referee_dlg"]["c4"].startswith("{")
        found = store.get("c4")
        assert found is not None and found.from_tag == odd and found.to_tag == "tt"
    assert store.get("c5") is None
    fake.tables["referee_dlg"]["c5"] = "ft:tt|not json"
    assert store.get("c5") is None
