"""REFER through the real Kamailio with the referee KEMI script; SIPp plays phones and PBXs."""

from __future__ import annotations

from pathlib import Path

import sippgen as g
from harness import PBX1, PBX2, PHONES, PROXY, Kamailio, Sipp, header, running, scenario


def phone(tmp: Path, name: str, user: str, body: str) -> Sipp:
    return Sipp(tmp, name, scenario(tmp, name, body), PHONES[user], remote=f"{PROXY}:5060")


def pbx(tmp: Path, name: str, ip: str, body: str, calls: int = 1) -> Sipp:
    return Sipp(tmp, name, scenario(tmp, name, body), ip, calls=calls)


def test_allowed_refer_reaches_pbx_with_rewritten_refer_to(kamailio: Kamailio, tmp_path: Path) -> None:
    uas = pbx(tmp_path, "pbx1", PBX1, g.uas_refer())
    bob = phone(tmp_path, "bob", "1002", g.ood_refer("<sip:1003@lab.test>", 202))
    with running(uas):
        assert bob.run() == 0, bob.output()
        uas.wait()
    refers = uas.received("REFER")
    assert len(refers) == 1, uas.output()
    # What left the proxy: the policy's rewritten target, one Refer-To, and a Referred-By.
    assert header(refers[0], "Refer-To") == ["<sip:1003@127.0.1.20:5060>"]
    assert header(refers[0], "Referred-By") == ["<sip:1002@lab.test>"]
    assert any(PROXY in rr for rr in header(refers[0], "Record-Route"))
    events = kamailio.wait_events(2)
    (event,) = [e for e in events if e["event"] == "refer.decision"]
    assert event["decision"]["allowed"] is True
    assert event["forwarded_refer_to"] == "<sip:1003@127.0.1.20:5060>"
    assert event["cseq"] == 2  # the REFER sent again with credentials after the 407
    (answer,) = [e for e in events if e["event"] == "refer.response"]
    assert answer["status"] == 202
    assert answer["call_id"] == event["call_id"]


def refer_rejected(kamailio: Kamailio, tmp: Path, refer_to: str, status: int) -> dict[str, object]:
    """Send a REFER that must be answered ``status`` by the proxy; the PBX must see nothing."""
    uas = pbx(tmp, "pbx1", PBX1, g.uas_refer())
    bob = phone(tmp, "bob", "1002", g.ood_refer(refer_to, status))
    with running(uas):
        assert bob.run() == 0, bob.output()
    assert uas.received() == []
    (event,) = kamailio.wait_events(1)
    assert event["event"] == "refer.decision"
    assert event["decision"]["allowed"] is False  # type: ignore[index]
    assert event["decision"]["status"] == status  # type: ignore[index]
    return event


def test_premium_number_rejected_with_403(kamailio: Kamailio, tmp_path: Path) -> None:
    event = refer_rejected(kamailio, tmp_path, "<sip:09001234567@lab.test>", 403)
    assert event["decision"]["rule"] == "prefixes:deny:+449"  # type: ignore[index]
    assert "rule prefixes:deny:+449" in kamailio.log()


def test_http_refer_to_rejected(kamailio: Kamailio, tmp_path: Path) -> None:
    event = refer_rejected(kamailio, tmp_path, "<http://evil.example/transfer>", 416)
    assert event["decision"]["rule"] == "scheme"  # type: ignore[index]


def test_embedded_call_id_is_stripped(kamailio: Kamailio, tmp_path: Path) -> None:
    uas = pbx(tmp_path, "pbx1", PBX1, g.uas_refer())
    bob = phone(tmp_path, "bob", "1002", g.ood_refer("<sip:1003@lab.test?Call-ID=stolen%40victim>", 202))
    with running(uas):
        assert bob.run() == 0, bob.output()
        uas.wait()
    (refer,) = uas.received("REFER")
    assert header(refer, "Refer-To") == ["<sip:1003@127.0.1.20:5060>"]
    assert "stolen" not in refer


def test_in_dialog_refer_notify_relayed_and_outcome_recorded(kamailio: Kamailio, tmp_path: Path) -> None:
    uas = pbx(tmp_path, "pbx1", PBX1, g.pbx_carries_out_transfer())
    bob = phone(tmp_path, "bob", "1002", g.phone_transfers("1002", "1001", "<sip:1003@lab.test>"))
    with running(uas):
        assert bob.run() == 0, bob.output() + kamailio.log()
        assert uas.wait() == 0, uas.output()
    (refer,) = uas.received("REFER")
    assert header(refer, "Refer-To") == ["<sip:1003@127.0.1.20:5060>"]
    notifies = bob.received("NOTIFY")
    assert [n.split("\n\n", 1)[1].strip() for n in [m.replace("\r\n", "\n") for m in notifies]] == [
        "SIP/2.0 100 Trying",
        "SIP/2.0 200 OK",
    ]
    events = kamailio.wait_events(4)
    (decision,) = [e for e in events if e["event"] == "refer.decision"]
    outcomes = [e for e in events if e["event"] == "refer.outcome"]
    assert decision["cseq"] == 2
    assert [(o["status"], o["final"]) for o in outcomes] == [(100, False), (200, True)]
    assert {o["call_id"] for o in outcomes} == {decision["call_id"]}
    assert outcomes[-1]["subscription_state"].startswith("terminated")


# --- Replaces ---------------------------------------------------------------------------------

DAVE_DIALOG = "dlg1-pbx2@test"  # SIPp maps answers by its own Call-ID: set via -cid_str
DAVE_REPLACES = f"{DAVE_DIALOG};to-tag=pbx-1;from-tag=dave-ft"
DAVE_REPLACES_ESCAPED = "dlg1-pbx2%40test%3Bto-tag%3Dpbx-1%3Bfrom-tag%3Ddave-ft"


def uas_calls() -> str:
    return "\n".join(
        [
            g.uas_invite(),
            g.reply(200, "OK", to_tag="pbx-[call_number]", contact=True),
            '<recv request="ACK"/>',
        ]
    )


def dave_calls_carol(tmp: Path) -> None:
    """2001 (homed on pbx2) calls 1003: the proxy learns that dialog DAVE_DIALOG lives on pbx2."""
    dave = phone(
        tmp,
        "dave",
        "2001",
        g.answered_call("2001", "1003", from_tag="dave-ft"),
    )
    dave.extra += ["-cid_str", "dlg%u-pbx2@test"]
    assert dave.run() == 0, dave.output()


def test_invite_with_replaces_goes_to_the_pbx_holding_the_dialog(kamailio: Kamailio, tmp_path: Path) -> None:
    pbx1 = pbx(tmp_path, "pbx1", PBX1, uas_calls())
    pbx2 = pbx(tmp_path, "pbx2", PBX2, uas_calls(), calls=2)
    alice = phone(
        tmp_path,
        "alice",
        "1001",
        "\n".join(
            [
                g.invite("1001", "1003", from_tag="alice-ft").replace(
                    "Max-Forwards: 70", f"Max-Forwards: 70\nReplaces: {DAVE_REPLACES}"
                ),
                g.provisional(),
                g.recv_response(200, rrs=True),
                g.ack("1001", "1003", from_tag="alice-ft"),
            ]
        ),
    )
    with running(pbx1, pbx2):
        dave_calls_carol(tmp_path)
        assert alice.run() == 0, alice.output() + kamailio.log()
        assert pbx2.wait() == 0, pbx2.output()
    # alice is homed on pbx1, but the replaced dialog is on pbx2: pbx2 got both INVITEs.
    invites = pbx2.received("INVITE")
    assert len(invites) == 2
    assert header(invites[1], "Replaces") == [DAVE_REPLACES]
    assert pbx1.received() == []


def test_invite_with_replaces_for_unknown_dialog_gets_481(kamailio: Kamailio, tmp_path: Path) -> None:
    pbx1 = pbx(tmp_path, "pbx1", PBX1, uas_calls())
    alice = phone(
        tmp_path,
        "alice",
        "1001",
        "\n".join(
            [
                g.invite("1001", "1003").replace(
                    "Max-Forwards: 70", "Max-Forwards: 70\nReplaces: nosuchcall@test;to-tag=a;from-tag=b"
                ),
                g.provisional(),
                g.recv_response(481),
                g.ack("1001", "1003"),
            ]
        ),
    )
    with running(pbx1):
        assert alice.run() == 0, alice.output()
    assert pbx1.received() == []


def test_refer_with_replaces_hijack_rejected(kamailio: Kamailio, tmp_path: Path) -> None:
    pbx1 = pbx(tmp_path, "pbx1", PBX1, g.uas_refer())
    pbx2 = pbx(tmp_path, "pbx2", PBX2, uas_calls())
    # bob (1002) is no party to dave's call: he must not be able to take it over.
    bob = phone(
        tmp_path, "bob", "1002", g.ood_refer(f"<sip:1001@lab.test?Replaces={DAVE_REPLACES_ESCAPED}>", 403)
    )
    with running(pbx1, pbx2):
        dave_calls_carol(tmp_path)
        assert bob.run() == 0, bob.output()
    assert pbx1.received() == []
    assert pbx2.received("REFER") == []
    (event,) = [e for e in kamailio.wait_events(1) if e["event"] == "refer.decision"]
    assert event["decision"]["rule"] == "replaces"


def test_refer_with_replaces_of_own_dialog_points_at_owning_pbx(kamailio: Kamailio, tmp_path: Path) -> None:
    with running(pbx(tmp_path, "pbx2-call", PBX2, uas_calls())):
        dave_calls_carol(tmp_path)
    pbx2 = pbx(tmp_path, "pbx2", PBX2, g.uas_refer())
    refer = g.ood_refer(f"<sip:1001@lab.test?Replaces={DAVE_REPLACES_ESCAPED}>", 202, user="2001")
    dave = phone(tmp_path, "dave2", "2001", refer)
    with running(pbx2):
        assert dave.run() == 0, dave.output() + kamailio.log()
    (received,) = pbx2.received("REFER")
    (refer_to,) = header(received, "Refer-To")
    # 1001 lives on pbx1, but the INVITE with Replaces must reach pbx2, which holds the dialog.
    assert refer_to.startswith("<sip:1001@127.0.1.21:5060?")
    assert "Replaces=dlg1-pbx2%40test" in refer_to


def test_refer_with_replaces_of_unknown_dialog_gets_481(kamailio: Kamailio, tmp_path: Path) -> None:
    refer_rejected(
        kamailio, tmp_path, "<sip:1001@lab.test?Replaces=gone%40test%3Bto-tag%3Da%3Bfrom-tag%3Db>", 481
    )


def test_refer_sub_false_is_passed_on_and_recorded(kamailio: Kamailio, tmp_path: Path) -> None:
    uas = pbx(tmp_path, "pbx1", PBX1, g.uas_refer())
    bob = phone(
        tmp_path, "bob", "1002", g.ood_refer("<sip:1003@lab.test>", 202, extra_headers="Refer-Sub: false")
    )
    with running(uas):
        assert bob.run() == 0, bob.output()
        uas.wait()
    (refer,) = uas.received("REFER")
    assert header(refer, "Refer-Sub") == ["false"]
    (event,) = [e for e in kamailio.wait_events(2) if e["event"] == "refer.decision"]
    assert event["subscription"] is False


def test_compact_refer_to_is_replaced_not_duplicated(kamailio: Kamailio, tmp_path: Path) -> None:
    uas = pbx(tmp_path, "pbx1", PBX1, g.uas_refer())
    scenario_xml = g.ood_refer("<sip:1003@lab.test>", 202).replace("Refer-To: ", "r: ")
    bob = phone(tmp_path, "bob", "1002", scenario_xml)
    with running(uas):
        assert bob.run() == 0, bob.output()
        uas.wait()
    (refer,) = uas.received("REFER")
    assert header(refer, "Refer-To") + header(refer, "r") == ["<sip:1003@127.0.1.20:5060>"]
