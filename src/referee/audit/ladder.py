"""An audit record as an SVG ladder diagram: the REFER, the proxy's decision, the responses and NOTIFYs
it relayed, the PBX's events and the operator's actions, between lifelines, in the record's ladder order.

The lab draws the same kind of picture from a packet capture (``referee_lab.ladder``); this one needs no
capture, only what the audit trail kept, so the API can serve it for any transfer. Every text in it is
escaped: a Refer-To or a display name is whatever a phone sent.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from referee.audit.record import Entry, TransferRecord
from referee.audit.render import stamp, summarize
from referee.events import (
    NotifyOutcome,
    OperatorAction,
    PbxEvent,
    ProxyReply,
    ReferDecision,
    ReferResponse,
    TransferMove,
)

PHONE, PROXY, API = "referrer", "proxy", "API"
COL, LEFT, TOP, ROW, CHAR = 280, 120, 96, 28, 7.2  # pixels; CHAR: one character of 12 px monospace
LABEL_CHARS = int((COL - 20) / CHAR)
NOTE_CHARS = 44
REQUEST, RESPONSE, REFUSAL = "#1f4e9c", "#2b7a2b", "#b3261e"

# Characters XML 1.0 does not allow (a browser refuses the whole picture over one of them).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the ladder: an arrow ``src`` -> ``dst``, a note on lane ``src`` (no ``dst``), or a
    state change across every lane (no ``src``)."""

    time: float
    label: str
    src: str = ""
    dst: str = ""
    colour: str = REQUEST


def lanes(record: TransferRecord) -> list[str]:
    """Lifelines, left to right: the referring phone and the proxy when the proxy saw the REFER, the
    PBX, and the API when an operator acted."""
    sources = {e.source for e in record.entries}
    out = [PHONE, PROXY] if sources & {"proxy", "notify"} else []
    out.append(_pbx(record))
    if "operator" in sources:
        out.append(API)
    return out


def _pbx(record: TransferRecord) -> str:
    return record.pbx or "PBX"


def rows(record: TransferRecord) -> list[Row]:
    out: list[Row] = []
    for entry in record.ladder():
        out += _rows(entry, _pbx(record))
    return out


def _rows(entry: Entry, pbx: str) -> list[Row]:
    event, t = entry.event, entry.time
    if isinstance(event, ReferDecision):
        asked = Row(t, f"REFER {event.refer_to or '(unreadable Refer-To)'}", PHONE, PROXY)
        if event.allowed:
            return [
                asked,
                Row(t, f"ALLOW rule {event.rule or '?'}", PROXY),
                Row(t, f"REFER {event.target}", PROXY, pbx),
            ]
        verdict = Row(t, f"REJECT rule {event.rule or '?'}", PROXY, colour=REFUSAL)
        return [asked, verdict, Row(t, f"{event.status} {event.reason}", PROXY, PHONE, REFUSAL)]
    if isinstance(event, ReferResponse):
        answer = f"{event.status} {event.reason}".strip() + (
            " (REFER)" if event.subscription else " (REFER, no NOTIFY)"
        )
        colour = RESPONSE if event.status < 300 else REFUSAL
        if event.local:
            return [Row(t, answer, PROXY, PHONE, colour)]
        return [Row(t, answer, pbx, PROXY, colour), Row(t, answer, PROXY, PHONE, colour)]
    if isinstance(event, ProxyReply):  # toward a PBX: the phone asked; from one: the PBX did
        asker = PHONE if event.pbx else pbx
        return [Row(t, f"{event.status} {event.reason} ({event.method}, the proxy's)", PROXY, asker, REFUSAL)]
    if isinstance(event, NotifyOutcome):
        frag = f"{event.status} {event.reason}".strip() if event.status is not None else event.error
        label = f"NOTIFY ({frag})"
        return [Row(t, label, pbx, PROXY), Row(t, label, PROXY, PHONE)]
    if isinstance(event, OperatorAction):
        fields = " ".join(
            f"{k}={v}" for k, v in event.action.items() if k not in ("Action", "ActionID") and v
        )
        sent = [Row(t, f"{event.action.get('Action', 'action')} {fields}".strip(), API, pbx)]
        answer = " ".join(part for part in (event.response, event.message, event.error) if part)
        return sent + ([Row(t, answer, pbx, API, RESPONSE)] if answer else [])
    if isinstance(event, TransferMove):
        return [Row(t, f"state {summarize(entry)}")]
    if isinstance(event, PbxEvent):
        return [Row(t, summarize(entry), pbx)]
    return []  # pragma: no cover - every event kind is handled above


def text(value: str) -> str:
    """``value`` safe as SVG text or attribute: escaped, without the characters XML forbids."""
    return html.escape(_NOT_XML.sub("\ufffd", value), quote=True)


def _cut(value: str, size: int) -> str:
    return value if len(value) <= size else value[: size - 1] + "\u2026"


def _label(x: float, y: float, value: str, size: int, colour: str, anchor: str = "middle") -> str:
    """A text, cut to ``size`` characters; the whole of it in a tooltip when cut."""
    tip = f"<title>{text(value)}</title>" if len(value) > size else ""
    where = f'x="{x:g}" y="{y:g}" text-anchor="{anchor}" fill="{colour}"'
    return f"<text {where}>{tip}{text(_cut(value, size))}</text>"


def svg(record: TransferRecord) -> str:
    """The record's ladder as a standalone SVG document."""
    order = lanes(record)
    lines = rows(record)
    x = {name: LEFT + i * COL for i, name in enumerate(order)}
    width = LEFT + COL * (len(order) - 1) + COL // 2 + 110
    height = TOP + ROW * (len(lines) + 1)
    start = min([record.created] + [row.time for row in lines])
    title = f"transfer {record.id}: {record.flow or 'flow unknown'}, {record.state}"
    if record.result:
        title += f" ({record.result})"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="12" class="ladder">',
        "<defs>" + "".join(_marker(colour) for colour in (REQUEST, RESPONSE, REFUSAL)) + "</defs>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{text(title)}</text>',
        f'<text x="10" y="38" fill="#666">started {stamp(start)}</text>',
    ]
    subtitles = {PHONE: record.parties.get("referrer", ""), PROXY: record.call_id or ""}
    for name, xi in x.items():
        out.append(
            f'<text x="{xi}" y="{TOP - 34}" text-anchor="middle" font-weight="bold">{text(name)}</text>'
        )
        if subtitles.get(name):
            out.append(_label(xi, TOP - 20, subtitles[name], LABEL_CHARS - 4, "#666"))
        out.append(
            f'<line x1="{xi}" y1="{TOP - 12}" x2="{xi}" y2="{height - 8}" stroke="#888" '
            'stroke-dasharray="4,3"/>'
        )
    for i, row in enumerate(lines):
        y = TOP + ROW * (i + 1)
        out.append(f'<text x="10" y="{y + 4}" fill="#666">{row.time - start:+8.3f}s</text>')
        out += _draw(row, x, y, width)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _marker_id(colour: str) -> str:
    return "ladder-arrow-" + colour.lstrip("#")


def _marker(colour: str) -> str:
    return (
        f'<marker id="{_marker_id(colour)}" markerWidth="10" markerHeight="8" refX="9" refY="4" '
        'orient="auto">'
        f'<path d="M0,0 L10,4 L0,8 z" fill="{colour}"/></marker>'
    )


def _draw(row: Row, x: dict[str, int], y: int, width: int) -> list[str]:
    if not row.src:  # a state change: a band across the lanes
        return [
            f'<line x1="{LEFT - 20}" y1="{y}" x2="{width - 10}" y2="{y}" stroke="#c9a227" '
            'stroke-width="0.8"/>',
            _label(LEFT - 16, y - 4, row.label, NOTE_CHARS * 2, "#8a6d00", "start"),
        ]
    if not row.dst:  # the proxy's verdict, something the PBX said: a note on a lifeline
        size = min(len(row.label), NOTE_CHARS)
        half = size * CHAR / 2 + 6
        return [
            f'<rect x="{x[row.src] - half:g}" y="{y - 14}" width="{2 * half:g}" height="18" rx="3" '
            'fill="#f3f3f3" stroke="#bbb"/>',
            _label(x[row.src], y - 1, row.label, NOTE_CHARS, "#333" if row.colour == REQUEST else row.colour),
        ]
    x1, x2 = x[row.src], x[row.dst]
    span = max(int(abs(x2 - x1) / CHAR) - 2, 8)
    return [
        f'<line x1="{x1}" y1="{y}" x2="{x2 - 4 if x2 > x1 else x2 + 4}" y2="{y}" stroke="{row.colour}" '
        f'stroke-width="1.5" marker-end="url(#{_marker_id(row.colour)})"/>',
        _label((x1 + x2) / 2, y - 5, row.label, span, row.colour),
    ]
