"""referee in Debian's own kamailio.cfg (kamailio role, existing mode): the stock routing is untouched,
REFERs are decided, NOTIFY outcomes recorded. Kamailio 5.6 on the host; 6.1 with REFEREE_KAMAILIO_ROOTFS.

SIPp plays the phones, registered at the proxy (127.0.1.50) with the stock cfg's auth_db (WITH_AUTH).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import existing_cfg as ex
import harness
import pytest
import sippgen as g
from harness import PASSWORDS, Kamailio, Sipp, header, running, scenario

pytestmark = pytest.mark.integration

REMOTE = f"{ex.PROXY}:5060"


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Kamailio]:
    started = ex.start(tmp_path)
    yield started
    started.stop()


def phone(tmp: Path, name: str, user: str, body: str, *, remote: str | None = REMOTE) -> Sipp:
    return Sipp(tmp, name, scenario(tmp, name, body), ex.PHONES[user], remote=remote)


def register(tmp: Path, *users: str) -> None:
    for user in users:
        reg = phone(tmp, f"reg-{user}", user, g.register(user, PASSWORDS[user], 200))
        assert reg.run() == 0, reg.output()


def callee(body: list[str]) -> str:
    """1001 answering 1002's call (its to-tag fixed, the caller's tag kept for its own requests)."""
    return "\n".join(
        [
            g.uas_invite(capture_tag=bool(body)),  # SIPp refuses a variable set but never used
            # Straight to 200: a 180 sent just before it can reach the caller after it (two proxy workers
            # over UDP, a loaded machine), and SIPp's caller aborts on the late 180.
            g.reply(200, "OK", to_tag="pbx-[call_number]", contact=True),
            '<recv request="ACK"/>',
            *body,
            '<recv request="BYE"/>',
            g.reply(200, "OK"),
        ]
    )


def call(tmp: Path, caller_steps: list[str], callee_steps: list[str]) -> tuple[Sipp, Sipp]:
    """1002 calls 1001 through the proxy; both sides' extra steps run inside the call."""
    alice = phone(tmp, "alice", "1001", callee(callee_steps), remote=None)
    bob = phone(
        tmp,
        "bob",
        "1002",
        "\n".join([g.answered_call("1002", "1001"), *caller_steps, g.in_dialog("BYE", "1002", "1001", 9)])
        + "\n"
        + g.recv_response(200),
    )
    with running(alice):
        assert bob.run() == 0, bob.output()
        assert alice.wait() == 0, alice.output()
    return alice, bob


def shape(message: str) -> list[str]:
    """A request as routed, without what differs per call (Call-ID, tags, branches, ports, nonces)."""
    head = message.replace("\r\n", "\n").split("\n\n", 1)[0]
    head = re.sub(r"(Call-ID:).*", r"\1 *", head, flags=re.I)
    head = re.sub(r"(tag|branch)=[^;>,\s]+", r"\1=*", head)
    return sorted(re.sub(r":\d{4,5}\b", ":*", line) for line in head.split("\n"))


def test_register_and_a_call_are_routed_exactly_as_without_referee(tmp_path: Path) -> None:
    seen = {}
    for referee in (False, True):
        tmp = tmp_path / ("referee" if referee else "stock")
        tmp.mkdir()
        kamailio = ex.start(tmp, referee=referee)
        try:
            register(tmp, "1001", "1002")
            alice, _ = call(tmp, [], [])
            requests = [m for m in alice.received() if m.split(" ", 1)[0] in ("INVITE", "ACK", "BYE")]
            assert [m.split(" ", 1)[0] for m in requests] == ["INVITE", "ACK", "BYE"], alice.output()
            seen[referee] = [shape(m) for m in requests]
            assert kamailio.events() == []  # nothing of referee runs for a call
        finally:
            kamailio.stop()
    assert seen[True] == seen[False]


def refused(tmp: Path, kamailio: Kamailio, refer_to: str, status: int) -> dict[str, object]:
    """An out-of-dialog REFER from 1002 (authenticated) that the proxy must answer ``status``; 1001 sees nothing."""
    register(tmp, "1001")
    alice = phone(tmp, "alice", "1001", '<recv request="REFER"/>', remote=None)
    bob = phone(tmp, "bob", "1002", g.ood_refer(refer_to, status))
    with running(alice):
        assert bob.run() == 0, bob.output() + kamailio.log()
    assert alice.received() == []
    (event,) = kamailio.wait_events(1)
    assert event["event"] == "refer.decision"
    assert (event["decision"]["allowed"], event["decision"]["status"]) == (False, status)  # type: ignore[index]
    assert event["from"] == "sip:1002@lab.test"  # who authenticated, from the operator's subscriber table
    return event


@pytest.mark.parametrize(
    ("refer_to", "status", "rule"),
    [
        ("<sip:09001234567@lab.test>", 403, "prefixes:deny:+449"),
        ("<http://evil.example/transfer>", 416, "scheme"),
        ("<sip:1003@evil.example>", 403, "target"),  # a domain the policy does not serve
    ],
)
def test_attack_refers_are_refused_with_the_policys_status(
    proxy: Kamailio, tmp_path: Path, refer_to: str, status: int, rule: str
) -> None:
    event = refused(tmp_path, proxy, refer_to, status)
    assert event["decision"]["rule"] == rule  # type: ignore[index]


def test_allowed_refer_is_rewritten_relayed_by_the_stock_routing_and_its_outcome_recorded(
    proxy: Kamailio, tmp_path: Path
) -> None:
    register(tmp_path, "1001", "1002")
    refer = g.in_dialog(
        "REFER", "1002", "1001", 3, extra_headers="Refer-To: <sip:1003@lab.test?Call-ID=stolen>"
    )
    again = g.in_dialog(
        "REFER",
        "1002",
        "1001",
        4,
        extra_headers=f"Refer-To: <sip:1003@lab.test?Call-ID=stolen>\n{g.credentials('1002')}",
    )
    alice, bob = call(
        tmp_path,
        [
            g.challenged(refer, again),  # route[REFEREE] authenticates the in-dialog REFER
            g.recv_response(202),
            '<recv request="NOTIFY"/>',
            g.reply(200, "OK"),
            '<recv request="NOTIFY"/>',
            g.reply(200, "OK"),
        ],
        g.uas_refer_outcome(),
    )
    (relayed,) = alice.received("REFER")
    assert header(relayed, "Refer-To") == [
        "<sip:1003@127.0.1.20:5060>"
    ]  # the policy's target, Call-ID stripped
    assert header(relayed, "Referred-By") == ["<sip:1002@lab.test>"]
    assert header(relayed, "Proxy-Authorization") == []  # consumed by route[REFEREE]
    frags = [n.replace("\r\n", "\n").split("\n\n", 1)[1].strip() for n in bob.received("NOTIFY")]
    assert frags == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]  # relayed by the stock in-dialog routing
    events = proxy.wait_events(4)
    # The decision is written before the REFER is relayed; the 202's line and the first NOTIFY's come from
    # two workers, in either order on a loaded machine (bob got the 202 first all the same: the NOTIFY is held).
    kinds = [e["event"] for e in events]
    assert kinds[0] == "refer.decision", events
    assert sorted(kinds[1:]) == ["refer.outcome", "refer.outcome", "refer.response"], events
    decision = events[0]
    (response,) = [e for e in events if e["event"] == "refer.response"]
    outcomes = [e for e in events if e["event"] == "refer.outcome"]
    assert decision["decision"]["allowed"] is True
    assert decision["from"] == "sip:1002@lab.test"  # the referrer: who authenticated
    assert decision["forwarded_refer_to"] == "<sip:1003@127.0.1.20:5060>"
    assert (response["status"], response["cseq"]) == (202, 4)
    assert [(o["status"], o["final"]) for o in outcomes] == [(100, False), (200, True)]
    assert {e["call_id"] for e in events} == {decision["call_id"]}


def test_out_of_dialog_refer_is_relayed_by_the_stock_location_lookup(proxy: Kamailio, tmp_path: Path) -> None:
    register(tmp_path, "1001")
    alice = phone(tmp_path, "alice", "1001", g.uas_refer(), remote=None)
    bob = phone(tmp_path, "bob", "1002", g.ood_refer("<sip:1003@lab.test>", 202))
    with running(alice):
        assert bob.run() == 0, bob.output() + proxy.log()
        assert alice.wait() == 0, alice.output()
    (relayed,) = alice.received("REFER")
    assert header(relayed, "Refer-To") == ["<sip:1003@127.0.1.20:5060>"]
    assert header(relayed, "Proxy-Authorization") == []  # the stock route(AUTH) consumed the credentials
    events = proxy.wait_events(2)
    assert [e["event"] for e in events] == ["refer.decision", "refer.response"]
    assert (events[0]["decision"]["allowed"], events[1]["status"]) == (True, 202)


# bob (1002) calls carol (1003) with these identifiers; the drop-in learns the dialog from the INVITE.
BOB_CAROL = "dlg1-existing@test"
BOB_CAROL_REPLACES = "dlg1-existing%40test%3Bto-tag%3Dcarol-1%3Bfrom-tag%3Dbob-ft"


def bob_calls_carol(tmp: Path, *, hang_up: bool) -> None:
    """An answered call 1002 -> 1003 through the stock routing (Call-ID BOB_CAROL); bob's BYE ends it."""
    carol_steps = [g.uas_invite(), g.reply(200, "OK", to_tag="carol-[call_number]", contact=True)]
    carol_steps.append('<recv request="ACK"/>')
    bob_steps = [g.answered_call("1002", "1003", from_tag="bob-ft")]
    if hang_up:
        carol_steps += ['<recv request="BYE"/>', g.reply(200, "OK")]
        bob_steps += [g.in_dialog("BYE", "1002", "1003", 9, from_tag="bob-ft"), g.recv_response(200)]
    carol = phone(tmp, "carol", "1003", "\n".join(carol_steps), remote=None)
    bob = phone(tmp, "bob-call", "1002", "\n".join(bob_steps))
    bob.extra += ["-cid_str", "dlg%u-existing@test"]
    with running(carol):
        assert bob.run() == 0, bob.output()
        assert carol.wait() == 0, carol.output()


def test_attended_refer_names_a_dialog_the_drop_in_learned_from_the_stock_routing(
    proxy: Kamailio, tmp_path: Path
) -> None:
    register(tmp_path, "1001", "1002", "1003")
    bob_calls_carol(tmp_path, hang_up=False)
    alice = phone(tmp_path, "alice", "1001", g.uas_refer(), remote=None)
    refer_to = f"<sip:1003@lab.test?Replaces={BOB_CAROL_REPLACES}>"
    bob = phone(tmp_path, "bob", "1002", g.ood_refer(refer_to, 202))
    with running(alice):
        assert bob.run() == 0, bob.output() + proxy.log()
        assert alice.wait() == 0, alice.output()
    (relayed,) = alice.received("REFER")
    (forwarded,) = header(relayed, "Refer-To")
    assert f"Replaces={BOB_CAROL_REPLACES}" in forwarded  # the operator's routing takes the INVITE on
    # alice (1001) is no party to bob's call with carol: she cannot take it over.
    hijack = phone(tmp_path, "alice-refer", "1001", g.ood_refer(refer_to, 403, user="1001"))
    assert hijack.run() == 0, hijack.output() + proxy.log()
    decisions = [e for e in proxy.wait_events(3) if e["event"] == "refer.decision"]
    assert [(e["decision"]["status"], e["decision"]["rule"]) for e in decisions] == [  # type: ignore[index]
        (202, decisions[0]["decision"]["rule"]),  # type: ignore[index]
        (403, "replaces"),
    ]
    assert decisions[0]["decision"]["replaces"]["call_id"] == BOB_CAROL  # type: ignore[index]


def test_a_dialog_ended_by_bye_or_never_seen_cannot_be_replaced(proxy: Kamailio, tmp_path: Path) -> None:
    register(tmp_path, "1001", "1002", "1003")
    bob_calls_carol(tmp_path, hang_up=True)
    for replaces in (BOB_CAROL_REPLACES, "never-seen%40test%3Bto-tag%3Da%3Bfrom-tag%3Db"):
        bob = phone(tmp_path, "bob", "1002", g.ood_refer(f"<sip:1003@lab.test?Replaces={replaces}>", 481))
        assert bob.run() == 0, bob.output() + proxy.log()
    decisions = [e for e in proxy.wait_events(2) if e["event"] == "refer.decision"]
    assert [e["decision"]["rule"] for e in decisions] == ["replaces-unknown", "replaces-unknown"]  # type: ignore[index]


def check_cfg(tmp: Path, cfg: Path) -> subprocess.CompletedProcess[str]:
    """``kamailio -c`` of the Kamailio under test (the rootfs's when REFEREE_KAMAILIO_ROOTFS is set)."""
    env = {
        **os.environ,
        "ROOTFS": os.path.realpath(harness.ROOTFS),
        "REPO": str(harness.REPO),
        "TESTDIR": str(tmp),
    }
    command = harness.kamailio_command(tmp, ["-c", "-f", str(cfg)])
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_modules_the_operator_loads_are_not_loaded_again(tmp_path: Path) -> None:
    # WITH_ANTIFLOOD: the stock cfg loads htable (and pike) itself, above the include line.
    cfg = ex.prepare(tmp_path)
    local = tmp_path / "kamailio-local.cfg"
    local.write_text("#!define WITH_ANTIFLOOD\n#!define WITH_HTABLE\n" + local.read_text())
    checked = check_cfg(tmp_path, cfg)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The same drop-in without its #!ifndef MOD_htable guard: Kamailio refuses the second load.
    dropin = tmp_path / "referee.cfg"
    dropin.write_text(dropin.read_text().replace("#!ifndef MOD_htable\n", "#!ifdef WITH_ANTIFLOOD\n", 1))
    unguarded = check_cfg(tmp_path, cfg)
    assert unguarded.returncode != 0
    assert "load the same module twice" in unguarded.stdout + unguarded.stderr
