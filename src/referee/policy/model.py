"""The values the policy engine takes and gives: dialogs, trace steps, decisions, errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, overload

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
        # The two tags are the dialog's two, in either order (no set built: this runs per attended REFER).
        to_tag, from_tag, local, remote = replaces.to_tag, replaces.from_tag, self.local_tag, self.remote_tag
        if to_tag == from_tag:
            return False
        return (to_tag == local and from_tag == remote) or (to_tag == remote and from_tag == local)

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


class Trace(Sequence[TraceStep]):
    """A decision's rule trace, worked out the first time it is read.

    Most decisions are never explained (the proxy writes the trace of a rejection only), and ten
    formatted steps cost a third of a decision: the engine hands over a function that works them
    out (it decides again, tracing), called once, on first read. Reads as a tuple of steps.
    """

    __slots__ = ("_steps", "_work_out")

    def __init__(self, work_out: Callable[[], tuple[TraceStep, ...]]) -> None:
        self._work_out: Callable[[], tuple[TraceStep, ...]] | None = work_out
        self._steps: tuple[TraceStep, ...] = ()

    @property
    def steps(self) -> tuple[TraceStep, ...]:
        if self._work_out is not None:
            self._steps, self._work_out = self._work_out(), None
        return self._steps

    @overload
    def __getitem__(self, index: int) -> TraceStep: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[TraceStep, ...]: ...
    def __getitem__(self, index: int | slice) -> TraceStep | tuple[TraceStep, ...]:
        return self.steps[index]

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[TraceStep]:
        return iter(self.steps)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Trace):
            return self.steps == other.steps
        return self.steps == other if isinstance(other, tuple) else NotImplemented

    def __hash__(self) -> int:
        return hash(self.steps)

    def __repr__(self) -> str:
        return repr(self.steps)


class Decision(NamedTuple):
    """What to do with one REFER. A named tuple: immutable and cheap to build per REFER."""

    allowed: bool
    status: int  # SIP status to answer with when rejected; 202 when allowed
    reason: str
    rule: str  # id of the rule that decided
    trace: Sequence[TraceStep]  # a Trace from the engine: worked out when read
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
            # A dict display per step, not _asdict (a Python call each): the same keys, in the same order.
            "trace": [
                {"rule": rule, "outcome": outcome, "detail": detail} for rule, outcome, detail in self.trace
            ],
        }
