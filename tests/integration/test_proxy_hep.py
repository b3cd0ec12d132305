"""Homer: with ``kamailio__hep_uri`` set, a real Kamailio mirrors the transfer's SIP as HEP3 and sends
each REFER decision as a HEP log; all of it carries the transfer's Call-ID. Without it, no siptrace.

The collector is tests/integration/hep_listener.py on 127.0.1.65 (this module's address).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sippgen as g
from harness import PBX1, PHONES, PROXY, Kamailio, Sipp, header, render_cfg, running, scenario
from hep_listener import PROTO_LOG, PROTO_SIP, HepListener, HepPacket

COLLECTOR = ("127.0.1.65", 9060)


@pytest.fixture
def collector() -> Iterator[HepListener]:
    listener = HepListener(COLLECTOR)
    yield listener
    listener.close()


@pytest.fixture
def proxy_with_hep(start_kamailio: Callable[..., Kamailio]) -> Kamailio:
    return start_kamailio(kamailio__hep_uri=f"{COLLECTOR[0]}:{COLLECTOR[1]}")


def wait_for(collector: HepListener, done: Callable[[list[HepPacket]], bool]) -> list[HepPacket]:
    """The packets received once ``done`` holds, or after a few seconds (the assertions then say what lacks)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not done(collector.received()):
        time.sleep(0.05)
    return collector.received()


def decision_logs(packets: list[HepPacket]) -> list[dict[str, object]]:
    return [json.loads(p.payload) for p in packets if p.proto_type == PROTO_LOG]


def sip_lines(packets: list[HepPacket], call_id: str) -> list[str]:
    return [p.first_line for p in packets if p.proto_type == PROTO_SIP and p.call_id == call_id]


def transfer(tmp: Path) -> tuple[Sipp, Sipp]:
    """1002 calls 1001 through pbx1 and transfers the call to 1003: REFER, 202, NOTIFY 100 and 200."""
    pbx1 = Sipp(tmp, "pbx1", scenario(tmp, "pbx1", g.pbx_carries_out_transfer()), PBX1)
    bob_does = g.phone_transfers("1002", "1001", "<sip:1003@lab.test>")
    bob = Sipp(tmp, "bob", scenario(tmp, "bob", bob_does), PHONES["1002"], remote=f"{PROXY}:5060")
    return pbx1, bob


def test_transfer_sip_and_decision_reach_the_collector_with_one_call_id(
    collector: HepListener, proxy_with_hep: Kamailio, tmp_path: Path
) -> None:
    pbx1, bob = transfer(tmp_path)
    with running(pbx1):
        assert bob.run() == 0, bob.output() + proxy_with_hep.log()
        assert pbx1.wait() == 0, pbx1.output()
    (decision,) = [e for e in proxy_with_hep.wait_events(4) if e["event"] == "refer.decision"]
    call_id = str(decision["call_id"])

    def complete(packets: list[HepPacket]) -> bool:
        lines = sip_lines(packets, call_id)
        return bool(decision_logs(packets)) and sum(line.startswith("NOTIFY ") for line in lines) >= 4

    packets = wait_for(collector, complete)
    assert collector.errors == []
    lines = sip_lines(packets, call_id)
    # Mirrored as Kamailio received and sent them: the phone's REFER and the one relayed to pbx1
    # (Refer-To rewritten), pbx1's 202 and the one relayed to the phone, each NOTIFY both ways.
    refers = [p for p in packets if p.call_id == call_id and p.first_line.startswith("REFER ")]
    assert len(refers) == 2, lines
    refer_tos = {header(p.payload.decode(), "Refer-To")[0] for p in refers}
    assert refer_tos == {"<sip:1003@lab.test>", "<sip:1003@127.0.1.20:5060>"}
    assert sum(line.startswith("SIP/2.0 202 ") for line in lines) == 2, lines
    assert sum(line.startswith("NOTIFY ") for line in lines) == 4, lines
    assert any(line.startswith("INVITE ") for line in lines), lines  # the call itself, same Call-ID
    # The decision as a HEP log, its correlation id the Call-ID: the event file's line.
    (log,) = [p for p in packets if p.proto_type == PROTO_LOG]
    assert log.correlation_id == call_id
    assert json.loads(log.payload) == decision


def test_rejected_refer_goes_to_the_collector_with_its_rule(
    collector: HepListener, proxy_with_hep: Kamailio, tmp_path: Path
) -> None:
    pbx1 = Sipp(tmp_path, "pbx1", scenario(tmp_path, "pbx1", g.uas_refer()), PBX1)
    bob = Sipp(
        tmp_path,
        "bob",
        scenario(tmp_path, "bob", g.ood_refer("<sip:09001234567@lab.test>", 403)),
        PHONES["1002"],
        remote=f"{PROXY}:5060",
    )
    with running(pbx1):
        assert bob.run() == 0, bob.output()
    (decision,) = proxy_with_hep.wait_events(1)
    call_id = str(decision["call_id"])
    packets = wait_for(collector, lambda got: bool(decision_logs(got)))
    (logged,) = decision_logs(packets)
    assert logged == decision
    assert logged["call_id"] == call_id
    verdict = logged["decision"]
    assert (verdict["allowed"], verdict["status"], verdict["rule"]) == (False, 403, "prefixes:deny:+449")  # type: ignore[index]
    lines = sip_lines(packets, call_id)
    assert any(line.startswith("REFER ") for line in lines), lines
    assert any(line.startswith("SIP/2.0 403 ") for line in lines), lines
    assert pbx1.received() == []


def test_without_hep_uri_no_siptrace_is_loaded(tmp_path: Path) -> None:
    default = render_cfg(tmp_path).read_text()
    assert "siptrace" not in default
    assert "REFEREE_HEP" not in default
    with_hep = render_cfg(tmp_path, kamailio__hep_uri="192.0.2.9:9060").read_text()
    assert 'loadmodule "siptrace.so"' in with_hep
    assert 'modparam("siptrace", "duplicate_uri", "sip:192.0.2.9:9060")' in with_hep
    assert '#!define REFEREE_HEP "1"' in with_hep
