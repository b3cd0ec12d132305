"""REFER -> NOTIFY 200 latency from a pcap (written here with scapy): no root, no lab needed."""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.packet import Raw
from scapy.utils import wrpcap

from referee_lab import ladder

BOB, PROXY, PBX1 = "127.0.0.32", "127.0.0.10", "127.0.0.20"
NAMES = {BOB: "bob", PROXY: "proxy", PBX1: "pbx1"}


def _sip(src: str, dst: str, text: str, t: float) -> object:
    pkt = IP(src=src, dst=dst) / UDP(sport=5060, dport=5060) / Raw(text.replace("\n", "\r\n").encode())
    pkt.time = t
    return pkt


def _notify(src: str, dst: str, call_id: str, cseq: int, frag: str, t: float) -> object:
    body = f"NOTIFY sip:1002@127.0.0.32 SIP/2.0\nCall-ID: {call_id}\nCSeq: {cseq} NOTIFY\n"
    return _sip(src, dst, body + f"Content-Type: message/sipfrag\n\nSIP/2.0 {frag}\n", t)


def _messages(tmp_path: Path, packets: list[object]) -> list[ladder.Message]:
    pcap = tmp_path / "t.pcap"
    wrpcap(str(pcap), packets)
    return ladder.read_pcap(pcap, NAMES)


def test_refer_to_first_notify_200_at_the_referrer(tmp_path: Path) -> None:
    refer = "REFER sip:1001@127.0.0.20 SIP/2.0\nCall-ID: call-a\nCSeq: 3 REFER\n\n"
    messages = _messages(
        tmp_path,
        [
            _sip(BOB, PROXY, "INVITE sip:1001@lab.test SIP/2.0\nCall-ID: call-a\nCSeq: 1 INVITE\n\n", 100.0),
            _sip(BOB, PROXY, refer, 101.000),
            _sip(PROXY, PBX1, refer, 101.002),
            _sip(PBX1, PROXY, "SIP/2.0 202 Accepted\nCall-ID: call-a\nCSeq: 3 REFER\n\n", 101.010),
            _notify(PBX1, PROXY, "call-a", 5, "100 Trying", 101.020),
            _notify(PROXY, BOB, "call-a", 5, "100 Trying", 101.021),
            _notify(PBX1, PROXY, "call-a", 6, "200 OK", 101.090),
            _notify(PROXY, BOB, "other-call", 2, "200 OK", 101.095),  # another dialog: not this REFER's
            _notify(PROXY, BOB, "call-a", 6, "200 OK", 101.125),
            _notify(PROXY, BOB, "call-a", 6, "200 OK", 101.625),  # a retransmission
        ],
    )
    latency = ladder.refer_to_notify_latency(messages, "bob")
    assert latency is not None
    assert round(latency, 3) == 0.125


def test_none_without_refer_or_final_notify(tmp_path: Path) -> None:
    no_refer = _messages(tmp_path, [_notify(PROXY, BOB, "call-a", 6, "200 OK", 1.0)])
    assert ladder.refer_to_notify_latency(no_refer, "bob") is None
    no_final = [
        ladder.Message(0.0, "bob", "proxy", "REFER", True, call_id="call-a", cseq=3),
        ladder.Message(0.1, "proxy", "bob", "NOTIFY (100 Trying)", True, "call-a", 5, "100 Trying"),
        ladder.Message(0.2, "proxy", "bob", "NOTIFY (503 Service Unavailable)", True, "call-a", 6, "503 ..."),
    ]
    assert ladder.refer_to_notify_latency(no_final, "bob") is None
