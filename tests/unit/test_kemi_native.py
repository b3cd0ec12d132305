"""referee.kemi.native: the python_exec entry points of the existing-mode drop-in (route[REFEREE])."""

from __future__ import annotations

from pathlib import Path

import pytest
from kemi_fixtures import credentials, defines, events, refer, request

from referee.kemi.native import ALLOWED_VAR, REFERRER_AVP, NativeHooks, make_native_hooks
from referee.testing.fake_ksr import FakeKSR


def hooks(tmp: Path, **more: str) -> tuple[FakeKSR, NativeHooks]:
    fake = FakeKSR(defines={**defines(tmp), **more})
    return fake, make_native_hooks(fake)


def test_allowed_refer_is_rewritten_for_the_operators_routing_to_relay(tmp_path: Path) -> None:
    fake, native = hooks(tmp_path)
    fake.request(refer("<sip:1003@lab.test>"))
    native.route_refer(None)
    assert fake.pvs[ALLOWED_VAR] == 1
    assert fake.replies == []
    assert fake.relays == []  # the operator's routing relays, not referee
    assert ("append", "Refer-To: <sip:1003@127.0.1.20:5060>\r\n") in fake.header_ops
    assert fake.on_reply == "ksr_onreply_refer"  # the drop-in's onreply_route
    (event,) = events(tmp_path)
    assert (event["from"], event["decision"]["allowed"]) == ("sip:1002@lab.test", True)


def test_the_referrer_is_who_authenticated_not_the_from(tmp_path: Path) -> None:
    # 1001 (the operator console) may transfer abroad, 1002 may not: 1002's credentials on a REFER whose
    # From claims 1001 are decided as 1002's.
    fake, native = hooks(tmp_path)
    international = "<sip:+33123456789@lab.test>"
    fake.request(
        refer(international, frm="<sip:1001@lab.test>;tag=x", auth=False, headers=[credentials("1002")])
    )
    native.route_refer(None)
    assert fake.pvs[ALLOWED_VAR] == 0
    assert fake.replies[0][0] == 403
    (event,) = events(tmp_path)
    assert event["from"] == "sip:1002@lab.test"


def test_refer_without_credentials_is_refused_in_auth_mode(tmp_path: Path) -> None:
    fake, native = hooks(tmp_path)
    fake.request(refer("<sip:1003@lab.test>", auth=False))
    native.route_refer(None)
    assert fake.pvs[ALLOWED_VAR] == 0
    assert fake.replies == [(403, "Referrer Not Authenticated")]
    (event,) = events(tmp_path)
    assert (event["decision"]["rule"], event["from"]) == ("no-identity", "sip:1002@lab.test")


def test_from_mode_takes_the_from_uri(tmp_path: Path) -> None:
    fake, native = hooks(tmp_path, REFEREE_REFERRER='"from"')
    fake.request(refer("<sip:+33123456789@lab.test>", frm="<sip:1001@lab.test>;tag=x", auth=False))
    native.route_refer(None)
    assert fake.pvs[ALLOWED_VAR] == 1  # 1001's override allows international targets
    (event,) = events(tmp_path)
    assert event["from"] == "sip:1001@lab.test"


def test_avp_mode_takes_the_identity_the_calling_cfg_set(tmp_path: Path) -> None:
    fake, native = hooks(tmp_path, REFEREE_REFERRER='"avp"')
    fake.request(refer("<sip:+33123456789@lab.test>", auth=False))
    fake.pvs[REFERRER_AVP] = "sip:1001@lab.test"  # e.g. the dialog's party, found by a native proxy
    native.route_refer(None)
    assert fake.pvs[ALLOWED_VAR] == 1
    (event,) = events(tmp_path)
    assert event["from"] == "sip:1001@lab.test"
    del fake.pvs[REFERRER_AVP]
    fake.request(refer("<sip:1003@lab.test>", auth=False))
    native.route_refer(None)
    assert fake.replies == [(403, "Referrer Not Authenticated")]


def test_unknown_referrer_source_stops_kamailio(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="REFEREE_REFERRER"):
        hooks(tmp_path, REFEREE_REFERRER='"contact"')


def test_a_failing_check_refuses_instead_of_dropping(tmp_path: Path) -> None:
    fake, native = hooks(tmp_path)
    fake.request(refer("<sip:1003@lab.test>"))

    def broken(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("boom")

    native.refers.check = broken  # type: ignore[method-assign]
    native.route_refer(None)
    assert fake.pvs[ALLOWED_VAR] == 0
    assert fake.replies == [(500, "Server Internal Error")]


def test_notify_outcome_is_recorded_and_relayed(tmp_path: Path) -> None:
    fake, native = hooks(tmp_path)
    notify = request(
        "NOTIFY",
        to="<sip:1002@lab.test>;tag=tt",
        headers=["Event: refer;id=2", "Subscription-State: terminated", "Content-Type: message/sipfrag"],
        body="SIP/2.0 200 OK",
        auth=False,
    )
    fake.request(notify)
    assert native.route_notify(None) == 1
    (event,) = events(tmp_path)
    assert (event["event"], event["status"], event["refer_cseq"]) == ("refer.outcome", 200, 2)
