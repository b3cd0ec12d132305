"""Every event referee writes, as typed records with one JSON form.

The proxy appends its events to a JSON-lines file (``referee.kemi``), the audit trail stores
every event of a transfer as an entry, and the lab checks them. All of them build and read
events here and nowhere else: no other module knows a JSON key of an event.

=================  ========  ====================================================================
kind               source    what happened
=================  ========  ====================================================================
``refer.decision`` proxy     the proxy decided a REFER (allowed and relayed, or answered itself)
``refer.response`` proxy     the final response a relayed REFER got (202, 4xx, the proxy's 408)
``refer.outcome``  notify    a NOTIFY of the REFER's implicit subscription (its sipfrag status)
``proxy.reply``    proxy     the proxy's own final answer to a request it was to relay, not a REFER
                             (503 toward a PBX that is down, 408 after a timeout, 500 on a failure)
``pbx.health``     proxy     the proxy's probes found a PBX down (no answer) or up again
``pbx.event``      pbx       an AMI event about a transfer's channels (BlindTransfer, DialEnd...)
``operator.action``operator  an AMI action the orchestrator sent for an operator, and its answer
``transfer.move``  state     a transfer changed state (``ringback -> answered on BridgeEnter``)
=================  ========  ====================================================================

Stdlib only: Kamailio's embedded python3 imports this module. It imports nothing else of
referee (a test walks the imports).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

MAX_LINE = 65536


class BadEvent(ValueError):
    """A line or a mapping that is not one of referee's events."""


class State(StrEnum):
    """Where a transfer is. The orchestrator, the audit trail and the API share these."""

    STARTING = "starting"  # asked for (REFER allowed, operator request); nothing happened yet
    RINGBACK = "ringback"  # the recipient is being called
    ANSWERED = "answered"  # the recipient answered
    COMPLETED = "completed"  # the transferred party and the recipient are connected
    CANCELLED = "cancelled"  # given up; the initiator is back with the transferred party
    ABANDONED = "abandoned"  # the transferred party left
    FAILED = "failed"  # refused, or the call to the recipient failed
    # accepted without a subscription (Refer-Sub: false, RFC 4488): no NOTIFY will say how it ended,
    # so the outcome is unknown by design; final, since nothing the proxy sees can change it
    UNCONFIRMED = "unconfirmed"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({State.COMPLETED, State.CANCELLED, State.ABANDONED, State.FAILED, State.UNCONFIRMED})


class Flow(StrEnum):
    BLIND = "blind"
    ATTENDED = "attended"


# -- reading helpers: strict about types, so a writer's mistake is found, not guessed around ------


def _str(raw: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        if value is None and default is None:
            raise BadEvent(f"no {key}")
        raise BadEvent(f"{key} is not a string")
    return value


def _opt_str(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadEvent(f"{key} is not a string")
    return value


def _int(raw: Mapping[str, Any], key: str) -> int:
    number = _opt_int(raw, key)
    if number is None:
        raise BadEvent(f"no {key}")
    return number


def _opt_int(raw: Mapping[str, Any], key: str) -> int | None:
    """An integer, also written as digits in a string (a CSeq read from a header)."""
    value = raw.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadEvent(f"{key} is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise BadEvent(f"{key} is not a number")


def _bool(raw: Mapping[str, Any], key: str, default: bool | None = None) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise BadEvent(f"no {key}" if value is None else f"{key} is not true or false")
    return value


def _time(raw: Mapping[str, Any]) -> float:
    value = raw.get("time")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadEvent("no time" if value is None else "time is not a number")
    return float(value)


def _mapping(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise BadEvent(f"{key} is not an object")
    return value


def _string_map(raw: Mapping[str, Any], key: str) -> dict[str, str]:
    """An object of strings: AMI fields."""
    value = _mapping(raw, key)
    if not all(isinstance(v, str) for v in value.values()):
        raise BadEvent(f"{key}: not every value is a string")
    return value


def _status(code: int | None, key: str = "status") -> int | None:
    if code is not None and not 100 <= code <= 699:
        raise BadEvent(f"{key} {code} is not a SIP status")
    return code


# -- the events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReferDecision:
    """The proxy's decision on one REFER.

    ``decision`` is the policy's summary (``Decision.to_dict()``: target, tenant, pbx, replaces,
    and the rule trace of a rejection); ``allowed``/``status``/``reason``/``rule`` are copied out
    of it because every reader needs them. A REFER refused before the policy ran (unreadable
    Refer-To, unknown Replaces dialog) has a rule of the proxy's own (``bad-input``,
    ``replaces-unknown``, ``no-policy``).
    """

    kind: ClassVar[str] = "refer.decision"
    source: ClassVar[str] = "proxy"

    time: float
    call_id: str
    cseq: int
    referrer: str  # the REFER's From URI (the authenticated identity once the proxy has one)
    src: str  # the source address the REFER came from
    allowed: bool
    status: int  # the policy's 202 when allowed (the proxy relays it), else the status it answered
    reason: str
    rule: str
    refer_to: str | None = None  # as received; None when it could not be read
    forwarded_refer_to: str | None = None  # as relayed (allowed only)
    subscription: bool = True  # False for Refer-Sub: false (RFC 4488): no NOTIFY will come
    replaces_pbx: str | None = None  # attended: the PBX that holds the replaced dialog
    decision: dict[str, Any] = field(default_factory=dict)
    # The version (short hash) of the policy in force; None with no policy (and in older lines).
    policy_version: str | None = None

    @property
    def target(self) -> str | None:
        """Where the transfer goes: the relayed Refer-To, else the policy's, else the asked one."""
        rewritten = self.decision.get("refer_to")
        return self.forwarded_refer_to or (rewritten if isinstance(rewritten, str) else None) or self.refer_to

    @property
    def replaces(self) -> bool:
        """Whether this is an attended transfer (the Refer-To embeds a Replaces)."""
        return self.replaces_pbx is not None or bool(self.decision.get("replaces"))

    def to_dict(self) -> dict[str, Any]:
        decision = {
            **self.decision,
            "allowed": self.allowed,
            "status": self.status,
            "reason": self.reason,
            "rule": self.rule,
        }
        out: dict[str, Any] = {
            "time": self.time,
            "event": self.kind,
            "call_id": self.call_id,
            "cseq": self.cseq,
            "from": self.referrer,
            "src": self.src,
            "subscription": self.subscription,
            "decision": decision,
        }
        if self.refer_to is not None:
            out["refer_to"] = self.refer_to
        if self.forwarded_refer_to is not None:
            out["forwarded_refer_to"] = self.forwarded_refer_to
        if self.replaces_pbx is not None:
            out["replaces_pbx"] = self.replaces_pbx
        if self.policy_version is not None:
            out["policy_version"] = self.policy_version
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ReferDecision:
        decision = _mapping(raw, "decision")
        return cls(
            time=_time(raw),
            call_id=_str(raw, "call_id"),
            cseq=_int(raw, "cseq"),
            referrer=_str(raw, "from", ""),
            src=_str(raw, "src", ""),
            allowed=_bool(decision, "allowed"),
            status=_status(_int(decision, "status")) or 0,
            reason=_str(decision, "reason", ""),
            rule=_str(decision, "rule", ""),
            refer_to=_opt_str(raw, "refer_to"),
            forwarded_refer_to=_opt_str(raw, "forwarded_refer_to"),
            subscription=_bool(raw, "subscription", True),
            replaces_pbx=_opt_str(raw, "replaces_pbx"),
            decision={k: v for k, v in decision.items() if k not in ("allowed", "status", "reason", "rule")},
            policy_version=_opt_str(raw, "policy_version"),
        )


@dataclass(frozen=True, slots=True)
class ReferResponse:
    """The final response to a REFER the proxy relayed: the recipient's (202, 403, 501...) or the
    proxy's own when the recipient never answered (``local``: 408, 503).

    ``subscription`` is False when a 2xx carries ``Refer-Sub: false`` (RFC 4488): the recipient
    accepted the REFER without the implicit subscription, so no NOTIFY will report the outcome.
    """

    kind: ClassVar[str] = "refer.response"
    source: ClassVar[str] = "proxy"

    time: float
    call_id: str
    cseq: int
    status: int
    reason: str = ""
    local: bool = False
    subscription: bool = True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": self.time,
            "event": self.kind,
            "call_id": self.call_id,
            "cseq": self.cseq,
            "status": self.status,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.local:
            out["local"] = True
        if not self.subscription:
            out["subscription"] = False
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ReferResponse:
        return cls(
            time=_time(raw),
            call_id=_str(raw, "call_id"),
            cseq=_int(raw, "cseq"),
            status=_status(_int(raw, "status")) or 0,
            reason=_str(raw, "reason", ""),
            local=_bool(raw, "local", False),
            subscription=_bool(raw, "subscription", True),
        )


@dataclass(frozen=True, slots=True)
class ProxyReply:
    """A final answer the proxy gave itself to a request it was to relay: ``503`` toward a PBX its
    probes found down, ``408`` when the relayed request got no answer in time, ``500`` when relaying
    failed or the routing script failed. A REFER's own answer is a :class:`ReferResponse` with
    ``local`` instead (its record is keyed by the REFER's CSeq); this is every other method's.

    ``pbx`` is the PBX the request went (or was to go) to, "" when it was going to a phone;
    ``src`` the address the request came from.
    """

    kind: ClassVar[str] = "proxy.reply"
    source: ClassVar[str] = "proxy"

    time: float
    method: str
    status: int
    reason: str
    call_id: str
    cseq: int | None = None  # None: the request's CSeq could not be read (a 500 on bad input)
    pbx: str = ""
    src: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": self.time,
            "event": self.kind,
            "method": self.method,
            "status": self.status,
            "reason": self.reason,
            "call_id": self.call_id,
            "cseq": self.cseq,
        }
        if self.pbx:
            out["pbx"] = self.pbx
        if self.src:
            out["src"] = self.src
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ProxyReply:
        return cls(
            time=_time(raw),
            method=_str(raw, "method"),
            status=_status(_int(raw, "status")) or 0,
            reason=_str(raw, "reason", ""),
            call_id=_str(raw, "call_id", ""),
            cseq=_opt_int(raw, "cseq"),
            pbx=_str(raw, "pbx", ""),
            src=_str(raw, "src", ""),
        )


@dataclass(frozen=True, slots=True)
class NotifyOutcome:
    """One NOTIFY of a REFER's implicit subscription (``Event: refer;id=<REFER CSeq>``).

    ``status``/``reason`` are the message/sipfrag body's status line; ``error`` says why there
    is none (no sipfrag body, an unreadable one). ``refer_cseq`` is None when the NOTIFY's
    Event header carries no ``id``.
    """

    kind: ClassVar[str] = "refer.outcome"
    source: ClassVar[str] = "notify"

    time: float
    call_id: str
    cseq: int  # the NOTIFY's own CSeq: NOTIFYs may be relayed out of order, CSeq orders them
    refer_cseq: int | None
    subscription_state: str = ""
    status: int | None = None
    reason: str = ""
    error: str = ""

    @property
    def final(self) -> bool:
        return self.status is not None and self.status >= 200

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": self.time,
            "event": self.kind,
            "call_id": self.call_id,
            "cseq": self.cseq,
            "refer_cseq": self.refer_cseq,
            "subscription_state": self.subscription_state,
        }
        if self.status is not None:
            out.update(status=self.status, reason=self.reason, final=self.final)
        if self.error:
            out["error"] = self.error
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> NotifyOutcome:
        return cls(
            time=_time(raw),
            call_id=_str(raw, "call_id"),
            cseq=_int(raw, "cseq"),
            refer_cseq=_opt_int(raw, "refer_cseq"),
            subscription_state=_str(raw, "subscription_state", ""),
            status=_status(_opt_int(raw, "status")),
            reason=_str(raw, "reason", ""),
            error=_str(raw, "error", ""),
        )


@dataclass(frozen=True, slots=True)
class PbxEvent:
    """An AMI event about one of a transfer's channels, as the PBX sent it."""

    kind: ClassVar[str] = "pbx.event"
    source: ClassVar[str] = "pbx"

    time: float
    pbx: str
    name: str  # the AMI ``Event`` (BlindTransfer, DialEnd, Hangup...) or ``resync``
    fields: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "event": self.kind,
            "pbx": self.pbx,
            "name": self.name,
            "fields": self.fields,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PbxEvent:
        fields = _string_map(raw, "fields")
        return cls(time=_time(raw), pbx=_str(raw, "pbx"), name=_str(raw, "name"), fields=fields)


@dataclass(frozen=True, slots=True)
class PbxHealth:
    """The proxy's view of a PBX: down when it stopped answering (OPTIONS probes, a request timed
    out), up when it answers again. Transfers open at a PBX that went down fail (``pbx lost``)."""

    kind: ClassVar[str] = "pbx.health"
    source: ClassVar[str] = "proxy"

    time: float
    pbx: str  # the PBX's name (REFEREE_PBXS), "" when the proxy does not know the URI
    uri: str  # the destination the dispatcher probes
    up: bool

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "event": self.kind, "pbx": self.pbx, "uri": self.uri, "up": self.up}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PbxHealth:
        return cls(time=_time(raw), pbx=_str(raw, "pbx", ""), uri=_str(raw, "uri", ""), up=_bool(raw, "up"))


@dataclass(frozen=True, slots=True)
class OperatorAction:
    """An AMI action the orchestrator sent for an operator (API or CLI), and what the PBX said."""

    kind: ClassVar[str] = "operator.action"
    source: ClassVar[str] = "operator"

    time: float
    pbx: str
    action: dict[str, str]  # the AMI fields sent (Action, Channel, Exten, ...)
    response: str = ""  # Success, Error; empty when the PBX could not be reached
    message: str = ""
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"time": self.time, "event": self.kind, "pbx": self.pbx, "action": self.action}
        for key in ("response", "message", "error"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> OperatorAction:
        return cls(
            time=_time(raw),
            pbx=_str(raw, "pbx"),
            action=_string_map(raw, "action"),
            response=_str(raw, "response", ""),
            message=_str(raw, "message", ""),
            error=_str(raw, "error", ""),
        )


@dataclass(frozen=True, slots=True)
class TransferMove:
    """A transfer went from one state to another, and why."""

    kind: ClassVar[str] = "transfer.move"
    source: ClassVar[str] = "state"

    time: float
    transfer_id: int
    before: State | None  # None: the record was opened in state ``after``
    after: State
    cause: str  # what moved it: an AMI event name, a NOTIFY status, a timer, an operator action
    result: str = ""  # the record's result text once final (``NOTIFY 486 Busy Here``)

    def describe(self) -> str:
        if self.before is None:
            return f"transfer {self.transfer_id}: opened {self.after} on {self.cause}"
        return f"transfer {self.transfer_id}: {self.before} -> {self.after} on {self.cause}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": self.time,
            "event": self.kind,
            "transfer_id": self.transfer_id,
            "before": None if self.before is None else str(self.before),
            "after": str(self.after),
            "cause": self.cause,
        }
        if self.result:
            out["result"] = self.result
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TransferMove:
        before, after = _opt_str(raw, "before"), _str(raw, "after")
        try:
            moved_from = None if before is None else State(before)
            moved_to = State(after)
        except ValueError as exc:
            raise BadEvent(str(exc)) from None
        return cls(
            time=_time(raw),
            transfer_id=_int(raw, "transfer_id"),
            before=moved_from,
            after=moved_to,
            cause=_str(raw, "cause"),
            result=_str(raw, "result", ""),
        )


Event = (
    ReferDecision
    | ReferResponse
    | ProxyReply
    | NotifyOutcome
    | PbxHealth
    | PbxEvent
    | OperatorAction
    | TransferMove
)
KINDS: dict[str, Any] = {
    cls.kind: cls
    for cls in (
        ReferDecision,
        ReferResponse,
        ProxyReply,
        NotifyOutcome,
        PbxHealth,
        PbxEvent,
        OperatorAction,
        TransferMove,
    )
}

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def to_json(event: Event) -> str:
    """One line of JSON, without the newline."""
    return _encode(event.to_dict())


def from_dict(raw: Mapping[str, Any]) -> Event:
    """The event a mapping holds; :class:`BadEvent` naming the problem otherwise."""
    kind = raw.get("event")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise BadEvent("no event kind" if kind is None else f"unknown event kind {kind!r}")
    event: Event = cls.from_dict(raw)
    return event


def from_json(line: str | bytes) -> Event:
    """Parse one line of an event file; :class:`BadEvent` for anything but one valid event."""
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
    except RecursionError:
        raise BadEvent("nested too deeply") from None
    if not isinstance(raw, dict):
        raise BadEvent("not a JSON object")
    return from_dict(raw)
