"""A NOTIFY waits, bounded, until its REFER's final response has been marked and sent."""

from __future__ import annotations

from pathlib import Path

from kemi_fixtures import Clock, make, refer, request

from referee.kemi.notify import ReferAnswers
from referee.testing.fake_ksr import FakeKSR

NOTIFY = ["Event: refer", "Subscription-State: active", "Content-Type: message/sipfrag"]


def answers(fake: FakeKSR, clock: Clock, slept: list[float]) -> ReferAnswers:
    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    return ReferAnswers(fake, hold_max=0.2, grace=0.02, clock=clock, sleep=sleep)


def test_no_refer_relayed_no_wait() -> None:
    clock, slept = Clock(5.0), []
    gate = answers(FakeKSR(), clock, slept)
    assert gate.hold("c1") == 0 and slept == []


def test_an_answered_refer_holds_only_for_the_rest_of_the_grace() -> None:
    clock, slept = Clock(5.0), []
    gate = answers(FakeKSR(), clock, slept)
    gate.relayed("c1")
    gate.answered("c1")
    clock.now += 0.005
    assert abs(gate.hold("c1") - 0.015) < 1e-6
    clock.now += 1.0
    assert gate.hold("c1") == 0  # later NOTIFYs of the subscription: no wait


def test_a_pending_refer_holds_until_answered_or_the_bound() -> None:
    clock, slept = Clock(5.0), []
    fake = FakeKSR()
    gate = answers(fake, clock, slept)
    gate.relayed("c1")
    assert abs(gate.hold("c1") - 0.2) < 1e-6  # never answered: released at hold_max
    gate.relayed("c2")
    polls = 0

    def answer_after_three_polls(seconds: float) -> None:
        nonlocal polls
        polls += 1
        clock.now += seconds
        if polls == 3:
            gate.answered("c2")

    gate._sleep = answer_after_three_polls
    held = gate.hold("c2")
    assert polls == 4 and abs(held - (0.003 + 0.02)) < 1e-6


def test_the_proxy_marks_relayed_refers_and_their_answers(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(refer("<sip:1003@lab.test>"))
    handler.ksr_request_route(None)
    assert fake.tables["referee_refer"]["call-1@test"] == "P"
    fake.reply("SIP/2.0 202 Accepted\r\nCall-ID: call-1@test\r\nCSeq: 1 REFER\r\nContent-Length: 0\r\n\r\n")
    handler.ksr_onreply_refer(None)
    assert str(fake.tables["referee_refer"]["call-1@test"]).startswith("A ")
    # A rejected REFER gets no NOTIFY: nothing marked.
    fake.request(refer("<sip:09001234567@lab.test>", call_id="call-2@test"))
    handler.ksr_request_route(None)
    assert "call-2@test" not in fake.tables["referee_refer"]
    # The NOTIFY of the answered one is relayed (after the grace at most).
    fake.request(
        request(
            "NOTIFY",
            to="<sip:1002@lab.test>;tag=ft1",
            headers=NOTIFY,
            body="SIP/2.0 100 Trying\r\n",
            route=True,
        ),
        src_ip="127.0.1.20",  # pbx1, the REFER's recipient, sends the NOTIFY
    )
    handler.ksr_request_route(None)
    assert len(fake.relays) == 1
