"""The values the policy engine takes and gives: dialogs, trace steps, decisions, errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from referee.sip import Replaces, Uri


class PolicyError(Exception):
    """A policy file that cannot be used. The message names the key and the problem."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Dialog:
    """A dialog the referrer is a party to; tag order does not matter."""

    call_id: str
    local_tag: str
    remote_tag: str

    def matches(self, replaces: Replaces) -> bool:
        if replaces.call_id != self.call_id:
            return False
        tags = {self.local_tag, self.remote_tag}
        return replaces.to_tag in tags and replaces.from_tag in tags and replaces.to_tag != replaces.from_tag

    @classmethod
    def parse(cls, text: str) -> Dialog:
        """``call-id;tag;tag`` as given on the command line."""
        call_id, _, tags = text.partition(";")
        local, _, remote = tags.partition(";")
        if not call_id or not local or not remote or ";" in remote:
            raise ValueError(f"dialog must be CALL-ID;TAG;TAG, got {text!r}")
        return cls(call_id, local, remote)


class TraceStep(NamedTuple):
    """One rule considered: its id, what it concluded, and why."""

    rule: str
    outcome: str  # "pass", "rewrite", "strip", "match", "allow" or "reject"
    detail: str

    def __str__(self) -> str:
        return f"{self.rule:<22} {self.outcome:<8} {self.detail}"


class Decision(NamedTuple):
    """What to do with one REFER. A named tuple: immutable and cheap to build per REFER."""

    allowed: bool
    status: int  # SIP status to answer with when rejected; 202 when allowed
    reason: str
    rule: str  # id of the rule that decided
    trace: tuple[TraceStep, ...]
    refer_to: str | None = None  # the rewritten Refer-To value, when allowed
    target: Uri | None = None
    replaces: Replaces | None = None
    tenant: str | None = None
    pbx: str | None = None  # the PBX the target lives on

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "status": self.status,
            "reason": self.reason,
            "rule": self.rule,
            "refer_to": self.refer_to,
            "target": None if self.target is None else str(self.target),
            "replaces": None
            if self.replaces is None
            else {
                "call_id": self.replaces.call_id,
                "to_tag": self.replaces.to_tag,
                "from_tag": self.replaces.from_tag,
                "early_only": self.replaces.early_only,
            },
            "tenant": self.tenant,
            "pbx": self.pbx,
            "trace": [step._asdict() for step in self.trace],
        }
