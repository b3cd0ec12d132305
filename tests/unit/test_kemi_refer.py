"""referee.kemi's REFER handling, driven through the in-memory fake KSR."""

from __future__ import annotations

from pathlib import Path

import pytest
from kemi_fixtures import PBX1, PBX2, defines, events, make, refer, request

from referee.kemi import make_refer_check
from referee.testing.fake_ksr import FakeKSR


def test_allowed_refer_is_rewritten_and_relayed(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(refer("<sip:1003@lab.test>"))
    assert handler.ksr_request_route(None) == 1
    assert fake.replies == []
    (relay,) = fake.relays
    assert relay.all("Refer-To") == ["<sip:1003@127.0.1.20:5060>"]
    assert relay.get("Referred-By") == "<sip:1002@lab.test>"
    assert relay.dsturi == f"sip:{PBX1}:5060"  # out of dialog: the referrer's home PBX
    assert [op for op in fake.header_ops if "Refer-To" in op[1]] == [
        ("remove", "Refer-To"),
        ("append", "Refer-To: <sip:1003@127.0.1.20:5060>\r\n"),
    ]
    assert fake.applied_changes == 1
    assert fake.record_routed
    assert fake.on_reply == "ksr_onreply_refer"
    (event,) = events(tmp_path)
    assert event["event"] == "refer.decision"
    assert (event["call_id"], event["cseq"], event["from"]) == ("call-1@test", 1, "sip:1002@lab.test")
    assert event["decision"]["allowed"] is True
    assert event["forwarded_refer_to"] == "<sip:1003@127.0.1.20:5060>"


def test_existing_referred_by_is_kept(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(refer("<sip:1003@lab.test>", headers=["Referred-By: <sip:1002@lab.test>;cid=x"]))
    handler.ksr_request_route(None)
    (relay,) = fake.relays
    assert relay.all("Referred-By") == ["<sip:1002@lab.test>;cid=x"]


def test_denied_refer_is_answered_and_not_relayed(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(refer("<sip:09001234567@lab.test>"))
    handler.ksr_request_route(None)
    assert fake.replies == [(403, "Transfer to +449001234567 denied: premium-rate (09)")]
    assert fake.relays == []
    assert [op for op in fake.header_ops if "Refer" in op[1]] == []
    assert any("rule prefixes:deny:+449" in text for text in fake.logged("notice"))
    (event,) = events(tmp_path)
    assert event["decision"]["rule"] == "prefixes:deny:+449"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([], 400),
        (["Refer-To: <sip:1003@lab.test>", "Refer-To: <sip:1001@lab.test>"], 400),
        (["Refer-To: <sip:1003@lab.test"], 400),
        (["Refer-To: <sip:" + "1" * 5000 + "@lab.test>"], 400),
        (["Refer-To: <http://x.example/>"], 416),
        (["r: <sip:09001234567@lab.test>"], 403),  # compact form is the same header
    ],
)
def test_bad_refer_to_gets_4xx(tmp_path: Path, headers: list[str], status: int) -> None:
    fake, handler = make(tmp_path)
    fake.request(refer(None, headers=headers))
    handler.ksr_request_route(None)
    assert [code for code, _ in fake.replies] == [status]
    assert fake.relays == []
    assert fake.logged("err") == []
    (event,) = events(tmp_path)
    assert event["decision"]["status"] == status


def test_non_utf8_refer_to_gets_400_without_traceback(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    raw = refer("<sip:1003@lab.test>").encode().replace(b"1003@", b"10\xff3@")
    fake.request(raw)
    handler.ksr_request_route(None)
    assert fake.replies == [(400, "Refer-To Not UTF-8")]
    assert fake.logged("err") == []


def test_non_utf8_elsewhere_gets_400(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(refer("<sip:1003@lab.test>").encode().replace(b"call-1@test", b"call-\xfe@test"))
    handler.ksr_request_route(None)
    assert fake.replies == [(400, "Bad Request (not UTF-8)")]


def test_bug_in_policy_fails_closed_with_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, handler = make(tmp_path)
    policy = handler.policies.policy
    assert policy is not None

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("policy bug")

    monkeypatch.setattr(policy, "decide", broken)
    fake.request(refer("<sip:1003@lab.test>"))
    assert handler.ksr_request_route(None) == 1
    assert fake.replies == [(500, "Server Internal Error")]
    assert fake.relays == []
    (trace,) = fake.logged("err")
    assert "Traceback" in trace and "policy bug" in trace


def test_refer_sub_false_is_recorded_and_passed_on(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(refer("<sip:1003@lab.test>", headers=["Refer-Sub: false"]))
    handler.ksr_request_route(None)
    (relay,) = fake.relays
    assert relay.get("Refer-Sub") == "false"
    assert events(tmp_path)[0]["subscription"] is False


def test_in_dialog_refer_follows_route_set(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(refer("<sip:1003@lab.test>", to="<sip:1001@lab.test>;tag=tt", route=True, cseq=2))
    handler.ksr_request_route(None)
    (relay,) = fake.relays
    assert relay.dsturi == ""  # loose routing decides, not the home PBX
    assert not fake.record_routed
    assert relay.get("Refer-To") == "<sip:1003@127.0.1.20:5060>"


def test_policy_missing_fails_closed(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    handler.policies.policy = None
    fake.request(refer("<sip:1003@lab.test>"))
    handler.ksr_request_route(None)
    assert fake.replies == [(500, "Transfer Policy Unavailable")]
    assert fake.relays == []


# --- NOTIFY ---------------------------------------------------------------------------------


def notify(body: str, *, content_type: str = "message/sipfrag", event: str = "refer") -> str:
    return request(
        "NOTIFY",
        ruri="sip:1002@127.0.1.32:5060",
        frm="<sip:1001@lab.test>;tag=pbx",
        to="<sip:1002@lab.test>;tag=ft1",
        cseq=5,
        route=True,
        headers=[
            f"Event: {event}",
            "Subscription-State: terminated;reason=noresource",
            f"Content-Type: {content_type}",
        ],
        body=body,
    )


def test_notify_outcome_is_recorded_and_relayed(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(notify("SIP/2.0 503 Service Unavailable\r\n"), src_ip=PBX1)
    handler.ksr_request_route(None)
    assert len(fake.relays) == 1
    (event,) = events(tmp_path)
    assert event["event"] == "refer.outcome"
    assert (event["call_id"], event["status"], event["reason"], event["final"]) == (
        "call-1@test",
        503,
        "Service Unavailable",
        True,
    )
    assert event["subscription_state"] == "terminated;reason=noresource"


def test_notify_with_bad_sipfrag_is_still_relayed(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(notify("garbage"), src_ip=PBX1)
    handler.ksr_request_route(None)
    assert len(fake.relays) == 1
    assert "error" in events(tmp_path)[0]


def test_notify_of_other_packages_is_not_recorded(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(notify("x", content_type="application/dialog-info+xml", event="dialog"), src_ip=PBX1)
    handler.ksr_request_route(None)
    assert len(fake.relays) == 1
    assert events(tmp_path) == []


# --- Replaces ---------------------------------------------------------------------------------


def call_on_pbx2(fake: FakeKSR, handler: object) -> None:
    """2001 calls 1003 through pbx2; the 200 OK carries to-tag 'pbx2tag'."""
    fake.request(
        request(
            "INVITE",
            ruri="sip:1003@lab.test",
            frm="<sip:2001@lab.test>;tag=dft",
            to="<sip:1003@lab.test>",
            call_id="d1",
        ),
        src_ip="127.0.1.34",
    )
    handler.ksr_request_route(None)  # type: ignore[attr-defined]
    fake.reply(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.1.34\r\nFrom: <sip:2001@lab.test>;tag=dft\r\n"
        "To: <sip:1003@lab.test>;tag=pbx2tag\r\nCall-ID: d1\r\nCSeq: 1 INVITE\r\n\r\n"
    )
    handler.ksr_onreply_invite(None)  # type: ignore[attr-defined]


def test_invite_records_dialog_and_learns_to_tag(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    call_on_pbx2(fake, handler)
    record = handler.dialogs.get("d1")
    assert record is not None
    assert (record.pbx, record.from_tag, record.to_tag, record.from_user, record.to_user) == (
        "pbx2",
        "dft",
        "pbx2tag",
        "2001",
        "1003",
    )


def test_invite_with_replaces_goes_to_owning_pbx(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    call_on_pbx2(fake, handler)
    fake.request(
        request("INVITE", call_id="a1", headers=["Replaces: d1;to-tag=pbx2tag;from-tag=dft"]),
        src_ip="127.0.1.31",
    )
    handler.ksr_request_route(None)
    (relay,) = fake.relays
    assert relay.dsturi == f"sip:{PBX2}:5060"


def test_invite_with_replaces_wrong_tags_gets_481(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    call_on_pbx2(fake, handler)
    fake.request(request("INVITE", call_id="a1", headers=["Replaces: d1;to-tag=other;from-tag=dft"]))
    handler.ksr_request_route(None)
    assert fake.replies == [(481, "Call/Transaction Does Not Exist")]
    assert fake.relays == []


def test_invite_with_malformed_replaces_gets_400(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(request("INVITE", headers=["Replaces: ;;;"]))
    handler.ksr_request_route(None)
    assert fake.replies[0][0] == 400


def test_refer_replaces_hijack_and_own_dialog(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    call_on_pbx2(fake, handler)
    target = "<sip:1001@lab.test?Replaces=d1%3Bto-tag%3Dpbx2tag%3Bfrom-tag%3Ddft>"
    fake.request(refer(target))  # from 1002: no party to d1
    handler.ksr_request_route(None)
    assert fake.replies == [(403, "Replaces names a dialog the referrer is not a party to")]

    fake.request(refer(target, frm="<sip:2001@lab.test>;tag=x", call_id="r2"), src_ip="127.0.1.34")
    handler.ksr_request_route(None)
    (relay,) = fake.relays
    refer_to = relay.get("Refer-To")
    assert refer_to is not None and refer_to.startswith(f"<sip:1001@{PBX2}:5060?Replaces=")
    assert relay.dsturi == f"sip:{PBX2}:5060"


def test_refer_replaces_unknown_dialog_gets_481(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(refer("<sip:1001@lab.test?Replaces=nope%3Bto-tag%3Da%3Bfrom-tag%3Db>"))
    handler.ksr_request_route(None)
    assert fake.replies == [(481, "Replaced Dialog Unknown")]
    assert events(tmp_path)[0]["decision"]["rule"] == "replaces-unknown"


def test_bye_forgets_the_dialog(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    call_on_pbx2(fake, handler)
    fake.request(request("BYE", call_id="d1", to="<sip:1003@lab.test>;tag=pbx2tag", route=True))
    handler.ksr_request_route(None)
    assert handler.dialogs.get("d1") is None


def test_notify_event_id_names_the_refer(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(notify("SIP/2.0 180 Ringing\r\n", event="refer;id=7"), src_ip=PBX1)
    handler.ksr_request_route(None)
    (event,) = events(tmp_path)
    assert (event["refer_cseq"], event["status"], event["final"]) == (7, 180, False)


# --- transfer depth ---------------------------------------------------------------------------


def replacing(fake: FakeKSR, handler: object, call_id: str, frm: str, replaces: str, src: str) -> None:
    """An INVITE to 1003 replacing dialog ``replaces``."""
    invite = request(
        "INVITE", call_id=call_id, frm=frm, to="<sip:1003@lab.test>", headers=[f"Replaces: {replaces}"]
    )
    fake.request(invite, src_ip=src)
    handler.ksr_request_route(None)  # type: ignore[attr-defined]


def test_dialog_made_by_a_transfer_carries_its_depth_to_the_policy(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    defines(tmp_path)
    policy.write_text(policy.read_text().replace("max_depth = 3", "max_depth = 1"))
    fake, handler = make(tmp_path)
    call_on_pbx2(fake, handler)  # d1: an ordinary call, depth 0
    replacing(
        fake, handler, "a1", "<sip:1001@lab.test>;tag=aft", "d1;to-tag=pbx2tag;from-tag=dft", "127.0.1.31"
    )
    a1 = handler.dialogs.get("a1")
    assert a1 is not None and a1.depth == 1  # the attended transfer of d1
    handler.dialogs.set_to_tag("a1", "att")
    replacing(fake, handler, "a2", "<sip:2001@lab.test>;tag=x", "a1;to-tag=att;from-tag=aft", "127.0.1.34")
    a2 = handler.dialogs.get("a2")
    assert a2 is not None and a2.depth == 2  # a transfer of a transfer
    # A REFER inside a1 (depth 1) passes max_depth 1; inside a2 (depth 2) it does not.
    in_dialog = dict(to="<sip:1003@lab.test>;tag=t", route=True, cseq=3)
    fake.request(refer("<sip:1002@lab.test>", call_id="a1", **in_dialog), src_ip="127.0.1.31")
    handler.ksr_request_route(None)
    assert fake.replies == [] and len(fake.relays) == 1
    fake.request(refer("<sip:1002@lab.test>", call_id="a2", **in_dialog), src_ip="127.0.1.34")
    handler.ksr_request_route(None)
    assert fake.replies == [(482, "Transfer depth 2 exceeds 1")]
    assert events(tmp_path)[-1]["decision"]["rule"] == "depth"


def test_invite_with_referred_by_starts_at_depth_one(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(
        request(
            "INVITE",
            call_id="t1",
            frm="<sip:1001@lab.test>;tag=a",
            headers=["Referred-By: <sip:1002@lab.test>"],
        )
    )
    handler.ksr_request_route(None)
    fake.request(request("INVITE", call_id="t2", frm="<sip:1001@lab.test>;tag=b"))
    handler.ksr_request_route(None)
    t1, t2 = handler.dialogs.get("t1"), handler.dialogs.get("t2")
    assert t1 is not None and t1.depth == 1
    assert t2 is not None and t2.depth == 0


# --- a native kamailio.cfg: python_exec("route_refer"), python_exec("route_notify") ----------------


def test_refer_check_alone_for_python_exec(tmp_path: Path) -> None:
    fake = FakeKSR(defines=defines(tmp_path))
    check = make_refer_check(fake)
    fake.request(refer("<sip:1003@lab.test>"))
    assert check.route_refer(None) == 1  # allowed: the cfg relays it
    assert fake.replies == [] and fake.relays == []
    assert fake.applied_headers().count(("Refer-To", "<sip:1003@127.0.1.20:5060>")) == 1
    assert fake.on_reply == "ksr_onreply_refer"
    fake.request(refer("<sip:09001234567@lab.test>", call_id="c2"))
    assert check.route_refer(None) == -1  # answered: the cfg exits
    assert fake.replies == [(403, "Transfer to +449001234567 denied: premium-rate (09)")]
    fake.reply(
        "SIP/2.0 202 Accepted\r\nVia: SIP/2.0/UDP 127.0.1.32\r\nFrom: <sip:1002@lab.test>;tag=ft1\r\n"
        "To: <sip:1001@lab.test>;tag=x\r\nCall-ID: call-1@test\r\nCSeq: 1 REFER\r\n\r\n"
    )
    assert check.ksr_onreply_refer(None) == 1
    assert [(e["event"], e["decision"]["allowed"]) for e in events(tmp_path)[:2]] == [
        ("refer.decision", True),
        ("refer.decision", False),
    ]
    assert events(tmp_path)[2] == {
        "time": events(tmp_path)[2]["time"],
        "event": "refer.response",
        "call_id": "call-1@test",
        "cseq": 1,
        "status": 202,
    }


@pytest.mark.parametrize(
    ("status_line", "refer_sub", "subscription"),
    [("200 OK", "false", False), ("202 Accepted", "", True), ("603 Decline", "false", True)],
)
def test_the_response_says_whether_a_subscription_follows(
    tmp_path: Path, status_line: str, refer_sub: str, subscription: bool
) -> None:
    fake = FakeKSR(defines=defines(tmp_path))
    check = make_refer_check(fake)
    header = f"Refer-Sub: {refer_sub}\r\n" if refer_sub else ""
    fake.reply(
        f"SIP/2.0 {status_line}\r\nVia: SIP/2.0/UDP 127.0.1.32\r\nFrom: <sip:1002@lab.test>;tag=ft1\r\n"
        f"To: <sip:1001@lab.test>;tag=x\r\nCall-ID: call-1@test\r\nCSeq: 1 REFER\r\n{header}\r\n"
    )
    assert check.ksr_onreply_refer(None) == 1
    (event,) = events(tmp_path)
    assert event.get("subscription", True) is subscription


def test_notify_capture_for_python_exec(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(notify("SIP/2.0 200 OK\r\n", event="refer;id=4"), src_ip=PBX1)
    assert handler.notifies.route_notify(None) == 1
    assert fake.relays == []  # the cfg relays it
    (event,) = events(tmp_path)
    assert (event["refer_cseq"], event["status"], event["final"]) == (4, 200, True)
