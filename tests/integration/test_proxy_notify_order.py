"""The referrer gets the REFER's 202 before the first NOTIFY, as through a stock relay.

A pbx1 stand-in answers each REFER 202 and sends the NOTIFY right after it; 16 phones REFER at
once through a 4-worker proxy, so the 202 and its NOTIFY are handled by different workers at the
same moment. Without the hold in referee.kemi.notify (a cfg without the referee_refer htable),
about 1 NOTIFY in 40 reached the phone first on the 2-core test machine (docs/benchmarks.md).
The cfg marks each REFER answered in ksr_onsend_route (core ``onsend_route_reply=yes``): had Kamailio
not run it for the 202s, every NOTIFY would have waited the whole bound, which the proxy logs.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from harness import Kamailio
from notify_order import race


@pytest.mark.parametrize(
    "routing", ["native", "kemi"]
)  # the hold: suspended (async_ms_route) / in the worker
def test_no_notify_overtakes_its_202(start_kamailio: Callable[..., Kamailio], routing: str) -> None:
    proxy = start_kamailio(kamailio__children=4, kamailio__routing=routing)
    tally = race(400, parallel=16)
    assert (tally.overtaken, tally.lost) == (0, 0), f"{tally}\n{what_the_proxy_saw(proxy, tally.incomplete)}"
    assert tally.routed == 0, str(tally)
    assert tally.in_order == 400
    outcomes = [e for e in proxy.events() if e["event"] == "refer.outcome"]
    responses = [e for e in proxy.events() if e["event"] == "refer.response"]
    assert len(outcomes) == len(responses) == 400
    assert "Traceback" not in proxy.log()
    assert "its REFER is unanswered" not in proxy.log()  # each answer was marked when tm sent it


def what_the_proxy_saw(proxy: Kamailio, call_ids: list[str]) -> str:
    """For a round that never completed: the proxy's events and log lines of its Call-ID."""
    events, log = proxy.events(), proxy.log().splitlines()  # read once, whatever the number of rounds
    lines = []
    for call_id in call_ids:
        lines += [f"{call_id}: {e['event']} {e.get('status', '')}" for e in events if e["call_id"] == call_id]
        lines += [line for line in log if call_id in line]
    return "\n".join(lines)
