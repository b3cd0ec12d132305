"""The proxy's transfer events (``referee.kemi`` writes them, one JSON object per line), read tolerantly.

Three kinds, told apart by ``event`` (or, for writers that omit it, by their keys):

``refer.decision``  ``call_id``, ``cseq`` (the REFER's), ``from``, ``refer_to``,
                    ``decision{allowed,status,reason,rule,refer_to,replaces,...}``, ``forwarded_refer_to``
``refer.response``  ``call_id``, ``cseq``, ``status``: what the REFER was answered downstream
``refer.outcome``   ``call_id``, ``cseq`` (the NOTIFY's), ``refer_cseq`` (its ``Event: refer;id=``),
                    ``status``/``reason`` (or ``sipfrag{code,reason}``), ``final``, ``subscription_state``

Unknown keys are kept as they are; a line that is not a JSON object, or has no ``call_id``, is
refused with :class:`BadEvent` and the caller counts and skips it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

KINDS = ("refer.decision", "refer.response", "refer.outcome")
MAX_LINE = 65536


class BadEvent(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ProxyEvent:
    kind: str
    call_id: str
    cseq: str  # the REFER's CSeq for decision/response, the NOTIFY's for outcome
    refer_cseq: str  # outcome only: the REFER this NOTIFY reports on ('' when unknown)
    time: float | None
    raw: dict[str, Any]

    @property
    def status(self) -> int | None:
        """The SIP status this event carries: the sipfrag's, the response's, the rejection's."""
        raw = self.raw
        candidates: list[Any] = [raw.get("status"), raw.get("code")]
        sipfrag = raw.get("sipfrag")
        if isinstance(sipfrag, dict):
            candidates[:0] = [sipfrag.get("code"), sipfrag.get("status")]
        elif isinstance(sipfrag, str):
            candidates.insert(0, _sipfrag_code(sipfrag))
        for value in candidates:
            code = _int(value)
            if code is not None and 100 <= code <= 699:
                return code
        return None

    @property
    def reason(self) -> str:
        sipfrag = self.raw.get("sipfrag")
        if isinstance(sipfrag, dict) and isinstance(sipfrag.get("reason"), str):
            return str(sipfrag["reason"])
        reason = self.raw.get("reason")
        return reason if isinstance(reason, str) else ""

    @property
    def decision(self) -> dict[str, Any]:
        decision = self.raw.get("decision")
        return decision if isinstance(decision, dict) else {}


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        head = value.strip().split(" ", 1)[0]
        if head.isdigit():
            return int(head)
    return None


def _sipfrag_code(text: str) -> int | None:
    parts = text.split()
    return _int(parts[1]) if len(parts) >= 2 and parts[0].upper().startswith("SIP/") else None


def cseq_number(value: Any) -> str:
    """``"2"``, ``2`` or ``"2 REFER"`` -> ``"2"``; anything else -> ``""``."""
    number = _int(value)
    return "" if number is None else str(number)


def _kind(raw: dict[str, Any]) -> str:
    kind = raw.get("event")
    if isinstance(kind, str) and kind:
        return kind
    if "decision" in raw:
        return "refer.decision"
    if "sipfrag" in raw or "refer_cseq" in raw or "subscription_state" in raw:
        return "refer.outcome"
    if "status" in raw:
        return "refer.response"
    return "unknown"


def parse_line(line: str | bytes) -> ProxyEvent:
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            raise BadEvent("not UTF-8") from None
    if len(line) > MAX_LINE:
        raise BadEvent(f"line longer than {MAX_LINE} characters")
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadEvent(f"not JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise BadEvent("not a JSON object")
    call_id = raw.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise BadEvent("no call_id")
    when = raw.get("time")
    kind = _kind(raw)
    return ProxyEvent(
        kind=kind,
        call_id=call_id,
        cseq=cseq_number(raw.get("cseq")),
        refer_cseq=cseq_number(raw.get("refer_cseq")),
        time=float(when) if isinstance(when, int | float) and not isinstance(when, bool) else None,
        raw=raw,
    )
