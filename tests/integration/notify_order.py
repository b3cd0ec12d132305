"""Racing a NOTIFY against its REFER's 202 through the proxy, from a PBX stand-in on raw UDP.

Each round: phone 1002 sends an out-of-dialog REFER; the proxy relays it to pbx1, where a stand-in
answers 202 and sends the first NOTIFY (``SIP/2.0 100 Trying``) right after it, in two back-to-back
datagrams, as Asterisk does. The phone records which of the two reaches it first, and answers the
NOTIFY 200. Used by tests/integration/test_proxy_notify_order.py and tests/bench/notify_order_load.py.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

from harness import PBX1, PHONES, PORT, refer_bytes, send_authenticated

CRLF = b"\r\n"


@dataclass
class Tally:
    rounds: int = 0
    in_order: int = 0  # the 202 reached the phone first
    overtaken: int = 0  # the NOTIFY reached the phone before the 202
    lost: int = 0  # one of the two never came
    leads: list[float] = field(default_factory=list)  # seconds each overtaking NOTIFY came before its 202
    missing: list[str] = field(default_factory=list)  # for each incomplete round, what never came
    incomplete: list[str] = field(default_factory=list)  # their REFERs' Call-IDs
    # NOTIFYs that reached the phone still carrying a Route header: the proxy's own (loose_route removes
    # it) must not survive a hold, in a worker or suspended (the native routing's async_ms_route).
    routed: int = 0

    def __str__(self) -> str:
        led = ", ".join(f"{lead * 1000:.1f}" for lead in sorted(self.leads))
        missing = "; ".join(self.missing)
        return (
            f"{self.rounds} REFERs: 202 first {self.in_order}, NOTIFY first {self.overtaken}"
            f"{f' (by {led} ms)' if led else ''}, incomplete {self.lost}"
            f"{f' (missing: {missing})' if missing else ''}"
            f"{f', {self.routed} NOTIFYs with a Route left' if self.routed else ''}"
        )


def _headers(message: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    head = message.split(CRLF + CRLF, 1)[0].split(CRLF)
    pairs = []
    for line in head[1:]:
        name, _, value = line.partition(b":")
        pairs.append((name.strip().lower(), value.strip()))
    return head[0], pairs


def _all(pairs: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [value for key, value in pairs if key == name]


def _answer_and_notify(refer: bytes) -> tuple[bytes, bytes]:
    """The stand-in's 202 to ``refer``, and its first NOTIFY in the dialog the REFER made."""
    _, pairs = _headers(refer)
    tag = uuid.uuid4().hex[:8].encode()
    (frm,) = _all(pairs, b"from")
    (to,) = _all(pairs, b"to")
    (call_id,) = _all(pairs, b"call-id")
    (cseq,) = _all(pairs, b"cseq")
    (contact,) = _all(pairs, b"contact")
    reply = [b"SIP/2.0 202 Accepted"]
    reply += [b"Via: " + via for via in _all(pairs, b"via")]
    reply += [b"From: " + frm, b"To: " + to + b";tag=" + tag, b"Call-ID: " + call_id, b"CSeq: " + cseq]
    reply += [b"Record-Route: " + rr for rr in _all(pairs, b"record-route")]
    reply += [b"Contact: <sip:1001@" + PBX1.encode() + b":5060>", b"Content-Length: 0", b"", b""]
    body = b"SIP/2.0 100 Trying\r\n"
    target = contact.strip(b"<>").split(b">")[0]
    notify = [
        b"NOTIFY " + target + b" SIP/2.0",
        b"Via: SIP/2.0/UDP " + PBX1.encode() + b":5060;branch=z9hG4bK" + uuid.uuid4().hex.encode(),
        b"Max-Forwards: 70",
        *[b"Route: " + rr for rr in _all(pairs, b"record-route")],
        b"From: " + to + b";tag=" + tag,
        b"To: " + frm,
        b"Call-ID: " + call_id,
        b"CSeq: 1 NOTIFY",
        b"Contact: <sip:1001@" + PBX1.encode() + b":5060>",
        b"Event: refer",
        b"Subscription-State: active;expires=60",
        b"Content-Type: message/sipfrag",
        b"Content-Length: " + str(len(body)).encode(),
        b"",
        body,
    ]
    return CRLF.join(reply), CRLF.join(notify)


def _ok_to(notify: bytes) -> bytes:
    _, pairs = _headers(notify)
    lines = [b"SIP/2.0 200 OK"]
    lines += [b"Via: " + via for via in _all(pairs, b"via")]
    for name in (b"from", b"to", b"call-id", b"cseq"):
        lines += [name.title() + b": " + value for value in _all(pairs, name)]
    return CRLF.join([*lines, b"Content-Length: 0", b"", b""])


def race(rounds: int, *, parallel: int = 1, wait: float = 2.0) -> Tally:
    """``rounds`` REFERs, from ``parallel`` phones at once (each one REFER at a time), through one
    pbx1 stand-in; which of 202 and NOTIFY reached the phone first in each."""
    tally = Tally()
    lock = threading.Lock()
    stop = threading.Event()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as pbx:
        pbx.bind((PBX1, PORT))
        pbx.settimeout(0.05)
        stand_in = threading.Thread(target=_serve_pbx, args=(pbx, stop), daemon=True)
        stand_in.start()
        shares = [rounds // parallel + (1 if i < rounds % parallel else 0) for i in range(parallel)]
        phones = [threading.Thread(target=_phone, args=(n, tally, lock, wait)) for n in shares if n]
        for thread in phones:
            thread.start()
        for thread in phones:
            thread.join()
        stop.set()
        stand_in.join()
    return tally


def _serve_pbx(pbx: socket.socket, stop: threading.Event) -> None:
    """pbx1: every REFER answered 202, its NOTIFY right after (two back-to-back datagrams)."""
    while not stop.is_set():
        try:
            data, addr = pbx.recvfrom(65535)
        except TimeoutError:
            continue
        if data.startswith(b"REFER "):
            answer, notify = _answer_and_notify(data)
            pbx.sendto(answer, addr)
            pbx.sendto(notify, addr)  # right after the 202: the race a stock relay never loses


def _phone(rounds: int, tally: Tally, lock: threading.Lock, wait: float) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone:
        phone.bind((PHONES["1002"], 0))
        port = phone.getsockname()[1]
        for _ in range(rounds):
            refer = refer_bytes([b"Refer-To: <sip:1003@lab.test>"]).replace(b"{port}", str(port).encode())
            call_id = _all(_headers(refer)[1], b"call-id")[0]
            send_authenticated(phone, refer, wait)  # the proxy challenges phones (407)
            first, lead, seen = _first_at_phone(phone, call_id, wait)
            with lock:
                tally.rounds += 1
                tally.routed += b"routed" in seen
                if first == b"202":
                    tally.in_order += 1
                elif first == b"NOTIFY":
                    tally.overtaken += 1
                    tally.leads.append(lead)
                else:
                    tally.lost += 1
                    tally.missing.append(" and ".join(k for k in ("202", "NOTIFY") if k.encode() not in seen))
                    tally.incomplete.append(call_id.decode())


def _first_at_phone(
    phone: socket.socket, call_id: bytes, wait: float
) -> tuple[bytes | None, float, dict[bytes, float]]:
    """Wait until the phone got both the 202 and the NOTIFY (answered 200); the first one's kind, how long
    before the second it came, and when each one seen came."""
    first: bytes | None = None
    seen: dict[bytes, float] = {}
    deadline = time.monotonic() + wait
    while not (b"202" in seen and b"NOTIFY" in seen) and (left := deadline - time.monotonic()) > 0:
        phone.settimeout(left)
        try:
            data, addr = phone.recvfrom(65535)
        except TimeoutError:
            break
        start, pairs = _headers(data)
        if _all(pairs, b"call-id") != [call_id]:
            continue  # a late retransmission of an earlier round
        kind = (
            b"202" if start.startswith(b"SIP/2.0 202") else b"NOTIFY" if start.startswith(b"NOTIFY") else b""
        )
        if not kind:
            continue
        first = first or kind
        if kind == b"NOTIFY":
            phone.sendto(_ok_to(data), addr)
            if _all(pairs, b"route") and b"NOTIFY" not in seen:
                seen[b"routed"] = 0.0  # counted by _phone
        seen.setdefault(kind, time.monotonic())
    if not (b"202" in seen and b"NOTIFY" in seen):
        return None, 0.0, seen
    return first, abs(seen[b"202"] - seen[b"NOTIFY"]), seen
