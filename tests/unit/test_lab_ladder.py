"""The ladder diagram from a pcap (written here with scapy), and the SIP check that reads it: no root,
no lab needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from lab_fixtures import load_scenario
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw
from scapy.utils import wrpcap

from referee_lab import ladder, scenario
from referee_lab.scenario.checks.sip import SipCheck

NAMES = {"127.0.0.31": "alice", "127.0.0.10": "proxy", "127.0.0.20": "pbx1"}


def _sip(src: str, dst: str, text: str, t: float) -> object:
    pkt = IP(src=src, dst=dst) / UDP(sport=5060, dport=5060) / Raw(text.replace("\n", "\r\n").encode())
    pkt.time = t
    return pkt


def _capture(tmp_path: Path) -> Path:
    pcap = tmp_path / "c.pcap"
    wrpcap(
        str(pcap),
        [
            _sip("127.0.0.31", "127.0.0.10", "INVITE sip:1002@lab.test SIP/2.0\nCSeq: 1 INVITE\n\n", 10.0),
            _sip("127.0.0.10", "127.0.0.20", "INVITE sip:1002@lab.test SIP/2.0\nCSeq: 1 INVITE\n\n", 10.1),
            _sip(
                "127.0.1.5", "127.0.0.10", "OPTIONS sip:x SIP/2.0\nCSeq: 9 OPTIONS\n\n", 10.15
            ),  # not a lab node
            _sip("127.0.0.20", "127.0.0.10", "SIP/2.0 200 OK\nCSeq: 1 INVITE\n\n", 10.2),
            _sip(
                "127.0.0.20",
                "127.0.0.10",
                "NOTIFY sip:a SIP/2.0\nCSeq: 3 NOTIFY\nContent-Type: message/sipfrag\n\nSIP/2.0 404 Not Found\n",
                10.3,
            ),
            _sip("127.0.0.10", "127.0.0.31", "not sip at all", 10.4),
        ],
    )
    return pcap


def test_reads_sip_between_named_nodes_only(tmp_path: Path) -> None:
    messages = ladder.read_pcap(_capture(tmp_path), NAMES)
    assert [(m.src, m.dst, m.label) for m in messages] == [
        ("alice", "proxy", "INVITE"),
        ("proxy", "pbx1", "INVITE"),
        ("pbx1", "proxy", "200 OK (INVITE)"),
        ("pbx1", "proxy", "NOTIFY (404 Not Found)"),
    ]
    assert messages[0].time == 0.0
    assert round(messages[2].time, 3) == 0.2


def test_text_and_svg(tmp_path: Path) -> None:
    messages = ladder.read_pcap(_capture(tmp_path), NAMES)
    order = ladder.column_order(messages, ["alice", "proxy", "pbx1", "bob"])
    assert order == ["alice", "proxy", "pbx1"]
    text = ladder.render_text(messages, order).splitlines()
    assert text[0].split() == ["alice", "proxy", "pbx1"]
    assert "|" in text[2] and "INVITE" in text[2] and text[2].index(">") > text[2].index("INVITE")
    assert "<" in text[4] and "200 OK" in text[4]
    svg = tmp_path / "l.svg"
    ladder.write_svg(messages, order, svg, title="t & <t>")
    body = svg.read_text()
    assert body.startswith("<svg") and body.rstrip().endswith("</svg>")
    assert "t &amp; &lt;t&gt;" in body and body.count("marker-end") == len(messages)


def test_notify_outcomes_in_cseq_order(tmp_path: Path) -> None:
    def notify(cseq: int, frag: str, t: float) -> object:
        return _sip(
            "127.0.0.10",
            "127.0.0.31",
            f"NOTIFY sip:a SIP/2.0\nCall-ID: x1\nCSeq: {cseq} NOTIFY\n"
            f"Content-Type: message/sipfrag\n\nSIP/2.0 {frag}\n",
            t,
        )

    pcap = tmp_path / "n.pcap"
    # 200 overtakes 100 (two proxy workers); the 180 is retransmitted.
    wrpcap(
        str(pcap),
        [
            notify(2, "180 Ringing", 1.0),
            notify(3, "200 OK", 1.1),
            notify(1, "100 Trying", 1.2),
            notify(2, "180 Ringing", 1.3),
        ],
    )
    messages = ladder.read_pcap(pcap, NAMES)
    assert ladder.notify_outcomes(messages, "proxy", "alice") == ["100 Trying", "180 Ringing", "200 OK"]
    assert ladder.notify_outcomes(messages, "alice", "proxy") == []


def test_empty_capture(tmp_path: Path) -> None:
    assert ladder.read_pcap(tmp_path / "missing.pcap", NAMES) == []
    assert ladder.render_text([], []) == "(no SIP messages captured)"


def test_requests_after_the_first_refer(tmp_path: Path) -> None:
    def req(src: str, dst: str, method: str, t: float) -> object:
        return _sip(src, dst, f"{method} sip:x SIP/2.0\nCall-ID: c1\nCSeq: 1 {method}\n\n", t)

    pcap = tmp_path / "r.pcap"
    wrpcap(
        str(pcap),
        [
            req("127.0.0.20", "127.0.0.10", "INVITE", 1.0),  # the call itself, before the REFER
            _sip("127.0.0.20", "127.0.0.10", "SIP/2.0 100 Trying\nCSeq: 1 INVITE\n\n", 1.1),
            req("127.0.0.31", "127.0.0.10", "REFER", 2.0),
            _sip("127.0.0.10", "127.0.0.31", "SIP/2.0 403 Forbidden\nCSeq: 1 REFER\n\n", 2.1),
            req("127.0.0.31", "127.0.0.10", "BYE", 3.0),
        ],
    )
    messages = ladder.read_pcap(pcap, NAMES)
    assert ladder.requests_after(messages, "REFER", "INVITE", "pbx1") == []
    assert ladder.requests_after(messages, "REFER", "BYE", "alice")[0].time == 2.0
    assert ladder.requests_after(messages, "MESSAGE", "BYE", "alice") == []

    late = [*messages, ladder.Message(4.0, "pbx1", "proxy", "INVITE", True)]
    late.append(ladder.Message(4.1, "pbx1", "proxy", "INVITE", True))
    assert [m.time for m in ladder.requests_after(late, "REFER", "INVITE", "pbx1")] == [4.0, 4.1]


def test_expect_no_invite_after_refer() -> None:
    expect = SipCheck(no_invite_after_refer_from=("pbx1", "pbx2"))
    before = [
        ladder.Message(0.0, "pbx1", "proxy", "INVITE", True),
        ladder.Message(1.0, "bob", "proxy", "REFER", True),
    ]
    assert expect.check(before, []) == []
    after = [*before, ladder.Message(1.5, "pbx1", "proxy", "INVITE", True)]
    assert expect.check(after, []) == ["pbx1 sent 1 INVITE(s) after the REFER (to proxy first)"]
    assert expect.check(before[:1], []) == ["no REFER captured"]


def test_scenario_folders_load() -> None:
    rejected = scenario.load(scenario.SCENARIOS_DIR / "blind_transfer_rejected")
    sip = rejected.check(SipCheck)
    assert sip is not None
    assert sip.refer_statuses == (403,)
    assert sip.no_invite_after_refer_from == ("pbx1", "pbx2")
    assert {s.name for s in scenario.discover()} >= {
        "basic_call",
        "blind_transfer",
        "blind_transfer_rejected",
        "attended_transfer",
        "attended_transfer_cross_pbx",
    }


def test_a_phone_with_two_legs_runs_two_sipp_twins() -> None:
    attended = scenario.load(scenario.SCENARIOS_DIR / "attended_transfer")
    names = [p.name for p in attended.phones]
    consult, bob = (p for p in attended.phones if p.role == "bob")
    assert (consult.name, consult.port, consult.twin) == ("bob_consult", 5062, "127.0.0.32:5099")
    assert (bob.name, bob.port, bob.twin) == ("bob", None, "127.0.0.32:5099")
    assert names.index("bob_consult") < names.index("bob")  # the recvCmd side listens: it starts first


def test_two_phones_playing_one_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="same file"):
        load_scenario(tmp_path, '[[phones]]\nrole = "bob"\n')


def test_expect_invite_after_refer() -> None:
    expect = SipCheck(invite_after_refer=("pbx1>proxy", "proxy>pbx2"))
    refer = [ladder.Message(1.0, "bob", "proxy", "REFER", True)]
    onward = [
        ladder.Message(1.1, "pbx1", "proxy", "INVITE", True),
        ladder.Message(1.2, "proxy", "pbx2", "INVITE", True),
    ]
    assert expect.check(refer + onward, []) == []
    assert expect.check(onward[:1] + refer + onward[1:], []) == ["no INVITE pbx1 -> proxy after the REFER"]
    assert expect.check([], []) == [
        "no REFER captured",
        "no INVITE pbx1 -> proxy after the REFER",
        "no INVITE proxy -> pbx2 after the REFER",
    ]


def test_uri_user() -> None:
    assert ladder.uri_user("sip:09098790000@lab.test;user=phone") == "09098790000"
    assert ladder.uri_user("sip:+449098790000@127.0.0.10:5060") == "+449098790000"
    assert ladder.uri_user("tel:+449098790000;phone-context=x") == "+449098790000"
    assert ladder.uri_user("sip:lab.test") == ""
    assert ladder.uri_user("") == ""


def test_no_invite_to_names_invites_by_request_uri_user() -> None:
    call = ladder.Message(0.0, "pbx1", "proxy", "INVITE", True, uri="sip:1002@lab.test")
    premium = ladder.Message(1.0, "pbx1", "proxy", "INVITE", True, uri="sip:+449098790000@lab.test")
    expect = SipCheck(no_invite_to=("09098790000", "+449098790000"))
    assert expect.check([call], []) == []
    assert expect.check([call, premium], []) == ["1 INVITE(s) to +449098790000 (pbx1 -> proxy first)"]
