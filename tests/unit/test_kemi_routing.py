"""referee.kemi's ordinary proxy routing, settings and policy reloading, through the fake KSR."""

from __future__ import annotations

from pathlib import Path

import pytest
from kemi_fixtures import PBX1, PBX2, Clock, credentials, defines, events, ha1, make, refer, request

from referee.kemi import PolicyHolder, Settings, make_handler
from referee.policy import Policy, parse_policy
from referee.testing.fake_ksr import FakeKSR


def test_mod_init_object_has_every_callback_app_python3_calls(tmp_path: Path) -> None:
    _, handler = make(tmp_path)
    # app_python3 calls these by name; a missing one breaks every message.
    for name in ("child_init", "ksr_request_route", "ksr_reply_route", "ksr_onsend_route"):
        assert callable(getattr(handler, name))
    assert handler.child_init(1) == 0
    assert handler.ksr_reply_route(None) == 1
    assert handler.ksr_onsend_route(None) == 1


def test_register_is_challenged_then_saved(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    reg = dict(ruri="sip:lab.test", frm="<sip:1001@lab.test>;tag=r", to="<sip:1001@lab.test>")
    fake.request(request("REGISTER", **reg), src_ip="127.0.1.31")
    handler.ksr_request_route(None)
    assert fake.replies == [(401, "Unauthorized")]
    assert fake.challenges == ["lab.test"]

    bad = 'Authorization: Digest username="1001", realm="lab.test", response="wrong"'
    fake.request(request("REGISTER", headers=[bad], **reg), src_ip="127.0.1.31")
    handler.ksr_request_route(None)
    assert fake.replies == [(401, "Unauthorized")]
    assert fake.locations == {}

    good = f'Authorization: Digest username="1001", realm="lab.test", response="{ha1("1001")}"'
    fake.request(request("REGISTER", headers=[good], **reg), src_ip="127.0.1.31")
    handler.ksr_request_route(None)
    assert fake.replies == [(200, "OK")]
    assert fake.locations == {"1001": "sip:1002@127.0.1.32:5060"}


def test_unknown_user_register_is_challenged(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    auth = 'Authorization: Digest username="9999", realm="lab.test", response="x"'
    fake.request(request("REGISTER", ruri="sip:lab.test", headers=[auth]))
    handler.ksr_request_route(None)
    assert fake.replies == [(401, "Unauthorized")]


def test_phone_invite_goes_to_home_pbx_and_pbx_invite_to_phone(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(request("INVITE", frm="<sip:2001@lab.test>;tag=a"), src_ip="127.0.1.34")
    handler.ksr_request_route(None)
    assert fake.relays[0].dsturi == f"sip:{PBX2}:5060"
    assert fake.record_routed
    assert fake.on_reply == "ksr_onreply_invite"

    fake.locations["1001"] = "sip:1001@127.0.1.31:5060"
    fake.request(request("INVITE", ruri="sip:1001@127.0.1.10", call_id="c2"), src_ip=PBX1)
    handler.ksr_request_route(None)
    (relay,) = fake.relays
    assert relay.ruri == "sip:1001@127.0.1.31:5060"
    assert handler.dialogs.get("c2") is not None and handler.dialogs.get("c2").pbx == "pbx1"  # type: ignore[union-attr]


def test_pbx_invite_to_unregistered_phone_gets_404(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(request("INVITE", ruri="sip:1003@127.0.1.10"), src_ip=PBX1)
    handler.ksr_request_route(None)
    assert fake.replies == [(404, "Not Found")]


def test_unknown_caller_is_challenged(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(request("INVITE", frm="<sip:9999@lab.test>;tag=a"), src_ip="127.0.1.38")
    handler.ksr_request_route(None)
    assert fake.replies == [(407, "Proxy Authentication Required")]
    stranger = credentials("9999")  # no such user: no HA1 to check against
    fake.request(request("INVITE", frm="<sip:9999@lab.test>;tag=a", headers=[stranger]), src_ip="127.0.1.38")
    handler.ksr_request_route(None)
    assert fake.replies == [(407, "Proxy Authentication Required")]
    assert fake.relays == []


def test_scanner_is_dropped_silently(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(request("OPTIONS", headers=["User-Agent: friendly-scanner"]))
    handler.ksr_request_route(None)
    assert fake.dropped
    assert fake.replies == [] and fake.relays == []


def test_max_forwards_exhausted(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(request("INVITE").replace("Max-Forwards: 70", "Max-Forwards: 0"))
    handler.ksr_request_route(None)
    assert fake.replies == [(483, "Too Many Hops")]


def test_sanity_failure_stops_routing(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(request("INVITE"))
    fake.sanity_ok = False
    handler.ksr_request_route(None)
    assert fake.relays == []


def test_refer_rate_limit_per_source(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.pike_limit = 2
    codes = []
    for n in range(3):
        fake.request(refer("<sip:09001234567@lab.test>", call_id=f"r{n}"))
        handler.ksr_request_route(None)
        codes.append(fake.replies[0][0])
    assert codes == [403, 403, 503]
    # A PBX is not rate limited.
    fake.request(refer("<sip:09001234567@lab.test>", call_id="p"), src_ip=PBX1)
    handler.ksr_request_route(None)
    assert fake.replies[0][0] == 403


def test_cancel_relayed_only_with_transaction(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(request("CANCEL"))
    handler.ksr_request_route(None)
    assert fake.relays == []
    fake.request(request("CANCEL"))
    fake.check_trans = 1
    handler.ksr_request_route(None)
    assert len(fake.relays) == 1


def test_retransmission_is_absorbed(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(refer("<sip:1003@lab.test>"))
    fake.precheck_trans = 1
    handler.ksr_request_route(None)
    assert fake.relays == [] and fake.replies == []
    assert events(tmp_path) == []


def test_kdmq_is_handed_to_dmq_from_a_peer_only(tmp_path: Path) -> None:
    values = defines(tmp_path)
    values["REFEREE_DMQ_PEERS"] = '"sip:127.0.1.11:5060"'
    fake = FakeKSR(defines=values)
    handler = make_handler(fake)
    fake.request(request("KDMQ", ruri="sip:htable@127.0.1.10"), src_ip="127.0.1.11")
    handler.ksr_request_route(None)
    assert fake.dmq_handled == 1
    assert fake.relays == [] and fake.replies == []
    fake.request(request("KDMQ", ruri="sip:htable@127.0.1.10"), src_ip="127.0.1.38")
    handler.ksr_request_route(None)
    assert fake.dmq_handled == 0
    assert fake.replies == [(403, "Not A DMQ Peer")]


def test_options_to_proxy_answered(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(request("OPTIONS", ruri="sip:127.0.1.10"))
    handler.ksr_request_route(None)
    assert fake.replies == [(200, "OK")]


def test_in_dialog_without_route_gets_404(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(request("BYE", to="<sip:1001@lab.test>;tag=x"))
    handler.ksr_request_route(None)
    assert fake.replies == [(404, "Not Here")]


# --- settings ---------------------------------------------------------------------------------


def test_settings_from_defines_strip_quotes(tmp_path: Path) -> None:
    values = defines(tmp_path)
    settings = Settings.from_defines(values.get)
    assert settings.domain == "lab.test"
    assert settings.pbxs == {"pbx1": f"sip:{PBX1}:5060", "pbx2": f"sip:{PBX2}:5060"}
    assert settings.users["2001"].pbx == "pbx2"
    assert settings.users["2001"].ha1 == ha1("2001")
    assert settings.out_of_dialog_refer == "relay"
    assert settings.pbx_hosts == {PBX1: "pbx1", PBX2: "pbx2"}
    assert settings.policy_check == 0


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("REFEREE_POLICY", "", "REFEREE_POLICY"),
        ("REFEREE_PBXS", '"pbx1"', "name=uri"),
        ("REFEREE_OUT_OF_DIALOG_REFER", '"maybe"', "REFEREE_OUT_OF_DIALOG_REFER"),
    ],
)
def test_settings_errors_name_the_define(tmp_path: Path, name: str, value: str, message: str) -> None:
    values = defines(tmp_path)
    values[name] = value
    with pytest.raises(ValueError, match=message):
        Settings.from_defines(values.get)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1001:secret-in-plaintext\n", "line 1 is not user:ha1:pbx"),
        ("1001:secret-in-plaintext:pbx1\n", "HA1 of '1001' is not 32"),
        (f"# comment\n1001:{ha1('1001')}:pbx9\n", "line 2: user '1001' names unknown PBX 'pbx9'"),
    ],
)
def test_credentials_file_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    values = defines(tmp_path)
    (tmp_path / "credentials").write_text(line)
    with pytest.raises(ValueError, match=message):
        Settings.from_defines(values.get)


def test_credentials_file_others_may_read_is_refused(tmp_path: Path) -> None:
    values = defines(tmp_path)
    (tmp_path / "credentials").chmod(0o644)
    with pytest.raises(ValueError, match="readable by others"):
        Settings.from_defines(values.get)


# --- policy reload ---------------------------------------------------------------------------


def test_policy_holder_reloads_on_change_and_keeps_old_on_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    defines(tmp_path)
    logs: list[tuple[str, str]] = []
    clock = Clock()
    holder = PolicyHolder(
        str(path), parse_policy, lambda text, level: logs.append((level, text)), clock=clock
    )
    first = holder.policy
    assert isinstance(first, Policy)

    clock.now = 0.5
    path.write_text(path.read_text().replace('"premium-rate (09)"', '"changed"'))
    assert holder.check() is first  # within the interval: no look at the file
    clock.now = 1.5
    second = holder.check()
    assert second is not first and second is not None

    path.write_text("not toml [")
    clock.now = 3.0
    assert holder.check() is second
    assert holder.error is not None
    assert any(level == "err" and "keeping the previous policy" in text for level, text in logs)

    clock.now = 4.5  # the same broken file is not re-read and re-logged
    errors = len([1 for level, _ in logs if level == "err"])
    assert holder.check() is second
    assert len([1 for level, _ in logs if level == "err"]) == errors


def test_policy_holder_without_policy_reports_failure(tmp_path: Path) -> None:
    logs: list[str] = []
    holder = PolicyHolder(str(tmp_path / "missing.toml"), parse_policy, lambda text, level: logs.append(text))
    assert holder.policy is None
    assert "fails closed" in logs[0]


def test_shared_reload_counter_forces_a_reload(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)  # REFEREE_POLICY_CHECK 0: no mtime checks
    policy_file = tmp_path / "policy.toml"
    fake.request(refer("<sip:09001234567@lab.test>"))
    handler.ksr_request_route(None)
    policy_file.write_text(policy_file.read_text().replace('"premium-rate (09)"', '"by rpc"'))
    fake.request(refer("<sip:09001234567@lab.test>"))
    handler.ksr_request_route(None)
    assert fake.replies[0][1].endswith("premium-rate (09)")
    fake.request(refer("<sip:09001234567@lab.test>"))
    fake.pvs["$shv(referee_reload)"] = 1
    handler.ksr_request_route(None)
    assert fake.replies[0][1].endswith("by rpc")
