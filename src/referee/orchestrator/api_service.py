"""The operator API's :class:`TransferService`, over the orchestrator and the audit store."""

from __future__ import annotations

from collections.abc import Awaitable

from referee.api.service import Json, ServiceError
from referee.audit.ladder import svg
from referee.audit.store import AuditStore
from referee.events import Flow, State
from referee.orchestrator.operations import DEFAULT_CONTEXT, OperationError, Orchestrator
from referee.orchestrator.transfer import Transfer

# A PBX is ready while it answered the link's Ping (every 2 s) or sent an event within this many seconds.
READY_WITHIN = 5.0


class OrchestratorService:
    def __init__(
        self, orchestrator: Orchestrator, store: AuditStore, *, ready_within: float = READY_WITHIN
    ) -> None:
        self.orchestrator = orchestrator
        self.store = store
        self.ready_within = ready_within

    def readiness(self) -> dict[str, Json]:
        out: dict[str, Json] = {}
        for name, link in self.orchestrator.links.items():
            silence = link.silence()
            out[name] = {
                "ready": link.heard_within(self.ready_within),
                "connected": link.ready,
                "silent_seconds": None if silence is None else round(silence, 1),
            }
        return out

    def database(self) -> Json:
        try:
            self.store.last_seq()
        except Exception as exc:  # any driver's error: the answer is "not reachable", and why
            return {"reachable": False, "error": str(exc).strip()[:200]}
        return {"reachable": True}

    def records(self, *, limit: int, state: State | None) -> list[Json]:
        states = None if state is None else str(state)
        return [r.to_dict(entries=False) for r in self.store.records(limit=limit, state=states)]

    def record(self, transfer_id: int) -> Json | None:
        record = self.store.get(transfer_id)
        return None if record is None else record.to_dict()

    def ladder(self, transfer_id: int) -> str | None:
        record = self.store.get(transfer_id)
        return None if record is None else svg(record)

    def live(self, transfer_id: int) -> Json | None:
        transfer = self.orchestrator.get(transfer_id)
        return None if transfer is None else transfer.to_dict()

    async def start(self, flow: Flow, pbx: str, channel: str, exten: str, context: str | None) -> Json:
        start = self.orchestrator.blind if flow == Flow.BLIND else self.orchestrator.attended
        return (await _refused(start(pbx, channel, exten, context or DEFAULT_CONTEXT))).to_dict()

    async def complete(self, transfer_id: int) -> Json:
        return (await _refused(self.orchestrator.complete(transfer_id))).to_dict()

    async def cancel(self, transfer_id: int) -> Json:
        return (await _refused(self.orchestrator.cancel(transfer_id))).to_dict()


async def _refused(operation: Awaitable[Transfer]) -> Transfer:
    """The operation's transfer; its :class:`OperationError` as the API's :class:`ServiceError`."""
    try:
        return await operation
    except OperationError as exc:
        transfer = None if exc.transfer is None else exc.transfer.to_dict()
        raise ServiceError(exc.status, exc.message, transfer) from None
