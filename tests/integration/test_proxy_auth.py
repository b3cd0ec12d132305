"""Who may send what (issue 9): phones authenticate, PBXs are trusted by address, dialogs are the proxy's.

Identity was the From header: anyone reaching the proxy could call and transfer as any phone.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import sippgen as g
from harness import (
    PASSWORDS,
    PBX1,
    PHONES,
    PROXY,
    Kamailio,
    Sipp,
    answer_challenge,
    refer_bytes,
    running,
    scenario,
    sip_request,
    status_of,
)

STRANGER = "127.0.1.38"  # never registered, no credentials, not a PBX


def pbx1(tmp: Path) -> Sipp:
    """pbx1's stand-in: answers one call (it must get none in the refusal tests)."""
    uas = "\n".join(
        [
            '<recv request="INVITE"/>',
            g.reply(200, "OK", to_tag="pbx-1", contact=True),
            '<recv request="ACK"/>',
        ]
    )
    return Sipp(tmp, "pbx1", scenario(tmp, "pbx1", uas), PBX1)


def invite_bytes(
    user: str, target: str, *, ruri_host: str = "lab.test", to_tag: str = "", route: bool = False
) -> bytes:
    lines = [
        f"INVITE sip:{target}@{ruri_host} SIP/2.0",
        f"Via: SIP/2.0/UDP {STRANGER}:{{port}};branch=z9hG4bK{uuid.uuid4().hex}",
        "Max-Forwards: 70",
        f"From: <sip:{user}@lab.test>;tag={uuid.uuid4().hex[:8]}",
        f"To: <sip:{target}@lab.test>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {uuid.uuid4().hex}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:{user}@{STRANGER}:{{port}}>",
    ]
    if route:
        lines.append(f"Route: <sip:{PROXY};lr;ftag=x>")
    return ("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode()


def test_unauthenticated_invite_claiming_a_phone_gets_407_and_reaches_no_pbx(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    stand_in = pbx1(tmp_path)
    with running(stand_in):
        (answer,) = sip_request(invite_bytes("1001", "1002"), src=STRANGER, authenticate=False)
        assert status_of(answer) == (407, "Proxy Authentication Required")
        assert b'Proxy-Authenticate: Digest realm="lab.test"' in answer
    assert stand_in.received() == []


def test_good_credentials_go_through_without_them(kamailio: Kamailio, tmp_path: Path) -> None:
    stand_in = pbx1(tmp_path)
    alice = Sipp(
        tmp_path,
        "alice",
        scenario(tmp_path, "alice", g.answered_call("1001", "1002")),
        PHONES["1001"],
        remote=f"{PROXY}:5060",
    )
    with running(stand_in):
        assert alice.run() == 0, alice.output() + kamailio.log()
        assert stand_in.wait() == 0, stand_in.output()
    (invite,) = stand_in.received("INVITE")
    assert "Proxy-Authorization" not in invite  # consumed by the proxy


def test_wrong_password_is_challenged_again(kamailio: Kamailio, tmp_path: Path) -> None:
    stand_in = pbx1(tmp_path)
    payload = invite_bytes("1001", "1002")
    with running(stand_in):
        (challenge,) = sip_request(payload, src=STRANGER, authenticate=False)
        (again,) = sip_request(
            answer_challenge(payload, challenge, password="guess"), src=STRANGER, authenticate=False
        )
        assert status_of(again)[0] == 407
    assert stand_in.received() == []


def test_from_other_than_the_credentials_user_gets_403(kamailio: Kamailio, tmp_path: Path) -> None:
    stand_in = pbx1(tmp_path)
    with running(stand_in):
        (answer,) = sip_request(invite_bytes("1001", "1002"), src=STRANGER, user="1003")
        assert status_of(answer) == (403, "From Does Not Match Credentials")
    assert stand_in.received() == []


def test_untrusted_address_claiming_to_be_a_pbx_is_challenged(kamailio: Kamailio, tmp_path: Path) -> None:
    reg = Sipp(
        tmp_path,
        "alice-reg",
        scenario(tmp_path, "alice-reg", g.register("1001", PASSWORDS["1001"], 200)),
        PHONES["1001"],
        remote=f"{PROXY}:5060",
    )
    assert reg.run() == 0, reg.output()
    alice = Sipp(tmp_path, "alice", scenario(tmp_path, "alice", '<recv request="INVITE"/>'), PHONES["1001"])
    with running(alice):
        # What pbx1 sends to reach a phone, from an address that is not pbx1's.
        payload = invite_bytes("pbx1", "1001", ruri_host=PROXY).replace(
            b"<sip:pbx1@lab.test>", f"<sip:1002@{PBX1}>".encode()
        )
        (answer,) = sip_request(payload, src=STRANGER, authenticate=False)
        assert status_of(answer)[0] == 407
    assert alice.received() == []


def test_in_dialog_request_outside_the_proxys_dialogs_is_refused(kamailio: Kamailio, tmp_path: Path) -> None:
    stand_in = pbx1(tmp_path)
    with running(stand_in):
        forged = invite_bytes("1001", "1002", ruri_host=f"{PBX1}:5060", to_tag="guessed", route=True)
        (answer,) = sip_request(forged, src=STRANGER)
        assert status_of(answer) == (403, "Not A Dialog Of This Proxy")
    assert stand_in.received() == []


def test_out_of_dialog_refer_is_refused_by_default(
    start_kamailio: Callable[..., Kamailio], tmp_path: Path
) -> None:
    proxy = start_kamailio(kamailio__out_of_dialog_refer="refuse")
    stand_in = pbx1(tmp_path)
    with running(stand_in):
        payload = refer_bytes([b"Refer-To: <sip:1003@lab.test>"])
        (challenge,) = sip_request(payload, src=STRANGER, authenticate=False)
        assert status_of(challenge)[0] == 407
        # The challenge answered as a phone does (next CSeq, new branch). Sending the same REFER again
        # would be a retransmission, dropped while the worker that sent the 407 is still finishing it
        # (t_precheck_trans), and this one-shot sender never retransmits: no answer on a loaded machine.
        (answer,) = sip_request(answer_challenge(payload, challenge), src=STRANGER, authenticate=False)
        assert status_of(answer) == (403, "Out-Of-Dialog REFER Not Accepted")
    assert stand_in.received() == []
    (event,) = proxy.wait_events(1)
    assert (event["from"], event["decision"]["rule"]) == ("sip:1002@lab.test", "out-of-dialog")


def test_kdmq_from_anyone_but_a_peer_is_refused(kamailio: Kamailio) -> None:
    kdmq = (
        f"KDMQ sip:htable@{PROXY}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {STRANGER}:{{port}};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{STRANGER}>;tag=1\r\nTo: <sip:htable@{PROXY}>\r\nCall-ID: {uuid.uuid4().hex}\r\n"
        "CSeq: 1 KDMQ\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    (answer,) = sip_request(kdmq, src=STRANGER, authenticate=False)
    assert status_of(answer) == (403, "Not A DMQ Peer")
