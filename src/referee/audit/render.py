"""Audit records as text: a list line per transfer, and one transfer with its ladder."""

from __future__ import annotations

import time
from typing import Any

from referee.audit.record import Entry, TransferRecord

_ARROWS = {"proxy": "proxy ", "notify": "NOTIFY", "pbx": "pbx   ", "operator": "oper  ", "state": "state "}


def stamp(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when)) + f".{int(when * 1000) % 1000:03d}Z"


def list_line(record: TransferRecord) -> str:
    parties = record.parties
    initiator = parties.get("referrer") or parties.get("initiator") or "?"
    target = parties.get("target") or parties.get("destination") or parties.get("recipient") or "?"
    who = f"{initiator} -> {target}"
    return (
        f"{record.id:>6}  {stamp(record.created)}  {record.state:<9}  {record.flow or '-':<8}  "
        f"{record.origin:<8}  {who}  {record.result or ''}".rstrip()
    )


def list_header() -> str:
    return f"{'ID':>6}  {'CREATED (UTC)':<24}  {'STATE':<9}  {'FLOW':<8}  {'ORIGIN':<8}  PARTIES  RESULT"


def summarize(entry: Entry) -> str:
    """One line saying what an entry means."""
    data = entry.data
    if entry.kind == "refer.decision":
        decision = data.get("decision") if isinstance(data.get("decision"), dict) else {}
        assert isinstance(decision, dict)
        if decision.get("allowed"):
            to = data.get("forwarded_refer_to") or decision.get("refer_to") or data.get("refer_to")
            return f"REFER cseq {data.get('cseq', '?')} ALLOW rule {decision.get('rule', '?')} Refer-To {to}"
        return (
            f"REFER cseq {data.get('cseq', '?')} REJECT {decision.get('status', '?')} "
            f"{decision.get('reason', '')} (rule {decision.get('rule', '?')})"
        )
    if entry.kind == "refer.response":
        return f"REFER cseq {data.get('cseq', '?')} answered {data.get('status', '?')}"
    if entry.kind == "refer.outcome":
        frag = data.get("sipfrag")
        code = data.get("status", frag.get("code") if isinstance(frag, dict) else "?")
        reason = data.get("reason", frag.get("reason") if isinstance(frag, dict) else "")
        state = data.get("subscription_state", "")
        return f"NOTIFY cseq {entry.cseq} sipfrag {code} {reason} {state}".rstrip()
    if entry.kind == "state":
        text = f"{data.get('from', '')} -> {data.get('state')}" if "from" in data else f"{data.get('state')}"
        return text + (f" ({data['result']})" if data.get("result") else "")
    return f"{entry.kind} " + " ".join(f"{k}={v}" for k, v in _compact(data).items())


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    keep = (
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
        "action",
        "response",
        "message",
        "role",
        "target",
    )
    return {k: v for k, v in data.items() if k in keep}


def show(record: TransferRecord) -> str:
    lines = [
        f"transfer {record.id}: {record.state}" + (f" ({record.result})" if record.result else ""),
        f"  flow {record.flow or '-'}, origin {record.origin}, pbx {record.pbx or '-'}",
        f"  Call-ID {record.call_id or '-'}"
        + (f", REFER CSeq {record.refer_cseq}" if record.refer_cseq else ""),
        f"  created {stamp(record.created)}, updated {stamp(record.updated)}"
        + (f", ended {stamp(record.ended)}" if record.ended is not None else ""),
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
