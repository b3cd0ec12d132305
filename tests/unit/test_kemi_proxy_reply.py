"""The proxy's own final answers to the requests it was to relay are events like any other response: an
INVITE's 503 toward a PBX that is down, its 408 after a timeout, its 500 when relaying or routing failed
(``proxy.reply``); a REFER's stays its ``refer.response`` marked ``local``."""

from __future__ import annotations

from pathlib import Path

import pytest
from kemi_fixtures import PBX1, events, make, refer, request

from referee.events import ProxyReply, ReferResponse, from_dict
from referee.kemi import DialogRecord, ReferenceProxy
from referee.testing.fake_ksr import FakeKSR

PBX1_URI = f"sip:{PBX1}:5060"
BOB = "127.0.1.32"


def time_out(fake: FakeKSR, handler: ReferenceProxy, raw: str, src_ip: str) -> None:
    """Route ``raw``, see it relayed once, then run tm's failure route as for a branch that timed out."""
    fake.request(raw, src_ip=src_ip)
    handler.ksr_request_route(None)
    assert len(fake.relays) == 1
    fake.branch_timeout = True
    handler.ksr_failure_relay(None)


def the_reply(tmp: Path) -> ProxyReply:
    """The one event written: a proxy.reply."""
    (line,) = events(tmp)
    reply = from_dict(line)
    assert isinstance(reply, ProxyReply)
    return reply


def test_an_invite_toward_a_pbx_that_is_down_is_answered_503_and_written(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.ds_down.add(PBX1_URI)
    fake.request(request("INVITE", call_id="down-1", cseq=5), src_ip=BOB)
    handler.ksr_request_route(None)
    assert fake.replies == [(503, "Service Unavailable")]
    assert [from_dict(e) for e in events(tmp_path)] == [
        ProxyReply(
            events(tmp_path)[0]["time"], "INVITE", 503, "Service Unavailable", "down-1", 5, "pbx1", BOB
        )
    ]


def test_an_invite_that_timed_out_is_the_proxys_408_naming_its_pbx(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(request("INVITE", call_id="slow-1", cseq=3), src_ip=BOB)
    handler.ksr_request_route(None)
    assert fake.relays[0].dsturi == PBX1_URI and fake.on_failure == "ksr_failure_relay"
    fake.branch_timeout = True  # tm runs the failure route: no reply before the timer fired
    handler.ksr_failure_relay(None)
    reply = the_reply(tmp_path)
    assert (reply.method, reply.status, reply.reason, reply.call_id, reply.cseq) == (
        "INVITE",
        408,
        "Request Timeout",
        "slow-1",
        3,
    )
    assert (reply.pbx, reply.src) == ("pbx1", BOB)


def test_a_branch_that_was_answered_writes_nothing(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(request("INVITE", call_id="busy-1"), src_ip=BOB)
    handler.ksr_request_route(None)
    fake.branch_timeout = False  # the PBX answered (486): its answer is relayed, not the proxy's
    handler.ksr_failure_relay(None)
    assert events(tmp_path) == []


def test_a_timeout_toward_a_phone_names_no_pbx(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.locations["1001"] = "sip:1001@127.0.1.31:5060"
    time_out(fake, handler, request("INVITE", frm="<sip:1003@lab.test>;tag=p", call_id="to-phone"), PBX1)
    reply = the_reply(tmp_path)
    assert (reply.status, reply.pbx, reply.src) == (408, "", PBX1)


def test_a_bye_to_a_dead_pbx_is_the_proxys_408_naming_the_pbx_of_its_contact(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    handler.dialogs.put(DialogRecord("gone", "pbx1", "b", "pb", "1002", "1001", party="1002"))
    bye = request(
        "BYE",
        ruri=f"sip:1001@{PBX1}:5060",
        frm="<sip:1002@lab.test>;tag=b",
        to="<sip:1001@lab.test>;tag=pb",
        call_id="gone",
        route=True,
    )
    time_out(fake, handler, bye, BOB)
    assert fake.relays[0].dsturi == ""  # to the R-URI, the PBX's Contact
    reply = the_reply(tmp_path)
    assert (reply.method, reply.status, reply.pbx) == ("BYE", 408, "pbx1")


def test_a_qualify_ping_that_timed_out_writes_nothing(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.locations["1001"] = "sip:1001@127.0.1.31:5060"
    time_out(fake, handler, request("OPTIONS", frm="<sip:pbx1@lab.test>;tag=q", call_id="qualify"), PBX1)
    assert events(tmp_path) == []


def test_a_relay_that_fails_is_the_proxys_500(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(request("INVITE", call_id="norelay"), src_ip=BOB)
    fake.relay_ok = False
    handler.ksr_request_route(None)
    assert fake.replies == [(500, "Relay Failed")]
    reply = the_reply(tmp_path)
    assert (reply.method, reply.status, reply.pbx) == ("INVITE", 500, "pbx1")


def test_an_internal_error_is_the_proxys_500_and_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, handler = make(tmp_path)

    def broken(msg: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(handler, "route_location", broken)
    fake.request(request("INVITE", call_id="bug-1", cseq=9), src_ip=BOB)
    handler.ksr_request_route(None)
    assert fake.replies == [(500, "Server Internal Error")]
    reply = the_reply(tmp_path)
    assert (reply.method, reply.status, reply.call_id, reply.cseq) == ("INVITE", 500, "bug-1", 9)


def test_a_refer_toward_a_pbx_that_is_down_stays_a_local_refer_response(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.ds_down.add(PBX1_URI)
    fake.request(refer("<sip:1003@lab.test>", call_id="r-down", cseq=4), src_ip=BOB)
    handler.ksr_request_route(None)
    assert fake.replies == [(503, "Service Unavailable")]
    kinds = [from_dict(e) for e in events(tmp_path)]
    responses = [e for e in kinds if isinstance(e, ReferResponse)]
    assert [(r.status, r.local, r.cseq) for r in responses] == [(503, True, 4)]
    assert not any(isinstance(e, ProxyReply) for e in kinds)
