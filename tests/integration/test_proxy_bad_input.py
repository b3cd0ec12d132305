"""Hostile or broken REFERs: each gets a 4xx from the proxy, nothing reaches a PBX, no worker breaks."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from harness import PORT, PROXY, Kamailio, answer_challenge, refer_bytes, sip_request, status_of

CASES = {
    "missing": [],
    "two-headers": [b"Refer-To: <sip:1003@lab.test>", b"Refer-To: <sip:09001234567@lab.test>"],
    "two-values": [b"Refer-To: <sip:1003@lab.test>, <sip:09001234567@lab.test>"],
    "unclosed": [b"Refer-To: <sip:1003@lab.test"],
    "empty": [b"Refer-To: "],
    "huge": [b"Refer-To: <sip:" + b"1" * 20000 + b"@lab.test>"],
    "not-utf8": [b"Refer-To: <sip:10\xff3@lab.test>"],
    "not-utf8-display": [b'Refer-To: "\xc3\x28" <sip:1003@lab.test>'],
    "compact-premium": [b"r: <sip:09001234567@lab.test>"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_refer_gets_4xx_and_worker_survives(kamailio: Kamailio, case: str) -> None:
    (answer,) = sip_request(refer_bytes(CASES[case]))
    status, reason = status_of(answer)
    assert 400 <= status < 500, (status, reason)
    # The same worker pool still serves the next REFER correctly.
    (again,) = sip_request(refer_bytes([b"Refer-To: <sip:09001234567@lab.test>"]))
    assert status_of(again)[0] == 403
    log = kamailio.log()
    assert "Unhandled exception" not in log
    assert "Traceback" not in log
    decisions = [e for e in kamailio.wait_events(2) if e["event"] == "refer.decision"]
    assert len(decisions) == 2
    assert decisions[0]["decision"]["allowed"] is False
    assert decisions[0]["decision"]["status"] == status


def test_bad_byte_outside_refer_to_is_answered(kamailio: Kamailio) -> None:
    extra = b"Subject: caf\xe9"
    (answer,) = sip_request(refer_bytes([b"Refer-To: <sip:09001234567@lab.test>"], extra=extra))
    assert status_of(answer)[0] == 403
    assert "Unhandled exception" not in kamailio.log()


def test_bad_byte_in_from_is_answered_400(kamailio: Kamailio) -> None:
    payload = refer_bytes([b"Refer-To: <sip:1003@lab.test>"]).replace(
        b"From: <sip:1002", b"From: <sip:10\xff2"
    )
    (answer,) = sip_request(payload, user="1002")
    assert status_of(answer)[0] == 400
    assert "Unhandled exception" not in kamailio.log()


def test_scanner_user_agent_gets_no_answer(kamailio: Kamailio) -> None:
    payload = refer_bytes([b"Refer-To: <sip:1003@lab.test>"], extra=b"User-Agent: friendly-scanner")
    assert sip_request(payload, wait=1.0) == []
    assert "scanner user agent" in kamailio.log()
    assert kamailio.events() == []


def test_refer_flood_from_one_phone_is_limited(start_kamailio: Callable[..., Kamailio]) -> None:
    start_kamailio(kamailio__refer_rate=3)
    codes = [
        status_of(sip_request(refer_bytes([b"Refer-To: <sip:09001234567@lab.test>"]))[0])[0]
        for _ in range(12)
    ]
    assert codes[0] == 403
    assert 503 in codes
    # Another phone is not affected.
    (other,) = sip_request(
        refer_bytes([b"Refer-To: <sip:09001234567@lab.test>"], user="1003"), src="127.0.1.33"
    )
    assert status_of(other)[0] == 403


def test_request_failing_sanity_checks_is_answered(kamailio: Kamailio) -> None:
    payload = refer_bytes([b"Refer-To: <sip:1003@lab.test>"]).replace(b"CSeq: 1 REFER", b"CSeq: 1 INVITE")
    (answer,) = sip_request(payload)
    assert status_of(answer)[0] == 400
    assert kamailio.events() == []  # never reached the REFER logic


def test_refer_over_tcp_is_decided_too(kamailio: Kamailio) -> None:
    # TCP requests are handled by other Kamailio processes, each with its own interpreter.
    payload = refer_bytes([b"Refer-To: <sip:09001234567@lab.test>"]).replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")
    with socket.create_connection((PROXY, PORT), timeout=5, source_address=("127.0.1.32", 0)) as conn:
        port = str(conn.getsockname()[1]).encode()

        def exchange(message: bytes) -> bytes:
            conn.sendall(message.replace(b"{port}", port))
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data

        challenge = exchange(payload)
        assert status_of(challenge)[0] == 407
        data = exchange(answer_challenge(payload, challenge))
    assert status_of(data) == (403, "Transfer to +449001234567 denied: premium-rate (09)")
    assert kamailio.events()[0]["decision"]["rule"] == "prefixes:deny:+449"
