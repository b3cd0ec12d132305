"""The proxy's Prometheus metrics through Kamailio's xhttp_prom, scraped after REFERs (docs/metrics.md)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import PORT, PROXY, Kamailio, refer_bytes, sip_request, status_of

from referee.events import ReferDecision, from_dict
from referee.metrics.scrape import Samples, fetch
from referee.policy import load_policy

METRICS = "127.0.1.60"
METRICS_PORT = 9090
URL = f"http://{METRICS}:{METRICS_PORT}/metrics"


@pytest.fixture
def proxy(start_kamailio: Callable[..., Kamailio]) -> Kamailio:
    return start_kamailio(kamailio__metrics_listen=f"tcp:{METRICS}:{METRICS_PORT}")


def refer(refer_to: bytes) -> int:
    (answer,) = sip_request(refer_bytes([b"Refer-To: " + refer_to]))
    return status_of(answer)[0]


def test_refers_are_counted_by_decision_rule_and_status(proxy: Kamailio, tmp_path: Path) -> None:
    before = fetch(URL)
    version = load_policy(tmp_path / "policy.toml").version
    # Announced by the workers at startup, before any REFER; the failure counter exists from 0.
    assert before.get("referee_proxy_policy_info", version=version) == 1
    assert before.get("referee_proxy_event_write_failures_total") == 0
    assert before.select("referee_proxy_refers_total") == {}

    assert refer(b"<sip:09001234567@lab.test>") == 403
    assert refer(b"<sip:09001234568@lab.test>") == 403
    assert refer(b"<sip:1003@lab.test") == 400
    decisions = proxy.wait_events(3)

    after = fetch(URL)
    expected: dict[tuple[str, str, str], float] = {}
    for event in map(from_dict, decisions):
        assert isinstance(event, ReferDecision)
        key = ("allowed" if event.allowed else "refused", event.rule, str(event.status))
        expected[key] = expected.get(key, 0) + 1
    counted = {
        (labels["decision"], labels["rule"], labels["status"]): value
        for items, value in after.select("referee_proxy_refers_total").items()
        for labels in [dict(items)]
    }
    assert counted == expected
    assert sum(counted.values()) == 3
    assert after.total("referee_proxy_refers_total", decision="refused", status="403") == 2


def test_a_lost_event_is_counted(proxy: Kamailio) -> None:
    assert refer(b"<sip:09001234567@lab.test>") == 403
    proxy.wait_events(1)
    events = proxy.events_path
    events.unlink()
    events.mkdir()  # the event file cannot be opened any more: the next decision's event is lost
    time.sleep(1.2)  # the writer looks at the file at most once a second
    assert refer(b"<sip:09001234567@lab.test>") == 403
    samples = fetch(URL)
    assert samples.get("referee_proxy_event_write_failures_total") == 1
    # ... and the decision is still counted: counting does not depend on the file
    assert samples.total("referee_proxy_refers_total") == 2


def test_notify_outcomes_are_counted_by_sipfrag_status(proxy: Kamailio) -> None:
    from harness import PBX1  # noqa: PLC0415

    # A PBX's NOTIFY of a REFER is relayed in a dialog; an out-of-dialog one from a PBX is routed too,
    # and its outcome written: enough to see the counter follow the sipfrag.
    for frag, count in ((b"SIP/2.0 100 Trying", 1), (b"SIP/2.0 200 OK", 2), (b"garbage", 1)):
        for _ in range(count):
            sip_request(_notify(frag), src=PBX1, authenticate=False, wait=0.5)
    samples = fetch(URL)
    assert samples.get("referee_proxy_notifies_total", status="100") == 1
    assert samples.get("referee_proxy_notifies_total", status="200") == 2
    assert samples.get("referee_proxy_notifies_total", status="invalid") == 1


def _notify(frag: bytes) -> bytes:
    import uuid  # noqa: PLC0415

    from harness import PBX1  # noqa: PLC0415

    lines = [
        b"NOTIFY sip:1002@127.0.1.32:5099 SIP/2.0",  # nobody there: the NOTIFY only has to cross the proxy
        b"Via: SIP/2.0/UDP " + PBX1.encode() + b":{port};branch=z9hG4bK" + uuid.uuid4().hex.encode(),
        b"Max-Forwards: 70",
        b"Route: <sip:127.0.1.10:5060;lr>",
        b"From: <sip:1001@lab.test>;tag=" + uuid.uuid4().hex[:8].encode(),
        b"To: <sip:1002@lab.test>;tag=" + uuid.uuid4().hex[:8].encode(),
        b"Call-ID: " + uuid.uuid4().hex.encode(),
        b"CSeq: 2 NOTIFY",
        b"Event: refer;id=1",
        b"Subscription-State: active",
        b"Content-Type: message/sipfrag",
        b"Content-Length: " + str(len(frag)).encode(),
        b"",
        frag,
    ]
    return b"\r\n".join(lines)


def test_http_on_the_sip_socket_gets_no_metrics(proxy: Kamailio) -> None:
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(f"http://{PROXY}:{PORT}/metrics", timeout=5)
    assert answer.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as other:
        urllib.request.urlopen(f"http://{METRICS}:{METRICS_PORT}/other", timeout=5)
    assert other.value.code == 404


def test_without_metrics_listen_the_cfg_loads_no_xhttp(kamailio: Kamailio) -> None:
    text = (kamailio.tmp / "kamailio.cfg").read_text()
    assert "xhttp" not in text
    assert refer(b"<sip:09001234567@lab.test>") == 403  # and the proxy works as before
    assert Samples.parse("").names == set()
