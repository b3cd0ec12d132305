"""What the operator API needs from the daemon: a small service interface, so the API never reaches
into the orchestrator, the PBX links or the audit store (``referee.service`` wires one in).

Every transfer and record crosses it as a JSON-ready mapping; a refusal is a :class:`ServiceError`
carrying the HTTP status it maps to.
"""

from __future__ import annotations

from typing import Any, Protocol

from referee.events import Flow, State

Json = dict[str, Any]


class ServiceError(Exception):
    """A refused operation: ``status`` is its HTTP status (400, 404, 409, 502, 503), ``transfer``
    the transfer it concerns, when there is one."""

    def __init__(self, status: int, message: str, transfer: Json | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.transfer = transfer


class TransferService(Protocol):
    def readiness(self) -> dict[str, Json]:
        """Each PBX by name: ``ready`` (connected, resynchronised and heard from within the last few
        seconds), ``connected``, and ``silent_seconds`` since it last answered or sent anything."""
        ...

    def database(self) -> Json:
        """Whether the audit database answers a query now: ``reachable``, and ``error`` when it does not."""
        ...

    def records(self, *, limit: int, state: State | None) -> list[Json]:
        """Audit records, newest first, without their entries."""
        ...

    def record(self, transfer_id: int) -> Json | None:
        """One audit record with its entries; None when there is none."""
        ...

    def ladder(self, transfer_id: int) -> str | None:
        """The audit record's ladder as an SVG document; None when there is no such record."""
        ...

    def live(self, transfer_id: int) -> Json | None:
        """The transfer as the orchestrator follows it; None when it does not (or no longer)."""
        ...

    async def start(self, flow: Flow, pbx: str, channel: str, exten: str, context: str | None) -> Json: ...

    async def complete(self, transfer_id: int) -> Json: ...

    async def cancel(self, transfer_id: int) -> Json: ...


class PolicyService(Protocol):
    """The transfer policy, asked about one REFER (the page's playground, ``POST /policy/check``)."""

    def check(self, refer_to: str, referrer: str, dialogs: list[str], depth: int) -> Json:
        """The decision with its rule trace, as ``referee policy check --json`` prints it; ``ValueError``
        (with a message) for a malformed dialog."""
        ...
