"""Who may send what (issue 9): phones authenticate, PBXs are trusted by address, dialogs are the proxy's."""

from __future__ import annotations

from pathlib import Path

from kemi_fixtures import PBX1, credentials, defines, events, let_1001_send_as_1002, make, refer, request

from referee.kemi import make_handler
from referee.testing.fake_ksr import FakeKSR


def test_invite_without_credentials_is_challenged_and_reaches_no_pbx(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(request("INVITE", frm="<sip:1001@lab.test>;tag=a", auth=False), src_ip="127.0.0.99")
    handler.ksr_request_route(None)
    assert fake.replies == [(407, "Proxy Authentication Required")]
    assert fake.challenges == ["lab.test"]
    assert fake.relays == []


def test_wrong_password_is_challenged_again(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    wrong = credentials("1001", "not-the-password")
    fake.request(request("INVITE", frm="<sip:1001@lab.test>;tag=a", auth=False, headers=[wrong]))
    handler.ksr_request_route(None)
    assert fake.replies == [(407, "Proxy Authentication Required")]
    assert fake.relays == []


def test_good_credentials_are_relayed_without_them(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(request("INVITE", frm="<sip:2001@lab.test>;tag=a"), src_ip="127.0.0.99")
    handler.ksr_request_route(None)
    (relay,) = fake.relays
    assert relay.dsturi == "sip:127.0.1.21:5060"  # 2001's home PBX, whatever the address
    assert relay.get("Proxy-Authorization") is None
    record = handler.dialogs.get("call-1@test")
    assert record is not None and record.party == "2001"


def test_from_user_other_than_the_authenticated_one_is_refused(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    invite = request("INVITE", frm="<sip:1002@lab.test>;tag=a", auth=False, headers=[credentials("1001")])
    fake.request(invite)
    handler.ksr_request_route(None)
    assert fake.replies == [(403, "From Does Not Match Credentials")]
    assert fake.relays == []


def test_policy_send_as_lets_one_user_present_another_from(tmp_path: Path) -> None:
    let_1001_send_as_1002(tmp_path)
    fake, handler = make(tmp_path)
    invite = request("INVITE", frm="<sip:1002@lab.test>;tag=a", auth=False, headers=[credentials("1001")])
    fake.request(invite)
    handler.ksr_request_route(None)
    assert fake.replies == []
    assert handler.dialogs.get("call-1@test").party == "1001"  # type: ignore[union-attr]
    # ... but nobody else may present 1001.
    fake.request(
        request("INVITE", frm="<sip:1001@lab.test>;tag=b", auth=False, headers=[credentials("1002")])
    )
    handler.ksr_request_route(None)
    assert fake.replies == [(403, "From Does Not Match Credentials")]


def test_untrusted_address_claiming_to_be_a_pbx_is_challenged(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.locations["1001"] = "sip:1001@127.0.1.31:5060"
    pbx_like = request("INVITE", ruri="sip:1001@127.0.1.10", frm="<sip:pbx1@127.0.1.20>;tag=p", auth=False)
    fake.request(pbx_like.replace("127.0.1.32:5060;branch", "127.0.1.20:5060;branch"), src_ip="127.0.1.38")
    handler.ksr_request_route(None)
    assert fake.replies == [(407, "Proxy Authentication Required")]
    fake.request(pbx_like, src_ip=PBX1)  # the same request from the PBX's address goes through
    handler.ksr_request_route(None)
    assert len(fake.relays) == 1


def test_out_of_dialog_refer_from_a_phone_is_refused_by_default(tmp_path: Path) -> None:
    values = defines(tmp_path)
    del values["REFEREE_OUT_OF_DIALOG_REFER"]
    fake = FakeKSR(defines=values)
    handler = make_handler(fake)
    fake.request(refer("<sip:1003@lab.test>", auth=False), src_ip="127.0.0.99")
    handler.ksr_request_route(None)
    assert fake.replies == [(407, "Proxy Authentication Required")]
    assert events(tmp_path) == []
    fake.request(refer("<sip:1003@lab.test>"), src_ip="127.0.1.32")
    handler.ksr_request_route(None)
    assert fake.replies == [(403, "Out-Of-Dialog REFER Not Accepted")]
    assert fake.relays == []
    (event,) = events(tmp_path)
    assert (event["from"], event["decision"]["rule"]) == ("sip:1002@lab.test", "out-of-dialog")
    # A PBX's is decided as before.
    fake.locations["1001"] = "sip:1001@127.0.1.31:5060"
    fake.request(refer("<sip:1003@lab.test>", frm="<sip:1002@lab.test>;tag=p", auth=False), src_ip=PBX1)
    handler.ksr_request_route(None)
    assert len(fake.relays) == 1


def test_in_dialog_request_outside_a_known_dialog_is_refused(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(request("BYE", to="<sip:1001@lab.test>;tag=x", route=True))
    handler.ksr_request_route(None)
    assert fake.replies == [(403, "Not A Dialog Of This Proxy")]
    assert fake.relays == []
    # A known Call-ID with tags that are not its dialog's is refused too.
    fake.request(request("INVITE", frm="<sip:1002@lab.test>;tag=ft1"))
    handler.ksr_request_route(None)
    handler.dialogs.set_to_tag("call-1@test", "tt")
    fake.request(
        request("BYE", frm="<sip:1002@lab.test>;tag=guess", to="<sip:1001@lab.test>;tag=tt", route=True)
    )
    handler.ksr_request_route(None)
    assert fake.replies == [(403, "Not A Dialog Of This Proxy")]
    fake.request(request("ACK", to="<sip:1001@lab.test>;tag=nope", route=True))
    handler.ksr_request_route(None)
    assert fake.replies == [] and fake.relays == []  # an ACK is never answered


def test_in_dialog_refer_is_decided_for_the_phone_the_dialog_was_delivered_to(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.locations["1002"] = "sip:1002@127.0.1.32:5060"
    pbx_call = request(
        "INVITE", ruri="sip:1002@127.0.1.10", frm="<sip:1001@lab.test>;tag=pbx", to="<sip:1002@lab.test>"
    )
    fake.request(pbx_call, src_ip=PBX1)
    handler.ksr_request_route(None)
    assert handler.dialogs.get("call-1@test").party == "1002"  # type: ignore[union-attr]
    handler.dialogs.set_to_tag("call-1@test", "bob")
    # bob REFERs inside the call, his From claiming to be 1003: decided for 1002 all the same.
    inside = refer(
        "<sip:1003@lab.test>",
        frm="<sip:1003@lab.test>;tag=bob",
        to="<sip:1001@lab.test>;tag=pbx",
        route=True,
        cseq=2,
        auth=False,
    )
    fake.request(inside, src_ip="127.0.1.32")
    handler.ksr_request_route(None)
    assert len(fake.relays) == 1
    (event,) = events(tmp_path)
    assert event["from"] == "sip:1002@lab.test"
