"""Each REFER decision as a HEP log for Homer, correlated with the transfer's SIP by Call-ID.

kamailio.cfg.j2 loads ``siptrace`` (which mirrors every SIP message to the HEP collector) and
defines ``REFEREE_HEP`` only when ``kamailio__hep_uri`` is set; without it nothing is sent and
``KSR.siptrace`` is never touched (the module is not loaded then).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from referee import events

if TYPE_CHECKING:
    from referee.kemi.ksr import KSR


class HepLog:
    """Sends a decision through siptrace's ``hlog``: a HEP3 packet of type log (100) whose
    correlation id is the REFER's Call-ID, the way Homer groups it with the call's messages."""

    def __init__(self, ksr: KSR, enabled: bool) -> None:
        self.k = ksr
        self.enabled = enabled

    def decision(self, event: events.ReferDecision) -> None:
        # The event file's line, so Homer shows what `referee transfers` reads. Best effort, like
        # HEP itself (UDP): a failed send never touches the decision.
        if self.enabled:
            self.k.siptrace.hlog_cid(event.call_id, events.to_json(event))
