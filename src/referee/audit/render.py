"""Audit records as text: a list line per transfer, and one transfer with its ladder."""

from __future__ import annotations

import time

from referee.audit.record import Entry, TransferRecord
from referee.events import (
    NotifyOutcome,
    OperatorAction,
    PbxHealth,
    ProxyReply,
    ReferDecision,
    ReferResponse,
    TransferMove,
)

_ARROWS = {"proxy": "proxy ", "notify": "NOTIFY", "pbx": "pbx   ", "operator": "oper  ", "state": "state "}


def stamp(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when)) + f".{int(when * 1000) % 1000:03d}Z"


def list_line(record: TransferRecord) -> str:
    parties = record.parties
    initiator = parties.get("referrer") or parties.get("initiator") or "?"
    target = parties.get("target") or parties.get("destination") or parties.get("recipient") or "?"
    who = f"{initiator} -> {target}"
    evidence = f" [{record.evidence}]" if record.evidence else ""
    return (
        f"{record.id:>6}  {stamp(record.created)}  {record.state!s:<9}  {record.flow or '-':<8}  "
        f"{record.origin:<8}  {who}  {record.result or ''}{evidence}".rstrip()
    )


def list_header() -> str:
    columns = f"{'ID':>6}  {'CREATED (UTC)':<24}  {'STATE':<9}  {'FLOW':<8}  {'ORIGIN':<8}"
    return f"{columns}  PARTIES  RESULT [EVIDENCE]"


def summarize(entry: Entry) -> str:
    """One line saying what an entry means."""
    event = entry.event
    if isinstance(event, ReferDecision):
        if event.allowed:
            return f"REFER cseq {event.cseq} ALLOW rule {event.rule or '?'} Refer-To {event.target}"
        return f"REFER cseq {event.cseq} REJECT {event.status} {event.reason} (rule {event.rule or '?'})"
    if isinstance(event, ReferResponse):
        return f"REFER cseq {event.cseq} answered {event.status}" + (" (the proxy's)" if event.local else "")
    if isinstance(event, NotifyOutcome):
        frag = f"sipfrag {event.status} {event.reason}" if event.status is not None else f"({event.error})"
        return f"NOTIFY cseq {event.cseq} {frag} {event.subscription_state}".rstrip()
    if isinstance(event, TransferMove):
        text = str(event.after) if event.before is None else f"{event.before} -> {event.after}"
        return text + (f" ({event.result})" if event.result else "")
    if isinstance(event, ProxyReply):
        where = f" toward {event.pbx}" if event.pbx else ""
        return f"{event.method} cseq {event.cseq} answered {event.status} {event.reason} by the proxy{where}"
    if isinstance(event, PbxHealth):
        return f"PBX {event.pbx or event.uri} {'up' if event.up else 'down'} (the proxy's probes)"
    if isinstance(event, OperatorAction):
        sent = {k: v for k, v in _compact(event.action).items() if k != "Action"}
        answer = {"response": event.response, "message": event.message, "error": event.error}
        return f"{event.action.get('Action', 'action')} {_pairs(sent)} {_pairs(answer)}".rstrip()
    return f"{event.name} {_pairs(_compact(event.fields))}".rstrip()


def _pairs(fields: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items() if v)


_KEEP = (
    "Result",
    "Channel",
    "TransfererChannel",
    "TransfereeChannel",
    "OrigTransfererChannel",
    "SecondTransfererChannel",
    "DestChannel",
    "DialStatus",
    "Extension",
    "Exten",
    "Context",
    "IsExternal",
    "DestType",
    "Cause",
    "Cause-txt",
    "gone",
    "uniqueid",
)


def _compact(fields: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in fields.items() if k in _KEEP}


def show(record: TransferRecord) -> str:
    lines = [
        f"transfer {record.id}: {record.state}" + (f" ({record.result})" if record.result else ""),
        f"  flow {record.flow or '-'}, origin {record.origin}, pbx {record.pbx or '-'}",
        f"  Call-ID {record.call_id or '-'}"
        + (f", REFER CSeq {record.refer_cseq}" if record.refer_cseq else ""),
        f"  created {stamp(record.created)}, updated {stamp(record.updated)}"
        + (f", ended {stamp(record.ended)}" if record.ended is not None else ""),
        f"  evidence {record.evidence or '-'}, policy version {record.policy_version or '-'}",
    ]
    for role, who in sorted(record.parties.items()):
        lines.append(f"  {role:<12} {who}")
    lines.append("  ladder:")
    ladder = record.ladder()
    start = min([record.created] + [e.time for e in ladder])
    for entry in ladder:
        lines.append(
            f"    {entry.time - start:+9.3f}s  {_ARROWS.get(entry.source, entry.source)}  {summarize(entry)}"
        )
    return "\n".join(lines)


def watch_line(entry: Entry) -> str:
    arrow = _ARROWS.get(entry.source, entry.source)
    return f"{stamp(entry.time)}  #{entry.transfer_id:<5} {arrow}  {summarize(entry)}"
