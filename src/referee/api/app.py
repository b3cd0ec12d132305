"""The operator API: routes, token check, validation; the orchestrator does the work.

=======  ============================  =================================================
GET      /openapi.json                 the OpenAPI document (no token needed)
GET      /health                       each PBX and whether it is connected
GET      /transfers                    audit records, newest first (``limit``, ``state``)
POST     /transfers                    start one: ``{flow, pbx, channel, exten, context?}``
GET      /transfers/{id}               one transfer: its live state and its audit record
POST     /transfers/{id}/complete      complete an attended transfer
POST     /transfers/{id}/cancel        cancel a transfer
=======  ============================  =================================================

Every request but ``/openapi.json`` needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

from referee.api.http import HttpError, Request, Response
from referee.api.openapi import document
from referee.events import State
from referee.orchestrator.operations import DEFAULT_CONTEXT, OperationError, Orchestrator
from referee.orchestrator.transfer import Transfer

_ID = re.compile(r"/transfers/([0-9]{1,18})(/complete|/cancel)?")
CREATE_FIELDS = {"flow": str, "pbx": str, "channel": str, "exten": str, "context": str}
REQUIRED = ("flow", "pbx", "channel", "exten")


class Api:
    def __init__(self, orchestrator: Orchestrator, token: str) -> None:
        if len(token) < 16:
            raise ValueError("the API token must be at least 16 characters")
        self.orchestrator = orchestrator
        self._token = token.encode()

    async def __call__(self, request: Request) -> Response:
        if request.path == "/openapi.json":
            self._method(request, "GET")
            return Response(200, document())
        self._authorize(request)
        if request.path == "/health":
            self._method(request, "GET")
            return Response(200, self._health())
        if request.path in ("/transfers", "/transfers/"):
            self._method(request, "GET", "POST")
            if request.method == "GET":
                return self._list(request)
            return await self._create(request)
        match = _ID.fullmatch(request.path)
        if match is None:
            raise HttpError(404, f"no such resource {request.path[:80]!r} (see /openapi.json)")
        transfer_id, action = int(match.group(1)), match.group(2)
        if action is None:
            self._method(request, "GET")
            return self._show(transfer_id)
        self._method(request, "POST")
        self._no_body(request)
        try:
            if action == "/complete":
                transfer = await self.orchestrator.complete(transfer_id)
                return Response(202, self._live(transfer))
            transfer = await self.orchestrator.cancel(transfer_id)
        except OperationError as exc:
            raise self._error(exc) from None
        return Response(200, self._live(transfer))

    # -- checks ---------------------------------------------------------------------------

    def _authorize(self, request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HttpError(401, "send Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(token.strip().encode(), self._token):
            raise HttpError(401, "wrong token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})

    @staticmethod
    def _method(request: Request, *allowed: str) -> None:
        if request.method not in allowed:
            raise HttpError(
                405,
                f"{request.method} is not allowed on {request.path}",
                headers={"Allow": ", ".join(allowed)},
            )

    @staticmethod
    def _no_body(request: Request) -> None:
        body = request.json()
        if body not in (None, {}):
            raise HttpError(422, "this action takes no body (or {})")

    @staticmethod
    def _error(exc: OperationError) -> HttpError:
        extra: dict[str, Any] = {}
        if exc.transfer is not None:
            extra["transfer"] = Api._live(exc.transfer)
        return HttpError(exc.status, exc.message, **extra)

    # -- handlers -------------------------------------------------------------------------

    def _health(self) -> dict[str, Any]:
        pbxs = {name: {"connected": link.ready} for name, link in self.orchestrator.links.items()}
        return {"pbxs": pbxs, "active_transfers": len(self.orchestrator.active())}

    def _list(self, request: Request) -> Response:
        limit_text = request.query.get("limit", ["50"])[-1]
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            raise HttpError(400, "limit must be a number from 1 to 1000")
        state = request.query.get("state", [None])[-1]
        if state is not None and state not in set(State):
            raise HttpError(400, f"state must be one of {', '.join(State)}")
        records = self.orchestrator.store.records(limit=int(limit_text), state=state)
        return Response(200, {"transfers": [r.to_dict(entries=False) for r in records]})

    async def _create(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise HttpError(422, "the body must be a JSON object: {flow, pbx, channel, exten, context?}")
        unknown = sorted(set(body) - set(CREATE_FIELDS))
        if unknown:
            raise HttpError(422, f"unknown field(s): {', '.join(unknown)}")
        missing = [name for name in REQUIRED if name not in body]
        if missing:
            raise HttpError(422, f"missing field(s): {', '.join(missing)}")
        for name, value in body.items():
            if not isinstance(value, str) or not value:
                raise HttpError(422, f"{name} must be a non-empty string")
        if body["flow"] not in ("blind", "attended"):
            raise HttpError(422, "flow must be 'blind' or 'attended'")
        start = self.orchestrator.blind if body["flow"] == "blind" else self.orchestrator.attended
        try:
            transfer = await start(
                body["pbx"], body["channel"], body["exten"], body.get("context", DEFAULT_CONTEXT)
            )
        except OperationError as exc:
            raise self._error(exc) from None
        return Response(201, self._live(transfer), {"Location": f"/transfers/{transfer.id}"})

    def _show(self, transfer_id: int) -> Response:
        record = self.orchestrator.store.get(transfer_id)
        if record is None:
            raise HttpError(404, f"no transfer {transfer_id}")
        live = self.orchestrator.get(transfer_id)
        return Response(200, {**record.to_dict(), "live": None if live is None else self._live(live)})

    @staticmethod
    def _live(transfer: Transfer) -> dict[str, Any]:
        return transfer.to_dict()
