"""Ladder diagrams of the SIP messages in a pcap, between named lab nodes (RFC 3515 figure style).

The pcap is read with scapy; each UDP datagram or TCP segment whose payload starts like a SIP message is one
arrow. Output: text for the terminal and an SVG file.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.utils import PcapReader

_REQUEST = re.compile(rb"^([A-Z]+) (\S+) SIP/2\.0\r?$")
_RESPONSE = re.compile(rb"^SIP/2\.0 (\d{3}) ?(.*?)\r?$")
_CSEQ = re.compile(rb"^(?:CSeq|cseq|CSEQ)\s*:\s*(\d+)\s+([A-Za-z]+)", re.MULTILINE)
_SIPFRAG = re.compile(rb"\r?\n\r?\n(SIP/2\.0 \d{3}[^\r\n]*)")


@dataclass(frozen=True)
class Message:
    time: float
    src: str
    dst: str
    label: str
    is_request: bool
    call_id: str = ""
    cseq: int = 0
    sipfrag: str = ""  # the status line of a NOTIFY's message/sipfrag body, if any
    uri: str = ""  # a request's Request-URI


_CALL_ID = re.compile(rb"^(?:Call-ID|i)\s*:\s*(\S+)", re.MULTILINE | re.IGNORECASE)


def uri_user(uri: str) -> str:
    """The user part of a SIP URI (``sip:09098790000@lab.test;user=phone`` -> ``09098790000``), or ""."""
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips", "tel"):
        return ""
    if scheme.lower() == "tel":
        return rest.split(";", 1)[0]
    user, at, _ = rest.partition("@")
    return user.split(";", 1)[0] if at else ""


def notify_outcomes(messages: list[Message], src: str, dst: str) -> list[str]:
    """The sipfrag status lines of the NOTIFYs from ``src`` to ``dst``, in CSeq order per dialog.

    Through a multi-worker proxy NOTIFYs can overtake each other; their CSeq numbers cannot.
    Retransmissions are counted once.
    """
    seen: dict[tuple[str, int], str] = {}
    for m in messages:
        if m.is_request and m.sipfrag and m.src == src and m.dst == dst:
            seen.setdefault((m.call_id, m.cseq), m.sipfrag)
    return [seen[key] for key in sorted(seen)]


def first_refer(messages: list[Message], referrer: str, proxy: str = "proxy") -> Message | None:
    """``referrer``'s first REFER to ``proxy`` in the capture (a retransmission is not a new one)."""
    return next(
        (m for m in messages if m.is_request and m.label == "REFER" and m.src == referrer and m.dst == proxy),
        None,
    )


def refer_to_notify_latency(messages: list[Message], referrer: str, proxy: str = "proxy") -> float | None:
    """Seconds from ``referrer``'s first REFER to ``proxy`` to the first NOTIFY with sipfrag 200 that
    ``proxy`` delivers to ``referrer`` in the REFER's dialog (its Call-ID); None if either is not captured.

    Only REFER -> NOTIFY 200 is measured, not what the phones do before the REFER or after the NOTIFY.
    Retransmissions do not count: the first copy of each is taken.
    """
    refer = first_refer(messages, referrer, proxy)
    if refer is None:
        return None
    for m in messages:
        if (
            m.is_request
            and m.src == proxy
            and m.dst == referrer
            and m.call_id == refer.call_id
            and m.sipfrag.startswith("200")
            and m.time >= refer.time
        ):
            return m.time - refer.time
    return None


def requests_after(messages: list[Message], first: str, method: str, src: str) -> list[Message]:
    """The ``method`` requests ``src`` sent after the first ``first`` request of the capture (from anyone).

    Empty when no ``first`` request was captured. Retransmissions are each counted.
    """
    started = False
    found = []
    for m in messages:
        if not m.is_request:
            continue
        name = m.label.split(" ", 1)[0]
        if started and name == method and m.src == src:
            found.append(m)
        started = started or name == first
    return found


def _message(payload: bytes, time: float, src: str, dst: str) -> Message | None:
    """One SIP message read from a payload, each header looked up once; None if it is not SIP."""
    first = payload.partition(b"\n")[0]
    cseq = _CSEQ.search(payload)
    call_id = _CALL_ID.search(payload)
    call = call_id.group(1).decode(errors="replace") if call_id else ""
    number = int(cseq.group(1)) if cseq else 0
    if request := _REQUEST.match(first):
        label = request.group(1).decode()
        frag = _SIPFRAG.search(payload)
        sipfrag = frag.group(1).decode(errors="replace").removeprefix("SIP/2.0 ") if frag else ""
        if label == "NOTIFY" and sipfrag:
            label += f" ({sipfrag})"
        uri = request.group(2).decode(errors="replace")
        return Message(time, src, dst, label, True, call, number, sipfrag, uri)
    if response := _RESPONSE.match(first):
        method = cseq.group(2).decode(errors="replace").upper() if cseq else ""
        reason = response.group(2).decode(errors="replace").split(" -- ")[0][:20]
        text = f"{response.group(1).decode()} {reason}".strip()
        return Message(time, src, dst, f"{text} ({method})" if method else text, False, call, number)
    return None


def read_pcap(pcap: Path, names: dict[str, str]) -> list[Message]:
    """SIP messages between the named nodes of the capture, in capture order."""
    messages: list[Message] = []
    if not pcap.is_file() or pcap.stat().st_size == 0:
        return messages
    start: float | None = None
    with PcapReader(str(pcap)) as reader:
        for pkt in reader:
            if IP not in pkt:
                continue
            if UDP in pkt:
                layer = pkt[UDP]
            elif TCP in pkt:
                layer = pkt[TCP]
            else:
                continue
            payload = bytes(layer.payload)
            if not payload:
                continue
            src, dst = names.get(pkt[IP].src), names.get(pkt[IP].dst)
            if src is None or dst is None:  # not between two lab nodes
                continue
            ts = float(pkt.time)
            message = _message(payload, ts - (ts if start is None else start), src, dst)
            if message is None:
                continue
            start = ts if start is None else start
            messages.append(message)
    return messages


def column_order(messages: list[Message], preferred: list[str]) -> list[str]:
    seen = {m.src for m in messages} | {m.dst for m in messages}
    order = [n for n in preferred if n in seen]
    return order + sorted(seen - set(order))


COL = 26  # characters between two lifelines


def render_text(messages: list[Message], order: list[str]) -> str:
    if not messages:
        return "(no SIP messages captured)"
    pos = {name: i for i, name in enumerate(order)}
    width = COL * (len(order) - 1) + 1
    margin = " " * 9
    head = [" "] * (width + COL)
    for name, i in pos.items():
        start = max(0, i * COL - len(name) // 2)
        head[start : start + len(name)] = list(name)
    lines = [margin + "".join(head).rstrip()]
    lifelines = "".join("|" if k % COL == 0 else " " for k in range(width))
    lines.append(margin + lifelines)
    for m in messages:
        a, b = pos[m.src] * COL, pos[m.dst] * COL
        row = list(lifelines)
        lo, hi = min(a, b), max(a, b)
        for k in range(lo + 1, hi):
            row[k] = "-"
        if b > a:
            row[hi - 1] = ">"
        else:
            row[lo + 1] = "<"
        label = f" {m.label} "
        span = hi - lo - 3
        if len(label) > span:
            label = label[: max(span, 0)]
        offset = lo + 2 + (span - len(label)) // 2
        row[offset : offset + len(label)] = list(label)
        lines.append(f"{m.time:8.3f} " + "".join(row))
    lines.append(margin + lifelines)
    return "\n".join(lines)


def write_svg(messages: list[Message], order: list[str], path: Path, title: str = "") -> None:
    col, top, row_h, left = 200, 70, 26, 90
    width = max(left + col * max(len(order) - 1, 1) + 90, 20 + 9 * len(title))
    height = top + row_h * (len(messages) + 1) + 30
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="12">',
        '<defs><marker id="arrow" markerWidth="10" markerHeight="8" refX="9" refY="4" orient="auto">'
        '<path d="M0,0 L10,4 L0,8 z" fill="#222"/></marker></defs>',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{html.escape(title)}</text>',
    ]
    x = {name: left + i * col for i, name in enumerate(order)}
    bottom = height - 20
    for name, xi in x.items():
        out.append(
            f'<text x="{xi}" y="{top - 22}" text-anchor="middle" font-weight="bold">'
            f"{html.escape(name)}</text>"
        )
        out.append(
            f'<line x1="{xi}" y1="{top - 15}" x2="{xi}" y2="{bottom}" stroke="#888" stroke-dasharray="4,3"/>'
        )
    for i, m in enumerate(messages):
        y = top + row_h * (i + 1)
        x1, x2 = x[m.src], x[m.dst]
        colour = "#1f4e9c" if m.is_request else "#2b7a2b"
        out.append(f'<text x="10" y="{y + 4}" fill="#666">{m.time:7.3f}</text>')
        out.append(
            f'<line x1="{x1}" y1="{y}" x2="{x2 - 4 if x2 > x1 else x2 + 4}" y2="{y}" stroke="{colour}" '
            'stroke-width="1.5" marker-end="url(#arrow)"/>'
        )
        out.append(
            f'<text x="{(x1 + x2) / 2}" y="{y - 5}" text-anchor="middle" fill="{colour}">'
            f"{html.escape(m.label)}</text>"
        )
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")
