"""Attended transfer across two PBXs: the original call on pbx1, the consultation call on pbx2.

dave (2001, homed on pbx2) is called by pbx1 (call A), calls carol through pbx2 (call B),
then REFERs inside call A with Refer-To carrying Replaces of call B. pbx1 must receive the
REFER (it follows call A's route set) with a Refer-To that points at pbx2, which holds B.
"""

from __future__ import annotations

from pathlib import Path

import sippgen as g
from harness import PASSWORDS, PBX1, PBX2, PHONES, PROXY, Kamailio, Sipp, header, running, scenario

CALL_B = "attB1@test"


def test_in_dialog_refer_with_replaces_points_at_the_pbx_holding_the_dialog(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    reg = Sipp(
        tmp_path,
        "dave-reg",
        scenario(tmp_path, "dave-reg", g.register("2001", PASSWORDS["2001"], 200)),
        PHONES["2001"],
        remote=f"{PROXY}:5060",
    )
    assert reg.run() == 0, reg.output()

    refer_to = "<sip:1003@lab.test?Replaces=attB1%40test%3Bto-tag%3Dpbx-1%3Bfrom-tag%3Ddave-b>"
    dave_a = Sipp(
        tmp_path,
        "dave-a",
        scenario(
            tmp_path,
            "dave-a",
            "\n".join(
                [
                    g.uas_invite(capture_tag=True),
                    g.reply(200, "OK", to_tag="dave-a", contact=True),
                    '<recv request="ACK"/>',
                    '<pause milliseconds="1500"/>',
                    g.send(
                        f"""
                        REFER [next_url] SIP/2.0
                        Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
                        [routes]
                        From: <sip:2001@lab.test>;tag=dave-a
                        To: <sip:1001@lab.test>;tag=[$peertag]
                        [last_Call-ID:]
                        CSeq: 1 REFER
                        Contact: <sip:2001@[local_ip]:[local_port]>
                        Max-Forwards: 70
                        Refer-To: {refer_to}
                        """
                    ),
                    g.recv_response(202),
                ]
            ),
        ),
        PHONES["2001"],
    )
    pbx1 = Sipp(
        tmp_path,
        "pbx1",
        scenario(
            tmp_path,
            "pbx1",
            "\n".join(
                [
                    g.invite("1001", "2001", auth=False).replace(  # a PBX: trusted by address
                        "INVITE sip:2001@lab.test", "INVITE sip:2001@127.0.1.10"
                    ),
                    g.provisional(),
                    g.recv_response(200, rrs=True),
                    g.ack("1001", "2001", auth=False),
                    '<recv request="REFER"/>',
                    g.reply(202, "Accepted"),
                ]
            ),
        ),
        PBX1,
        remote=f"{PROXY}:5060",
    )
    pbx2 = Sipp(
        tmp_path,
        "pbx2",
        scenario(
            tmp_path,
            "pbx2",
            "\n".join(
                [
                    '<recv request="INVITE"/>',
                    g.reply(200, "OK", to_tag="pbx-1", contact=True),
                    '<recv request="ACK"/>',
                ]
            ),
        ),
        PBX2,
    )
    dave_b = Sipp(
        tmp_path,
        "dave-b",
        scenario(
            tmp_path,
            "dave-b",
            g.answered_call("2001", "1003", from_tag="dave-b"),
        ),
        PHONES["2001"],
        remote=f"{PROXY}:5060",
        port=5062,
        extra=["-cid_str", "attB%u@test"],
    )
    with running(dave_a, pbx2):
        pbx1.start()
        assert dave_b.run() == 0, dave_b.output()
        assert pbx1.wait() == 0, pbx1.output() + kamailio.log()
        assert dave_a.wait() == 0, dave_a.output()
    (refer,) = pbx1.received("REFER")
    (target,) = header(refer, "Refer-To")
    assert target.startswith(f"<sip:1003@{PBX2}:5060?Replaces=attB1%40test")
    (event,) = [e for e in kamailio.wait_events(1) if e["event"] == "refer.decision"]
    assert event["replaces_pbx"] == "pbx2"
    assert event["decision"]["allowed"] is True
