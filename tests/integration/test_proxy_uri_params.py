"""Refer-To URI parameters through the real Kamailio (issue 13): what the PBX receives carries no maddr.

The test policy allows user and method, and transport=udp or tcp for lab.test.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sippgen as g
from harness import PBX1, PBX2, POLICY, Kamailio, header, running
from test_proxy_refer import DAVE_REPLACES_ESCAPED, dave_calls_carol, pbx, phone, refer_rejected, uas_calls


def relayed_refer_to(kamailio: Kamailio, tmp: Path, refer_to: str) -> str:
    """Send bob's REFER with ``refer_to``; the Refer-To pbx1 received (exactly one)."""
    uas = pbx(tmp, "pbx1", PBX1, g.uas_refer())
    bob = phone(tmp, "bob", "1002", g.ood_refer(refer_to, 202))
    with running(uas):
        assert bob.run() == 0, bob.output() + kamailio.log()
        uas.wait()
    (refer,) = uas.received("REFER")
    assert "maddr" not in refer.lower()
    (relayed,) = header(refer, "Refer-To")
    (event,) = [e for e in kamailio.wait_events(2) if e["event"] == "refer.decision"]
    assert event["forwarded_refer_to"] == relayed
    return str(relayed)


def test_maddr_and_ttl_are_stripped_and_a_listed_transport_kept(kamailio: Kamailio, tmp_path: Path) -> None:
    relayed = relayed_refer_to(
        kamailio, tmp_path, "<sip:1003@lab.test;maddr=198.51.100.7;ttl=1;transport=tcp>"
    )
    assert relayed == "<sip:1003@127.0.1.20:5060;transport=tcp>"


def test_a_bare_uris_maddr_header_parameter_is_dropped(kamailio: Kamailio, tmp_path: Path) -> None:
    # Without <>, ";maddr=..." is a header parameter of the Refer-To; many UAs would read it as the URI's.
    relayed = relayed_refer_to(kamailio, tmp_path, "sip:1003@lab.test;maddr=198.51.100.7")
    assert relayed == "<sip:1003@127.0.1.20:5060>"


def test_ws_transport_is_stripped(kamailio: Kamailio, tmp_path: Path) -> None:
    relayed = relayed_refer_to(kamailio, tmp_path, "<sip:1003@lab.test;transport=ws;MADDR=198.51.100.7>")
    assert relayed == "<sip:1003@127.0.1.20:5060>"


def test_attended_transfer_pointed_at_the_owning_pbx_carries_no_maddr(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    with running(pbx(tmp_path, "pbx2-call", PBX2, uas_calls())):
        dave_calls_carol(tmp_path)
    pbx2 = pbx(tmp_path, "pbx2", PBX2, g.uas_refer())
    refer_to = f"<sip:1001@lab.test;maddr=198.51.100.7?Replaces={DAVE_REPLACES_ESCAPED}>"
    dave = phone(tmp_path, "dave2", "2001", g.ood_refer(refer_to, 202, user="2001"))
    with running(pbx2):
        assert dave.run() == 0, dave.output() + kamailio.log()
    (received,) = pbx2.received("REFER")
    (relayed,) = header(received, "Refer-To")
    assert relayed.startswith("<sip:1001@127.0.1.21:5060?Replaces=dlg1-pbx2%40test")
    assert "maddr" not in received.lower()


def test_reject_mode_refuses_maddr_before_anything_is_relayed(
    start_kamailio: Callable[..., Kamailio], tmp_path: Path
) -> None:
    strict = POLICY.read_text().replace('on_uri_parameter = "strip"', 'on_uri_parameter = "reject"')
    assert strict != POLICY.read_text()
    (tmp_path / "policy.toml").write_text(strict)
    kamailio = start_kamailio()
    event = refer_rejected(kamailio, tmp_path, "<sip:1003@lab.test;maddr=198.51.100.7>", 403)
    assert event["decision"]["rule"] == "params"  # type: ignore[index]
    assert "maddr" in event["decision"]["reason"]  # type: ignore[index]
