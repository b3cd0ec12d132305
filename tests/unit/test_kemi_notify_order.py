"""A NOTIFY waits, bounded, until its REFER's final response has been marked and sent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kemi_fixtures import Clock, defines, make, refer, request

from referee.kemi import make_handler
from referee.kemi.notify import HOLD_MAX, MARK_ON_SEND_DEFINE, ReferAnswers
from referee.testing.fake_ksr import FakeKSR

T1 = 0.5  # SIP's T1: the PBX retransmits an unanswered NOTIFY (UDP) after it
ACCEPTED = "SIP/2.0 202 Accepted\r\nCall-ID: {}\r\nCSeq: 1 REFER\r\nContent-Length: 0\r\n\r\n"

NOTIFY = ["Event: refer", "Subscription-State: active", "Content-Type: message/sipfrag"]


def answers(
    fake: FakeKSR, clock: Clock, slept: list[float], *, mark_on_send: bool = False, hold_max: float = 0.2
) -> ReferAnswers:
    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    return ReferAnswers(
        fake, mark_on_send=mark_on_send, hold_max=hold_max, grace=0.02, clock=clock, sleep=sleep
    )


def pending(*, mark_on_send: bool = False, hold_max: float = 0.2) -> tuple[FakeKSR, Clock, ReferAnswers]:
    """A fake proxy whose REFER of dialog c1 was relayed at t=5 s, and its gate."""
    fake, clock = FakeKSR(), Clock(5.0)
    gate = answers(fake, clock, [], mark_on_send=mark_on_send, hold_max=hold_max)
    gate.relayed("c1")
    return fake, clock, gate


class Polls:
    """A sleep that moves the clock and does ``then`` at the ``at``-th poll (the other worker's step)."""

    def __init__(self, clock: Clock, at: int, then: Callable[[], None]) -> None:
        self.clock, self.at, self.then, self.count = clock, at, then, 0

    def __call__(self, seconds: float) -> None:
        self.count += 1
        self.clock.now += seconds
        if self.count == self.at:
            self.then()


def state(fake: FakeKSR, call_id: str) -> str:
    return str(fake.tables["referee_refer"].get(call_id, ""))


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
    _fake, clock, gate = pending()
    assert abs(gate.hold("c1") - 0.2) < 1e-6  # never answered: released at hold_max
    gate.relayed("c2")
    gate._sleep = polls = Polls(clock, 3, lambda: gate.answered("c2"))
    held = gate.hold("c2")
    assert polls.count == 4 and abs(held - (0.003 + 0.02)) < 1e-6


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


def test_marked_on_send_the_answer_is_pending_until_tm_sends_it() -> None:
    fake, clock, gate = pending(mark_on_send=True)
    fake.reply(ACCEPTED.format("c1"))
    gate.replying("c1")  # the onreply route's last step: tm has not sent the 202 yet
    assert state(fake, "c1") == "P"
    clock.now += 0.003  # the answering worker preempted between its onreply route and the send
    gate.sending()  # tm's onsend_route for that 202, in the same worker
    assert state(fake, "c1") == "A 5.003000"


def test_a_notify_waits_through_the_onreply_window_then_the_grace_after_the_send() -> None:
    fake, clock, gate = pending(mark_on_send=True)
    fake.reply(ACCEPTED.format("c1"))
    gate.replying("c1")
    # The answering worker is preempted for 50 ms after its onreply route, longer than the grace.
    gate._sleep = Polls(clock, 50, gate.sending)
    held = gate.hold("c1")
    assert abs(held - (0.050 + 0.02)) < 1e-6  # released a grace after the send mark, not the onreply


def test_another_message_sent_first_does_not_mark_and_forgets_the_answer() -> None:
    fake, _clock, gate = pending(mark_on_send=True)
    gate.replying("c1")  # a 202 tm does not relay (a retransmission): no onsend for it
    fake.reply(ACCEPTED.format("other"))
    gate.sending()  # the next message this worker sends is another dialog's
    assert state(fake, "c1") == "P"
    fake.reply(ACCEPTED.format("c1"))
    gate.sending()  # nothing left to mark: a later send of this dialog changes nothing
    assert state(fake, "c1") == "P"
    gate.sending()  # and nothing pending: no KSR read either
    assert state(fake, "c1") == "P"


def test_without_mark_on_send_the_onreply_route_marks_the_answer() -> None:
    fake, _clock, gate = pending()  # a native cfg, without onsend_route_reply
    gate.replying("c1")
    assert state(fake, "c1") == "A 5.000000"


def test_a_pending_refer_holds_its_notify_for_the_default_bound_below_t1() -> None:
    _fake, _clock, gate = pending(hold_max=HOLD_MAX)
    held = gate.hold("c1")
    # held as long as the bound, and released before the PBX would retransmit the NOTIFY
    assert abs(held - HOLD_MAX) < 1e-6 and held < T1


def test_the_cfg_define_turns_marking_on_send_on(tmp_path: Path) -> None:
    _, handler = make(tmp_path)
    assert handler.answers.mark_on_send is False
    on = FakeKSR(defines={**defines(tmp_path), MARK_ON_SEND_DEFINE: '"1"'})
    assert make_handler(on).answers.mark_on_send is True


def test_the_proxy_marks_a_refer_answered_in_its_onsend_route(tmp_path: Path) -> None:
    fake = FakeKSR(defines={**defines(tmp_path), MARK_ON_SEND_DEFINE: '"1"'})
    handler = make_handler(fake)
    fake.request(refer("<sip:1003@lab.test>"))
    handler.ksr_request_route(None)
    handler.ksr_onsend_route(None)  # the REFER relayed to the PBX: a request, nothing to mark
    assert state(fake, "call-1@test") == "P"
    fake.reply(ACCEPTED.format("call-1@test"))
    handler.ksr_onreply_refer(None)
    assert state(fake, "call-1@test") == "P"  # the 202 is not sent yet
    handler.ksr_onsend_route(None)
    assert state(fake, "call-1@test").startswith("A ")
