"""The dialog map is written before the message that lets a phone name the dialog leaves the proxy.

A REFER with Replaces is decided by whichever worker receives it, from the shared htable. The phone
can only name the consultation dialog (its Call-ID, its from-tag, the PBX's to-tag) once it has the
200 OK. So the map must hold the dialog before its INVITE is relayed, and the PBX's to-tag before
tm relays the 200 (the onreply route runs before tm relays the reply, in the same worker). These
tests catch the map at those two moments, as another worker would see it.
"""

from __future__ import annotations

from pathlib import Path

from kemi_fixtures import PBX1, events, make, refer, request

from referee.kemi.dialogs import DialogRecord
from referee.testing.fake_ksr import FakeKSR

BOB = "127.0.1.32"
CONSULT = "consult-1@test"
OK_200 = (
    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.1.32\r\nFrom: <sip:1002@lab.test>;tag=bobc\r\n"
    "To: <sip:1003@lab.test>;tag=pbx1tag\r\nCall-ID: consult-1@test\r\nCSeq: 2 INVITE\r\n\r\n"
)


def consultation_invite() -> str:
    """bob (1002) calls carol (1003) through pbx1, with credentials (after the proxy's 407)."""
    frm, to = "<sip:1002@lab.test>;tag=bobc", "<sip:1003@lab.test>"
    return request("INVITE", ruri="sip:1003@lab.test", frm=frm, to=to, call_id=CONSULT, cseq=2)


def in_map(fake: FakeKSR, call_id: str) -> str:
    return str(fake.tables.get("referee_dlg", {}).get(call_id, ""))


def test_the_consultation_is_in_the_map_before_its_invite_leaves(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    seen_at_relay: list[str] = []
    relay = fake.tm.t_relay

    def relay_and_look() -> int:
        seen_at_relay.append(in_map(fake, CONSULT))  # what another worker reads at this moment
        return relay()

    fake.tm.t_relay = relay_and_look  # type: ignore[method-assign]
    invite = consultation_invite()
    fake.request(invite, src_ip=BOB)
    handler.ksr_request_route(None)
    assert len(seen_at_relay) == 1 and seen_at_relay[0].startswith("bobc:|")  # its From tag, first


def test_the_pbx_to_tag_is_in_the_map_when_the_onreply_route_returns(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    invite = consultation_invite()
    fake.request(invite, src_ip=BOB)
    handler.ksr_request_route(None)
    fake.reply(OK_200, src_ip=PBX1)
    handler.ksr_onreply_invite(None)  # tm relays the 200 to bob only after this returns
    record = handler.dialogs.get(CONSULT)
    assert record == DialogRecord(CONSULT, "pbx1", "bobc", "pbx1tag", "1002", "1003", party="1002")
    # bob's REFER naming the consultation, whatever worker decides it: allowed, not 481.
    target = f"<sip:1003@lab.test?Replaces={CONSULT}%3Bto-tag%3Dpbx1tag%3Bfrom-tag%3Dbobc>"
    fake.request(refer(target, call_id="alice-leg@test"), src_ip=BOB)
    handler.ksr_request_route(None)
    assert fake.replies == [] and [r.method for r in fake.relays] == ["REFER"]
    assert events(tmp_path)[-1]["decision"]["allowed"] is True
