"""One transfer as an explicit state machine.

Parties: the *initiator* asks for the transfer (Bob), the *transferred* party is moved (Alice),
the *recipient* is where she goes (Carol: the consultation call, or the call she places).

States: ``starting`` (asked, the PBX has not acted yet), ``ringback`` (the recipient rings),
``answered`` (the recipient answered), and the final ``completed``, ``cancelled`` (the
initiator or the recipient gave up; the initiator is back with the transferred party),
``abandoned`` (the transferred party left), ``failed`` (the PBX refused or the call failed).

Other transitions, from AMI events:

- attended (``Atxfer``): the consultation ``Local/<exten>@<context>-…;1`` channel appears ->
  ``ringback``; it is answered (``Newstate`` Up) -> ``answered``; ``AttendedTransfer``
  ``Result: Success`` -> ``completed``, any other result -> ``failed``; ``CancelAtxfer``
  accepted -> ``cancelled``;
- blind (``BlindTransfer``): the ``BlindTransfer`` event ``Result: Success`` -> ``ringback``
  (any other result -> ``failed``); the transferred party's ``DialEnd`` ``ANSWER`` ->
  ``answered``, any other ``DialStatus`` -> ``failed``; transferred and recipient in one
  bridge -> ``completed``.

What every party's hangup does, in every state (``=`` stays in that state). ``HANGUP`` below
is this table; the tests read this docstring and check every cell against the code and
against replayed AMI events.

======== ========= ========= =========== =========
flow     state     initiator transferred recipient
======== ========= ========= =========== =========
attended starting  failed    abandoned   failed
attended ringback  completed abandoned   cancelled
attended answered  completed abandoned   cancelled
attended completed =         =           =
attended cancelled =         =           =
attended abandoned =         =           =
attended failed    =         =           =
blind    starting  =         abandoned   failed
blind    ringback  =         abandoned   failed
blind    answered  =         abandoned   failed
blind    completed =         =           =
blind    cancelled =         =           =
blind    abandoned =         =           =
blind    failed    =         =           =
======== ========= ========= =========== =========

Why: in an attended transfer the initiator hanging up is how Asterisk completes it (while the
recipient still rings it becomes a "blond" transfer); the recipient hanging up returns the
initiator to the transferred party. In a blind transfer the initiator leaving is expected
and changes nothing; the outcome is the transferred party's call to the recipient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class State(StrEnum):
    STARTING = "starting"
    RINGBACK = "ringback"
    ANSWERED = "answered"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in FINAL


FINAL = frozenset({State.COMPLETED, State.CANCELLED, State.ABANDONED, State.FAILED})


class Flow(StrEnum):
    BLIND = "blind"
    ATTENDED = "attended"


class Role(StrEnum):
    INITIATOR = "initiator"
    TRANSFERRED = "transferred"
    RECIPIENT = "recipient"


S, R = State, Role
_LIVE_ATTENDED = {
    S.STARTING: {R.INITIATOR: S.FAILED, R.TRANSFERRED: S.ABANDONED, R.RECIPIENT: S.FAILED},
    S.RINGBACK: {R.INITIATOR: S.COMPLETED, R.TRANSFERRED: S.ABANDONED, R.RECIPIENT: S.CANCELLED},
    S.ANSWERED: {R.INITIATOR: S.COMPLETED, R.TRANSFERRED: S.ABANDONED, R.RECIPIENT: S.CANCELLED},
}
_LIVE_BLIND = {
    state: {R.INITIATOR: state, R.TRANSFERRED: S.ABANDONED, R.RECIPIENT: S.FAILED}
    for state in (S.STARTING, S.RINGBACK, S.ANSWERED)
}

HANGUP: dict[tuple[Flow, State, Role], State] = {}
for _flow, _live in ((Flow.ATTENDED, _LIVE_ATTENDED), (Flow.BLIND, _LIVE_BLIND)):
    for _state in State:
        for _role in Role:
            HANGUP[(_flow, _state, _role)] = _live[_state][_role] if _state in _live else _state

_HANGUP_RESULT = {
    (Flow.ATTENDED, S.COMPLETED): "completed by the initiator hanging up",
    (Flow.ATTENDED, S.CANCELLED): "the recipient hung up",
    (Flow.ATTENDED, S.FAILED): "hung up before the consultation call started",
}


def hangup_outcome(flow: Flow, state: State, role: Role) -> tuple[State, str]:
    """The next state when ``role`` hangs up, and why (empty when nothing changes)."""
    after = HANGUP[(flow, state, role)]
    if after == state:
        return after, ""
    if after == S.ABANDONED:
        return after, "the transferred party hung up"
    if flow == Flow.BLIND and after == S.FAILED:
        return after, "the recipient hung up before the transfer completed"
    return after, _HANGUP_RESULT.get((flow, after), f"the {role} hung up")


@dataclass
class Transfer:
    """A transfer the orchestrator follows. ``id`` is its audit record id."""

    id: int
    pbx: str
    flow: Flow
    origin: str  # "operator", "refer" (a phone's REFER seen at the PBX) or "pbx" (DTMF, other)
    initiator: str  # channel uniqueids
    transferred: str | None = None
    recipient: str | None = None
    exten: str = ""
    context: str = ""
    state: State = State.STARTING
    result: str = ""
    names: dict[str, str] = field(default_factory=dict)  # role -> channel name

    @property
    def final(self) -> bool:
        return self.state.final

    def role_of(self, uniqueid: str) -> Role | None:
        if uniqueid == self.initiator:
            return Role.INITIATOR
        if self.transferred is not None and uniqueid == self.transferred:
            return Role.TRANSFERRED
        if self.recipient is not None and uniqueid == self.recipient:
            return Role.RECIPIENT
        return None

    def move(self, state: State, result: str = "") -> bool:
        """Go to ``state``; False (and no change) when already final or already there."""
        if self.final or state == self.state:
            return False
        self.state = state
        if result:
            self.result = result
        return True

    def hangup(self, role: Role) -> bool:
        after, why = hangup_outcome(self.flow, self.state, role)
        return self.move(after, why)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "pbx": self.pbx,
            "flow": str(self.flow),
            "origin": self.origin,
            "state": str(self.state),
            "result": self.result,
            "exten": self.exten,
            "context": self.context,
            "parties": dict(self.names),
        }
