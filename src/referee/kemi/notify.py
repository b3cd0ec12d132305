"""NOTIFY outcome capture, and NOTIFYs kept behind the answer to their REFER.

:class:`NotifyCapture` writes the sipfrag status of each NOTIFY of a REFER's implicit
subscription as an event. It never refuses the NOTIFY: the caller relays it whatever it
carries. A native kamailio.cfg can call ``python_exec("route_notify")`` on an in-dialog
NOTIFY before relaying it.

:class:`ReferAnswers` keeps the order a stock relay keeps: the referrer gets the REFER's final
response (202) before the first NOTIFY. In a multi-process Kamailio the two are handled by
different workers: the 202 in one (the tm onreply route with its ``refer.response`` event, then
tm's relay of the reply), the NOTIFY, which the PBX sends right after it, in another. Under CPU
contention the NOTIFY's worker can finish first, and the referrer sees a NOTIFY for a REFER it has
no answer to (linphone answers ``491 Request pending`` and calls the transfer failed). So the
REFER check marks each relayed REFER pending in an htable (Call-ID -> state), the answer marks it
answered, and a NOTIFY of that dialog is held while its REFER is pending, then for ``grace``
seconds after the answer was marked.

Where the answer is marked decides what the grace must cover. With ``mark_on_send`` (the
shipped kamailio.cfg: core ``onsend_route_reply=yes``) it is marked in ``ksr_onsend_route``,
which tm runs for a relayed reply right before it hands the reply to the socket: the grace only
covers a worker preempted in the few microseconds between that mark and the ``sendto``. Without
it (a native cfg) the onreply route marks it, and the grace also covers tm's reply processing
after that route (building, locking, callbacks).

Bounded: a NOTIFY is never held longer than ``hold_max``; without the htable (a cfg that declares
none) nothing is held. While a worker holds a NOTIFY, the PBX's retransmissions of it are absorbed
by ``t_precheck_trans`` (the request route's first tm step), and ``hold_max`` is below SIP's T1
(500 ms), the PBX's first NOTIFY retransmission over UDP.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

from referee import sip
from referee.events import NotifyOutcome
from referee.kemi import shared_table
from referee.kemi.event_log import EventLog
from referee.kemi.message import log, number, text

if TYPE_CHECKING:
    from referee.kemi.ksr import KSR


def _refer_cseq(params: str) -> int | None:
    """The ``id`` parameter of ``Event: refer;id=N``: the CSeq of the REFER reported on."""
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "id":
            return number(value) or None
    return None


ANSWERS_TABLE = "referee_refer"  # htable declared in kamailio.cfg.j2
# Seconds a NOTIFY may wait for its REFER's answer. Below T1 (500 ms): the PBX does not retransmit
# the NOTIFY meanwhile. Each held NOTIFY occupies a worker, and the 202 needs one to get through.
HOLD_MAX = 0.4
GRACE = 0.02  # seconds after the answer was marked: the answering worker sends the 202
POLL = 0.001
# kamailio.cfg says it sets core ``onsend_route_reply=yes``: answers are marked in ksr_onsend_route.
MARK_ON_SEND_DEFINE = "REFEREE_REFER_ANSWER_ON_SEND"
_PENDING, _ANSWERED = "P", "A"


class ReferAnswers:
    """Relayed REFERs, pending or answered, by Call-ID (an htable all workers share)."""

    def __init__(
        self,
        ksr: KSR,
        table: str = ANSWERS_TABLE,
        *,
        mark_on_send: bool = False,
        hold_max: float = HOLD_MAX,
        grace: float = GRACE,
        clock: Callable[[], float] = time.monotonic,  # CLOCK_MONOTONIC: the same in every worker
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.k = ksr
        self.table = table
        self.mark_on_send = mark_on_send
        self.hold_max = hold_max
        self.grace = grace
        self._clock = clock
        self._sleep = sleep
        self._replying = ""  # this worker: the Call-ID of the REFER answer its onreply route just saw

    @classmethod
    def from_cfg(cls, ksr: KSR) -> ReferAnswers:
        """Marked on send when the cfg defines ``REFEREE_REFER_ANSWER_ON_SEND`` "1"."""
        return cls(ksr, mark_on_send=text(ksr.kx.get_def(MARK_ON_SEND_DEFINE)).strip().strip('"') == "1")

    def relayed(self, call_id: str) -> None:
        """The REFER check allowed a REFER of this dialog: NOTIFYs wait for its answer."""
        self.k.htable.sht_sets(self.table, call_id, _PENDING)

    def replying(self, call_id: str) -> None:
        """The tm onreply route saw the REFER's final response (its last step). Marked answered
        now, or, with ``mark_on_send``, when tm sends it (:meth:`sending`, in this same worker)."""
        if self.mark_on_send:
            self._replying = call_id
        else:
            self.answered(call_id)

    def sending(self) -> None:
        """``ksr_onsend_route``: the message about to leave is this worker's REFER answer: marked
        answered, right before tm hands it to the socket. Any other message (a request, another
        reply) costs one attribute test. A final response tm does not relay (a retransmission)
        leaves the Call-ID here until the next send: only a message of the same dialog marks it."""
        call_id, self._replying = self._replying, ""
        if call_id and text(self.k.kx.get_callid()) == call_id:
            self.answered(call_id)

    def answered(self, call_id: str) -> None:
        """Its final response is about to be sent."""
        self.k.htable.sht_sets(self.table, call_id, f"{_ANSWERED} {self._clock():.6f}")

    def remaining(self, call_id: str, started: float) -> float:
        """Seconds a NOTIFY of this dialog, held since ``started``, must still wait (0: relay it now):
        until ``grace`` after its REFER's answer was marked, a poll step while the REFER is pending, never
        past ``started + hold_max``. One step of :meth:`hold`, and what the native routing's
        asynchronous hold asks after each wait."""
        now = self._clock()
        deadline = started + self.hold_max
        if now >= deadline:
            return 0.0
        state = shared_table.read(self.k, self.table, call_id)
        if not isinstance(state, str) or not state:
            return 0.0  # no REFER relayed in this dialog (or no htable): nothing to wait for
        kind, _, when = state.partition(" ")
        if kind != _ANSWERED:
            return min(POLL, deadline - now)
        try:
            return max(0.0, min(float(when) + self.grace, deadline) - now)
        except ValueError:
            return 0.0

    def now(self) -> float:
        """This proxy's clock for holds (monotonic: the same in every worker)."""
        return self._clock()

    def hold(self, call_id: str) -> float:
        """Wait in this worker while the dialog's REFER is unanswered (bounded); the seconds waited."""
        start = self._clock()
        while (wait := self.remaining(call_id, start)) > 0:
            self._sleep(wait)
        return self._clock() - start


class NotifyCapture:
    def __init__(
        self,
        ksr: KSR,
        events: EventLog,
        answers: ReferAnswers | None = None,
        defer: Callable[[str, float, float], None] | None = None,
    ) -> None:
        self.k = ksr
        self.events = events
        self.answers = answers
        # The cfg can hold a NOTIFY without a worker (the native routing: async_ms_route): given, it is
        # called with the Call-ID, when the hold started and the seconds to wait, instead of sleeping here.
        self.defer = defer

    def route_notify(self, msg: object) -> int:
        """For ``python_exec``: record the outcome; always 1 (relay the NOTIFY)."""
        self.capture()
        return 1

    def capture(self) -> bool:
        """Write a refer.outcome event when the current NOTIFY is one of a REFER's; then hold it
        while that REFER is unanswered (see :class:`ReferAnswers`). True when the hold was deferred
        to the cfg (``defer``): the caller must not relay the NOTIFY, the cfg does once it is due."""
        k = self.k
        package, _, params = text(k.hdr.get("Event")).strip().partition(";")
        if package.strip().lower() != "refer":
            return False
        status: int | None = None
        reason = error = ""
        content_type = text(k.hdr.get("Content-Type")).split(";")[0].strip().lower()
        body = text(k.kx.get_body())
        if content_type == "message/sipfrag" and body:
            try:
                frag = sip.parse_sipfrag(body)
                status, reason = frag.code, frag.reason
            except sip.SipSyntaxError as exc:
                error = exc.reason
        else:
            error = f"no message/sipfrag body (Content-Type {content_type or 'absent'})"
        event = NotifyOutcome(
            time=self.events.now(),
            call_id=text(k.kx.get_callid()),
            cseq=number(k.pv.get("$cs")),
            refer_cseq=_refer_cseq(params),
            subscription_state=text(k.hdr.get("Subscription-State")).strip(),
            status=status,
            reason=reason,
            error=error,
        )
        self.events.write(event)
        log(k, f"referee: transfer {event.call_id} outcome {status if status is not None else error}")
        if self.answers is None:
            return False
        try:
            if self.defer is not None:
                started = self.answers.now()
                wait = self.answers.remaining(event.call_id, started)
                if wait > 0:
                    self.defer(event.call_id, started, wait)
                    return True
                return False
            held = self.answers.hold(event.call_id)
        except Exception:  # the hold only orders; the NOTIFY itself must go on whatever it hit
            log(k, f"referee: NOTIFY {event.call_id} relayed unheld:\n{traceback.format_exc()}", "err")
            return False
        self.released(event.call_id, held)
        return False

    def released(self, call_id: str, held: float) -> None:
        """The NOTIFY goes on after ``held`` seconds: said when it waited for a REFER never answered."""
        if self.answers is not None and held >= self.answers.hold_max:
            log(self.k, f"referee: NOTIFY {call_id} relayed after {held:.3f} s: its REFER is unanswered")
