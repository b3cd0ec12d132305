"""One transfer the orchestrator follows: its parties and where it is.

Parties: the *initiator* asks for the transfer (Bob), the *transferred* party is moved (Alice),
the *recipient* is where she goes (Carol: the consultation call, or the call she places).
Its moves are in :mod:`referee.orchestrator.moves`; only the tracker changes ``state``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from referee.events import Flow, State


class Role(StrEnum):
    INITIATOR = "initiator"
    TRANSFERRED = "transferred"
    RECIPIENT = "recipient"


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

    def party(self, role: Role) -> str | None:
        """The uniqueid of the channel playing ``role``, when known."""
        if role == Role.INITIATOR:
            return self.initiator
        return self.transferred if role == Role.TRANSFERRED else self.recipient

    def role_of(self, uniqueid: str) -> Role | None:
        for role in Role:
            if uniqueid and self.party(role) == uniqueid:
                return role
        return None

    def to_dict(self) -> dict[str, Any]:
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
