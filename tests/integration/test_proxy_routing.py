"""The proxy's ordinary job: digest REGISTER, PBX -> registered phone, phone -> home PBX, CANCEL."""

from __future__ import annotations

from pathlib import Path

import sippgen as g
from harness import PASSWORDS, PBX1, PBX2, PHONES, PROXY, Kamailio, Sipp, header, running, scenario
from sippgen import register


def sipp(tmp: Path, name: str, ip: str, body: str, remote: str | None = f"{PROXY}:5060") -> Sipp:
    return Sipp(tmp, name, scenario(tmp, name, body), ip, remote=remote)


def test_register_needs_the_right_password(kamailio: Kamailio, tmp_path: Path) -> None:
    wrong = sipp(tmp_path, "alice-wrong", PHONES["1001"], register("1001", "not-the-password", 401))
    assert wrong.run() == 0, wrong.output()
    right = sipp(tmp_path, "alice", PHONES["1001"], register("1001", PASSWORDS["1001"], 200))
    assert right.run() == 0, right.output() + kamailio.log()
    (ok,) = [m for m in right.received() if m.startswith("SIP/2.0 200")]
    assert f"sip:1001@{PHONES['1001']}:5060" in " ".join(header(ok, "Contact"))


def test_pbx_reaches_registered_phone_and_cancel_is_relayed(kamailio: Kamailio, tmp_path: Path) -> None:
    reg = sipp(tmp_path, "alice-reg", PHONES["1001"], register("1001", PASSWORDS["1001"], 200))
    assert reg.run() == 0, reg.output()
    alice = sipp(
        tmp_path,
        "alice",
        PHONES["1001"],
        "\n".join(
            [
                '<recv request="INVITE"/>',
                g.reply(180, "Ringing", to_tag="alice-1", contact=True),
                '<recv request="CANCEL"/>',
                g.reply(200, "OK"),
                g.send(
                    """
                    SIP/2.0 487 Request Terminated
                    [last_Via:]
                    [last_From:]
                    [last_To:];tag=alice-1
                    [last_Call-ID:]
                    CSeq: 1 INVITE
                    """,
                    retrans=False,
                ),
                '<recv request="ACK"/>',
            ]
        ),
        remote=None,
    )
    invite = """
        INVITE sip:1001@127.0.1.10 SIP/2.0
        Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-pbx-[call_number]
        From: <sip:1002@lab.test>;tag=pbx1-from
        To: <sip:1001@lab.test>
        Call-ID: [call_id]
        Contact: <sip:1002@[local_ip]:[local_port]>
        Max-Forwards: 70
        """
    pbx = sipp(
        tmp_path,
        "pbx1",
        PBX1,
        "\n".join(
            [
                g.send(invite + "CSeq: 1 INVITE"),
                '<recv response="100" optional="true"/>',
                '<recv response="180"/>',
                g.send(invite.replace("INVITE sip", "CANCEL sip") + "CSeq: 1 CANCEL"),
                '<recv response="200"/>',
                '<recv response="487"/>',
                g.send(invite.replace("INVITE sip", "ACK sip") + "CSeq: 1 ACK", retrans=False),
            ]
        ),
    )
    with running(alice):
        assert pbx.run() == 0, pbx.output() + kamailio.log()
        assert alice.wait() == 0, alice.output()
    (received,) = alice.received("INVITE")
    assert received.startswith(f"INVITE sip:1001@{PHONES['1001']}:5060 ")
    assert len(alice.received("CANCEL")) == 1


def test_phone_call_goes_to_its_home_pbx(kamailio: Kamailio, tmp_path: Path) -> None:
    uas = "\n".join(
        [
            '<recv request="INVITE"/>',
            g.reply(200, "OK", to_tag="pbx-1", contact=True),
            '<recv request="ACK"/>',
        ]
    )
    pbx1 = Sipp(tmp_path, "pbx1", scenario(tmp_path, "pbx1", uas), PBX1)
    pbx2 = Sipp(tmp_path, "pbx2", scenario(tmp_path, "pbx2", uas), PBX2)
    dave = sipp(
        tmp_path,
        "dave",
        PHONES["2001"],
        "\n".join(
            [g.invite("2001", "1001"), g.provisional(), g.recv_response(200, rrs=True), g.ack("2001", "1001")]
        ),
    )
    with running(pbx1, pbx2):
        assert dave.run() == 0, dave.output()
    assert len(pbx2.received("INVITE")) == 1
    assert pbx1.received() == []


def test_unknown_caller_is_challenged(kamailio: Kamailio, tmp_path: Path) -> None:
    stranger = sipp(
        tmp_path,
        "stranger",
        "127.0.1.38",
        "\n".join(
            [
                g.invite("9999", "1001", auth=False),
                g.provisional(),
                g.recv_response(407),
                g.ack("9999", "1001"),
            ]
        ),
    )
    assert stranger.run() == 0, stranger.output()


def test_an_early_dialog_is_known_by_its_provisional_to_tag(kamailio: Kamailio, tmp_path: Path) -> None:
    """The 180's To tag joins the dialog's record (natively, in the native routing): while the call rings, an
    in-dialog request with another To tag is not of this dialog (403), one with the 180's tag is relayed."""
    uas = "\n".join(
        [
            '<recv request="INVITE"/>',
            g.reply(180, "Ringing", to_tag="early-1", contact=True),
            '<recv request="INFO"/>',
            g.reply(200, "OK"),  # the INFO's; the call is still ringing when the test ends
        ]
    )
    pbx1 = Sipp(tmp_path, "pbx1", scenario(tmp_path, "pbx1", uas), PBX1)

    def info(to_tag: str, cseq: int) -> str:
        return g.send(
            f"""
            INFO [next_url] SIP/2.0
            Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
            [routes]
            From: <sip:1002@lab.test>;tag=[pid]SIPpTag00[call_number]
            To: <sip:1001@lab.test>;tag={to_tag}
            Call-ID: [call_id]
            CSeq: {cseq} INFO
            Max-Forwards: 70
            """
        )

    bob = sipp(
        tmp_path,
        "bob",
        PHONES["1002"],
        "\n".join(
            [
                g.invite("1002", "1001"),
                '<recv response="100" optional="true"/>',
                g.recv_response(180, rrs=True),
                info("forged", 3),
                g.recv_response(403),
                info("early-1", 4),
                g.recv_response(200),
            ]
        ),
    )
    with running(pbx1):
        assert bob.run() == 0, bob.output()
    assert len(pbx1.received("INFO")) == 1
