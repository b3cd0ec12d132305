"""NOTIFY outcome capture: the sipfrag status of each NOTIFY of a REFER's implicit subscription.

Never blocks the NOTIFY: the caller relays it whatever it carries. A native kamailio.cfg can
call ``python_exec("route_notify")`` on an in-dialog NOTIFY before relaying it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from referee import sip
from referee.events import NotifyOutcome
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


class NotifyCapture:
    def __init__(self, ksr: KSR, events: EventLog) -> None:
        self.k = ksr
        self.events = events

    def route_notify(self, msg: object) -> int:
        """For ``python_exec``: record the outcome; always 1 (relay the NOTIFY)."""
        self.capture()
        return 1

    def capture(self) -> None:
        """Write a refer.outcome event when the current NOTIFY is one of a REFER's."""
        k = self.k
        package, _, params = text(k.hdr.get("Event")).strip().partition(";")
        if package.strip().lower() != "refer":
            return
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
