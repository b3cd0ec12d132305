"""The full proxy's native routing: the Python entry points kamailio.cfg.j2 calls, and the cfg naming them.

Integration tests (tests/integration, native routing by default) run the cfg in a real Kamailio; these
check each entry point alone with the fake KSR, and that every name the rendered cfg and Python give each
other exists on the other side.
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
from kemi_fixtures import (
    HOMES,
    PBX1,
    PBX2,
    REPO,
    Clock,
    credentials,
    defines,
    events,
    ha1,
    let_1001_send_as_1002,
    request,
)

from referee.kemi import make_handler
from referee.kemi.dialogs import DialogRecord
from referee.kemi.native_routing import (
    HOLD_MS_VAR,
    HOLD_STARTED_AVP,
    IN_DIALOG_VAR,
    SEND_AS_VAR,
    NativeRoutedProxy,
)
from referee.kemi.notify import GRACE, ReferAnswers
from referee.kemi.routing import ReferenceProxy
from referee.testing.fake_ksr import FakeKSR

TEMPLATE = REPO / "ansible" / "roles" / "kamailio" / "templates" / "kamailio.cfg.j2"


def native(tmp: Path) -> tuple[FakeKSR, NativeRoutedProxy]:
    fake = FakeKSR(defines={**defines(tmp), "REFEREE_ROUTING": '"native"'})
    handler = make_handler(fake)
    assert isinstance(handler, NativeRoutedProxy)
    return fake, handler


def render(**values: object) -> str:
    base = {
        "kamailio__pbxs": [{"name": "pbx1", "uri": f"sip:{PBX1}:5060"}],
        "kamailio__users": [],
        "kamailio__kemi_script": "/k.py",
        "kamailio__dmq_peers": ["sip:127.0.1.11:5060"],
        "kamailio__metrics_listen": "tcp:127.0.0.10:9090",
    }
    return (
        jinja2.Environment(undefined=jinja2.StrictUndefined)
        .from_string(TEMPLATE.read_text())
        .render(**{**base, **values})
    )


def test_without_the_define_the_handler_is_the_kemi_script(tmp_path: Path) -> None:
    handler = make_handler(FakeKSR(defines=defines(tmp_path)))
    assert type(handler) is ReferenceProxy


def test_users_pbx_addresses_and_peers_are_published_for_the_native_routing(tmp_path: Path) -> None:
    fake = FakeKSR(
        defines={
            **defines(tmp_path),
            "REFEREE_ROUTING": '"native"',
            "REFEREE_DMQ_PEERS": '"sip:127.0.1.11:5060"',
        }
    )
    make_handler(fake)
    sets = {"pbx1": 1, "pbx2": 2}
    assert fake.tables["referee_users"] == {
        user: f"{ha1(user)}:{pbx}:{sets[pbx]}" for user, pbx in HOMES.items()
    }
    assert fake.tables["referee_pbxs"] == {PBX1: "pbx1:1", PBX2: "pbx2:2"}
    assert fake.tables["referee_dmq"] == {"127.0.1.11": "1"}


def test_an_opened_dialog_is_recorded_checked_and_closed(tmp_path: Path) -> None:
    fake, handler = native(tmp_path)
    fake.request(request("INVITE", frm="<sip:1002@lab.test>;tag=ft9", call_id="c9"), src_ip="127.0.1.32")
    handler.dialog_opened(None, "pbx1 1 1002")
    assert handler.dialogs.get("c9") == DialogRecord("c9", "pbx1", "ft9", "", "1002", "1001", 1, "1002")
    assert fake.tables["referee_dlg"]["c9"].startswith("ft9:|")  # what route[DIALOG_CHECK] reads
    # The older JSON form (or a record only SQLite holds): Python answers the native check.
    fake.tables["referee_dlg"]["c9"] = (
        '{"pbx":"pbx1","from_tag":"ft9","to_tag":"tt9","from_user":"1002","to_user":"1001"}'
    )
    bye = request("BYE", frm="<sip:1001@lab.test>;tag=tt9", to="<sip:1002@lab.test>;tag=ft9", call_id="c9")
    fake.request(bye)
    handler.dialog_check(None)
    assert fake.pvs[IN_DIALOG_VAR] == 1
    fake.request(bye.replace("tag=tt9", "tag=other"))
    handler.dialog_check(None)
    assert fake.pvs[IN_DIALOG_VAR] == 0
    handler.dialog_closed(None)
    assert handler.dialogs.get("c9") is None
    handler.dialog_check(None)
    assert fake.pvs[IN_DIALOG_VAR] == 0


def test_send_as_answers_from_the_policy(tmp_path: Path) -> None:
    let_1001_send_as_1002(tmp_path)
    fake, handler = native(tmp_path)
    fake.request(
        request("INVITE", frm="<sip:1002@lab.test>;tag=a", auth=False, headers=[credentials("1001")])
    )
    handler.send_as(None)
    assert fake.pvs[SEND_AS_VAR] == 1
    fake.request(
        request("INVITE", frm="<sip:1001@lab.test>;tag=a", auth=False, headers=[credentials("1002")])
    )
    handler.send_as(None)
    assert fake.pvs[SEND_AS_VAR] == 0
    bad = request("INVITE", frm="<sip:10\udcff2@lab.test>;tag=a", auth=False, headers=[credentials("1001")])
    fake.request(bad.encode("utf-8", "surrogateescape"))
    handler.send_as(None)
    assert fake.pvs[SEND_AS_VAR] == 2  # answered 400 by the cfg, as the Python route would


def test_the_proxys_own_answers_are_written_as_events(tmp_path: Path) -> None:
    fake, handler = native(tmp_path)
    fake.request(request("INVITE", call_id="c7"), src_ip="127.0.1.32")
    handler.pbx_down(None, "pbx1")
    handler.relay_failed(None)
    written = [(e["event"], e["status"], e.get("pbx", ""), e["call_id"]) for e in events(tmp_path)]
    assert written == [("proxy.reply", 503, "pbx1", "c7"), ("proxy.reply", 500, "", "c7")]


def test_every_python_exec_of_the_cfg_is_an_entry_point_and_every_route_python_names_is_in_the_cfg() -> None:
    cfg = render()
    called = set(re.findall(r'python_exec\("(\w+)"', cfg))
    assert called >= {"ksr_request_route", "dialog_opened", "dialog_check", "send_as", "ksr_onsend_route"}
    for name in called:
        assert callable(getattr(NativeRoutedProxy, name, None)), name
    # Python arms these by name (t_on_reply, t_on_failure): native blocks in this routing.
    for block in ("onreply_route[ksr_onreply_invite]", "onreply_route[ksr_onreply_refer]"):
        assert block in cfg
    assert "failure_route[ksr_failure_relay]" in cfg
    assert 'cfgengine "python"' not in cfg
    kemi = render(kamailio__routing="kemi")
    assert 'cfgengine "python"' in kemi and "python_exec" not in kemi and "request_route" not in kemi


def test_only_transfers_run_the_whole_python_route() -> None:
    cfg = render()
    request_route = cfg.split("request_route {", 1)[1].split("\n}\n", 1)[0]
    first = request_route.split('python_exec("ksr_request_route");', 1)[0]
    assert 'is_present_hf("Replaces")' in first
    assert '$hdr(Event) =~ "^[[:space:]]*[Rr][Ee][Ff][Ee][Rr]"' in first
    assert request_route.count("python_exec") == 1
    # A REFER reaches Python (route[REFER]) only past the native checks: the credentials outside a dialog,
    # the dialog check in one.
    assert 'is_method("REFER")' not in first
    assert request_route.index("route(AUTH);") < request_route.index("route(REFER);")
    withindlg = cfg.split("route[WITHINDLG] {", 1)[1].split("\n}\n", 1)[0]
    assert withindlg.index("route(DIALOG_CHECK);") < withindlg.index("route(REFER);")


def test_a_notify_held_for_its_refer_waits_suspended_and_no_worker_sleeps(tmp_path: Path) -> None:
    fake, handler = native(tmp_path)
    clock = Clock(100.0)

    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"a worker slept {seconds} s")

    answers = ReferAnswers(fake, mark_on_send=True, clock=clock, sleep=no_sleep)
    handler.answers = handler.notifies.answers = handler.refers.answers = answers
    answers.relayed("c5")  # the dialog's REFER went to the PBX, unanswered
    notify = request(
        "NOTIFY",
        frm="<sip:1001@lab.test>;tag=pbx",
        to="<sip:1002@lab.test>;tag=ft1",
        call_id="c5",
        headers=["Event: refer", "Subscription-State: active", "Content-Type: message/sipfrag"],
        body="SIP/2.0 100 Trying\r\n",
        route=True,
    )
    fake.request(notify, src_ip=PBX1)
    handler.ksr_request_route(None)
    assert fake.relays == []  # not relayed: the cfg suspends it
    assert fake.pvs[HOLD_MS_VAR] == 1 and fake.pvs[HOLD_STARTED_AVP] == repr(100.0)  # a poll step
    assert [e["status"] for e in events(tmp_path) if e["event"] == "refer.outcome"] == [100]
    clock.now += 0.004
    handler.notify_held(None)
    assert fake.pvs[HOLD_MS_VAR] == 1  # still pending
    answers.answered("c5")  # the 202 is being sent
    handler.notify_held(None)
    assert fake.pvs[HOLD_MS_VAR] == round(GRACE * 1000)
    clock.now += GRACE
    handler.notify_held(None)
    assert fake.pvs[HOLD_MS_VAR] == 0  # the cfg relays it now
    # Never answered: let go at the bound, whatever the state says.
    answers.relayed("c5")
    clock.now += answers.hold_max
    handler.notify_held(None)
    assert fake.pvs[HOLD_MS_VAR] == 0
