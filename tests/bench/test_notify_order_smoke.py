"""Smoke test of tests/bench/notify_order_load.py: how a lab capture is read (the runs need the lab)."""

from __future__ import annotations

from notify_order_load import HOLD_TABLE, MARK_ON_SEND, REPO, first_to_referrer, overtaking

from referee_lab.ladder import Message

TEMPLATE = REPO / "ansible" / "roles" / "kamailio" / "templates" / "kamailio.cfg.j2"


def ladder(*order: str) -> list[Message]:
    refer = Message(1.0, "bob", "proxy", "REFER", True, "c1", 2)
    found = [refer, Message(1.01, "proxy", "bob", "100 Trying", False, "c1", 2)]
    for n, kind in enumerate(order):
        when = 1.02 + n / 100
        if kind == "202":
            found.append(Message(when, "proxy", "bob", "202 Accepted", False, "c1", 2))
        else:
            found.append(Message(when, "proxy", "bob", "NOTIFY (SIP/2.0 100 Trying)", True, "c1", 9))
    return found


def test_which_came_first_to_the_referrer() -> None:
    assert first_to_referrer(ladder("202", "NOTIFY"), "bob") == "202"
    assert first_to_referrer(ladder("NOTIFY", "202"), "bob") == "NOTIFY"
    assert first_to_referrer(ladder(), "bob") is None
    assert first_to_referrer([], "bob") is None


def test_an_overtaking_says_by_how_much_and_in_which_order_the_pbx_sent_them() -> None:
    found = ladder("NOTIFY", "202")  # to bob: NOTIFY at 1.02, the 202 at 1.03
    pbx = [
        Message(1.015, "pbx1", "proxy", "202 Accepted", False, "c1", 2),
        Message(1.0153, "pbx1", "proxy", "NOTIFY (SIP/2.0 100 Trying)", True, "c1", 9),
    ]
    assert overtaking(found + pbx, "bob") == "10.0 ms before the 202; pbx1 sent the 202 first, 0.3 ms apart"
    assert overtaking(found, "bob") == "10.0 ms before the 202; pbx1's pair not captured"
    assert overtaking(ladder("NOTIFY"), "bob") == "no 202; pbx1's pair not captured"


def test_the_benchmark_knows_the_cfg_line_it_removes() -> None:
    # The "without the hold" run renders the cfg without this line: it must be the template's.
    assert HOLD_TABLE in TEMPLATE.read_text()
    # ... and the "marked in the onreply route" run without these two.
    assert all(line in TEMPLATE.read_text() for line in MARK_ON_SEND)
