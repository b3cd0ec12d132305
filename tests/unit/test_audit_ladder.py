"""The SVG ladder drawn from an audit record (referee.audit.ladder), over the recorded lab runs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from recorded_store import HOSTILE_FROM, HOSTILE_REFER_TO, filled_store

from referee.audit.correlate import Correlator
from referee.audit.ladder import PHONE, PROXY, lanes, rows, svg
from referee.audit.store import AuditStore
from referee.events import ReferDecision, ReferResponse

SVG = "{http://www.w3.org/2000/svg}"


def texts(picture: str) -> list[str]:
    """Every text the picture shows (a tooltip's full text aside), parsed as XML: markup in a value would
    break the parse or become an element, not a text."""
    root = ET.fromstring(picture)
    return [
        "".join(node.itertext()) for node in root.iter(f"{SVG}text") if node.find(f"{SVG}title") is None
    ] + [node.text or "" for node in root.iter(f"{SVG}title")]


def by_state(store: AuditStore, flow: str) -> int:
    return next(r.id for r in store.records() if r.flow == flow and r.state == "completed")


def test_the_blind_transfer_ladder_has_the_refer_the_verdict_and_the_notifies(tmp_path: Path) -> None:
    store = filled_store(str(tmp_path / "a.db"))
    record = store.get(by_state(store, "blind"))
    assert record is not None
    assert lanes(record) == [PHONE, PROXY, "pbx1"]
    arrows = [(r.src, r.dst, r.label) for r in rows(record) if r.dst]
    assert arrows[:2] == [
        (PHONE, PROXY, "REFER <sip:1003@lab.test>"),
        (PROXY, "pbx1", "REFER <sip:1003@127.0.0.20:5060>"),
    ]
    notifies = [label for src, dst, label in arrows if (src, dst) == (PROXY, PHONE) and "NOTIFY" in label]
    assert notifies == ["NOTIFY (100 Trying)", "NOTIFY (180 Ringing)", "NOTIFY (200 OK)"]  # CSeq order
    notes = [r.label for r in rows(record) if r.src and not r.dst]
    assert notes[0] == "ALLOW rule pbx1-extensions"
    assert any(note.startswith("BlindTransfer") for note in notes)
    states = [r.label for r in rows(record) if not r.src]
    assert states == [
        "state starting",
        "state starting -> ringback",
        "state ringback -> completed (NOTIFY 200 OK)",
    ]
    shown = texts(svg(record))
    assert "REFER <sip:1003@lab.test>" in shown and "NOTIFY (200 OK)" in shown
    assert "transfer 1: blind, completed (NOTIFY 200 OK)" in shown


def test_a_refused_refer_is_answered_by_the_proxy(tmp_path: Path) -> None:
    store = filled_store(str(tmp_path / "a.db"))
    (hostile,) = [r for r in store.records() if r.state == "failed"]
    record = store.get(hostile.id)
    assert record is not None
    assert lanes(record) == [PHONE, PROXY, "PBX"]  # no PBX saw it
    assert [(r.src, r.dst, r.label) for r in rows(record) if r.src][1:] == [
        (PROXY, "", "REJECT rule target"),
        (PROXY, PHONE, "403 Transfer target not served here"),
    ]


def test_markup_in_a_refer_to_or_a_display_name_is_text(tmp_path: Path) -> None:
    store = filled_store(str(tmp_path / "a.db"))
    (hostile,) = [r for r in store.records() if r.state == "failed"]
    record = store.get(hostile.id)
    assert record is not None
    picture = svg(record)
    root = ET.fromstring(picture)
    assert {node.tag.removeprefix(SVG) for node in root.iter()} <= {
        "svg",
        "defs",
        "marker",
        "path",
        "rect",
        "text",
        "title",
        "line",
    }
    assert not [name for node in root.iter() for name in node.attrib if name.lower().startswith("on")]
    shown = "\n".join(texts(picture))
    assert f"REFER {HOSTILE_REFER_TO}" in shown
    assert HOSTILE_FROM in shown  # the referrer lane's subtitle, whole in its tooltip
    assert "<script>" not in picture and "&lt;script&gt;" in picture


def test_characters_xml_forbids_are_replaced_not_fatal(tmp_path: Path) -> None:
    store = filled_store(str(tmp_path / "a.db"))
    decision = ReferDecision(
        store.now(),
        "ctl@x",
        1,
        "sip:a\x01b@lab.test",
        "127.0.0.66",
        False,
        400,
        "Bad\x00",
        "syntax",
        refer_to="<sip:\x1b[31m@lab.test>",
    )
    record = store.get(Correlator(store).proxy(decision))
    assert record is not None
    shown = texts(svg(record))  # parses
    assert "REFER <sip:\ufffd[31m@lab.test>" in shown and "400 Bad\ufffd" in shown


def test_a_refer_accepted_without_a_subscription_says_no_notify_will_come(tmp_path: Path) -> None:
    store = filled_store(str(tmp_path / "a.db"))
    correlator = Correlator(store)
    allowed = ReferDecision(
        store.now(),
        "nosub@x",
        1,
        "sip:1002@lab.test",
        "127.0.0.32",
        True,
        202,
        "Accepted",
        "pbx1-extensions",
        refer_to="<sip:1003@lab.test>",
        forwarded_refer_to="<sip:1003@127.0.0.20:5060>",
        subscription=False,
    )
    transfer_id = correlator.proxy(allowed)
    correlator.proxy(ReferResponse(store.now(), "nosub@x", 1, 202, "Accepted", subscription=False))
    record = store.get(transfer_id)
    assert record is not None
    assert [(r.src, r.dst, r.label) for r in rows(record) if r.dst][-2:] == [
        ("PBX", PROXY, "202 Accepted (REFER, no NOTIFY)"),
        (PROXY, PHONE, "202 Accepted (REFER, no NOTIFY)"),
    ]
