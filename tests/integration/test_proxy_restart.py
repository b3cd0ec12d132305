"""State across a SIGKILL of the proxy, and PBXs that stop answering.

Registrations (usrloc, write-through to SQLite) and the dialog map (htable, written through to
SQLite) must survive a SIGKILL: after the restart a PBX still reaches the registered phone and an
attended transfer of a call set up before it is routed, not answered 481. A PBX that answers no
OPTIONS probe gets no request: the caller gets 503 with Retry-After at once, until it answers again.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sippgen as g
from harness import PASSWORDS, PBX1, PHONES, PROXY, Kamailio, Sipp, header, running, scenario

from referee import events


def sipp(tmp: Path, name: str, ip: str, body: str, remote: str | None = f"{PROXY}:5060") -> Sipp:
    return Sipp(tmp, name, scenario(tmp, name, body), ip, remote=remote)


def answering(tmp: Path, name: str, ip: str, to_tag: str) -> Sipp:
    """A UAS answering one INVITE 200 (a PBX stand-in or a phone)."""
    body = (
        '<recv request="INVITE"/>\n'
        + g.reply(200, "OK", to_tag=to_tag, contact=True)
        + '\n<recv request="ACK"/>'
    )
    return sipp(tmp, name, ip, body, remote=None)


def test_registrations_and_dialogs_survive_a_sigkill(
    start_kamailio: Callable[..., Kamailio], tmp_path: Path
) -> None:
    kamailio = start_kamailio()
    reg = sipp(tmp_path, "alice-reg", PHONES["1001"], g.register("1001", PASSWORDS["1001"], 200))
    assert reg.run() == 0, reg.output()
    # bob calls through the proxy to his home PBX: the dialog map learns CALL -> pbx1.
    pbx1_call = answering(tmp_path, "pbx1-call", PBX1, "pbx-1")
    bob = sipp(
        tmp_path,
        "bob",
        PHONES["1002"],
        "\n".join(
            [
                g.invite("1002", "1001", from_tag="bob-a"),
                g.provisional(),
                g.recv_response(200, rrs=True),
                g.ack("1002", "1001", from_tag="bob-a"),
            ]
        ),
    )
    with running(pbx1_call):
        assert bob.run() == 0, bob.output() + kamailio.log()
        assert pbx1_call.wait() == 0, pbx1_call.output()
    (invite,) = pbx1_call.received("INVITE")
    (call,) = header(invite, "Call-ID")

    kamailio.kill()
    kamailio.start()

    # The registration is back: pbx1 reaches alice.
    alice = answering(tmp_path, "alice", PHONES["1001"], "alice-1")
    pbx1_to_alice = sipp(
        tmp_path,
        "pbx1-to-alice",
        PBX1,
        "\n".join(
            [
                # pbx1 is trusted by address: no challenge
                g.invite("1003", "1001", auth=False).replace(
                    "INVITE sip:1001@lab.test", f"INVITE sip:1001@{PROXY}"
                ),
                g.provisional(),
                g.recv_response(200, rrs=True),
                g.ack("1003", "1001", auth=False),
            ]
        ),
    )
    with running(alice):
        assert pbx1_to_alice.run() == 0, pbx1_to_alice.output() + kamailio.log()
        assert alice.wait() == 0, alice.output()

    # The dialog is known: an attended transfer of CALL goes to pbx1, which holds it.
    refer_to = f"<sip:1001@lab.test?Replaces={call.replace('@', '%40')}%3Bto-tag%3Dpbx-1%3Bfrom-tag%3Dbob-a>"
    pbx1_refer = sipp(tmp_path, "pbx1-refer", PBX1, g.uas_refer(), remote=None)
    bob_refer = sipp(tmp_path, "bob-refer", PHONES["1002"], g.ood_refer(refer_to, 202, user="1002"))
    with running(pbx1_refer):
        assert bob_refer.run() == 0, bob_refer.output() + kamailio.log()
        assert pbx1_refer.wait() == 0, pbx1_refer.output()
    (relayed,) = pbx1_refer.received("REFER")
    assert f"sip:1001@{PBX1}:5060" in " ".join(header(relayed, "Refer-To"))
    decision = [e for e in kamailio.events() if e["event"] == "refer.decision"][-1]
    assert decision["decision"]["allowed"] is True
    assert decision["replaces_pbx"] == "pbx1"


def wait_for(kamailio: Kamailio, matches: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in kamailio.events() if matches(e)]
        if found:
            return found[-1]
        time.sleep(0.2)
    raise AssertionError(f"no such event in {kamailio.events()}\n{kamailio.log()}")


def test_a_pbx_that_answers_no_probe_gets_503_at_once_until_it_answers(
    start_kamailio: Callable[..., Kamailio], tmp_path: Path
) -> None:
    kamailio = start_kamailio(kamailio__pbx_probe_interval=1)
    # Nothing listens on pbx1: its first probe times out (the tm timer), then it is down.
    wait_for(kamailio, lambda e: e["event"] == "pbx.health" and e["pbx"] == "pbx1" and not e["up"], 10)

    bob = sipp(
        tmp_path,
        "bob",
        PHONES["1002"],
        "\n".join([g.invite("1002", "1001"), g.provisional(), g.recv_response(503), g.ack("1002", "1001")]),
    )
    started = time.monotonic()
    assert bob.run() == 0, bob.output() + kamailio.log()
    assert time.monotonic() - started < 3  # SIPp's own start-up included; a timeout would be 5 s
    (answer,) = [m for m in bob.received() if m.startswith("SIP/2.0 503")]
    assert header(answer, "Retry-After") == ["10"]
    # The proxy's own answer is an event like any other response.
    reply = events.from_dict(wait_for(kamailio, lambda e: e["event"] == "proxy.reply", 3))
    assert isinstance(reply, events.ProxyReply)
    assert (reply.method, reply.status, reply.pbx, reply.src) == ("INVITE", 503, "pbx1", PHONES["1002"])

    carol = sipp(tmp_path, "carol", PHONES["1003"], g.ood_refer("<sip:1001@lab.test>", 503, user="1003"))
    assert carol.run() == 0, carol.output()
    response = wait_for(kamailio, lambda e: e["event"] == "refer.response", 3)
    assert (response["status"], response.get("local")) == (503, True)

    # pbx1 comes back: it answers the probes, is up again and gets the next call (busy, here).
    with answering_pbx(PBX1) as seen:
        wait_for(kamailio, lambda e: e["event"] == "pbx.health" and e["pbx"] == "pbx1" and e["up"], 10)
        dave = sipp(
            tmp_path,
            "dave",
            PHONES["1002"],
            "\n".join(
                [g.invite("1002", "1001"), g.provisional(), g.recv_response(486), g.ack("1002", "1001")]
            ),
        )
        assert dave.run() == 0, dave.output() + kamailio.log()
    assert "INVITE" in seen


@contextmanager
def answering_pbx(ip: str) -> Iterator[list[str]]:
    """A PBX stand-in answering OPTIONS 200 and INVITE 486, as long as the block runs (SIPp's -aa
    answers the probes of one call only)."""
    seen: list[str] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ip, 5060))
    sock.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                data, peer = sock.recvfrom(65535)
            except TimeoutError:
                continue
            lines = data.decode(errors="replace").split("\r\n")
            method = lines[0].split(" ")[0]
            seen.append(method)
            if method == "ACK":
                continue
            keep = [
                h for h in lines[1:] if h.split(":")[0].lower() in ("via", "from", "to", "call-id", "cseq")
            ]
            status = "200 OK" if method == "OPTIONS" else "486 Busy Here"
            keep = [h + ";tag=pbx" if h.lower().startswith("to:") and status[0] == "4" else h for h in keep]
            sock.sendto(
                ("\r\n".join([f"SIP/2.0 {status}", *keep, "Content-Length: 0", "", ""])).encode(), peer
            )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join()
        sock.close()
