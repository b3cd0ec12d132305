"""The operator API: routes, token check, validation; a :class:`TransferService` does the work.

=======  ============================  =================================================
GET      /openapi.json                 the OpenAPI document (no token needed)
GET      /health                       liveness: the daemon answers (no token needed)
GET      /ready                        each PBX heard from lately and the database reachable; else 503
                                       (no token needed)
GET      /metrics                      Prometheus metrics of the daemon (no token needed; docs/metrics.md)
GET      /transfers                    audit records, newest first (``limit``, ``state``)
POST     /transfers                    start one: ``{flow, pbx, channel, exten, context?}``
GET      /transfers/{id}               one transfer: its live state and its audit record
POST     /transfers/{id}/complete      complete an attended transfer
POST     /transfers/{id}/cancel        cancel a transfer
GET      /transfers/{id}/ladder        the record's ladder, an SVG picture
POST     /policy/check                 decide one REFER: ``{refer_to, referrer, dialogs?, depth?}``
GET      /ui, /ui/{asset}              the transfers page and its script and style (no token needed)
=======  ============================  =================================================

Every request but ``/openapi.json``, ``/health``, ``/ready``, ``/metrics`` and the page needs
``Authorization: Bearer <token>`` (those tell nothing about any one transfer: a monitor can probe them
without the operator's token, and the page asks for the token before it asks the API for anything).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from typing import Any

from referee.api import page
from referee.api.access import MIN_TOKEN
from referee.api.http import HttpError, Request, Response
from referee.api.openapi import document
from referee.api.service import PolicyService, ServiceError, TransferService
from referee.events import Flow, State

_ID = re.compile(r"/transfers/([0-9]{1,18})(/complete|/cancel|/ladder)?")
CREATE_FIELDS = {"flow": str, "pbx": str, "channel": str, "exten": str, "context": str}
REQUIRED = ("flow", "pbx", "channel", "exten")
CHECK_FIELDS = {"refer_to", "referrer", "dialogs", "depth"}
MAX_DIALOGS, MAX_DEPTH = 16, 1000
# The daemon's metrics in the Prometheus text format, and its Content-Type (referee.metrics).
Metrics = Callable[[], tuple[bytes, str]]


class Api:
    def __init__(
        self,
        service: TransferService,
        token: str,
        policy: PolicyService | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        if len(token) < MIN_TOKEN:
            raise ValueError(f"the API token must be at least {MIN_TOKEN} characters")
        self.service = service
        self.policy = policy
        self.metrics = metrics
        self._token = token.encode()

    async def __call__(self, request: Request) -> Response:
        if request.path == "/openapi.json":
            self._method(request, "GET")
            return Response(200, document())
        if request.path == "/health":
            self._method(request, "GET")
            return Response(200, {"status": "alive"})
        if request.path == "/ready":
            self._method(request, "GET")
            return self._ready()
        if request.path == "/metrics":
            self._method(request, "GET")
            if self.metrics is None:
                raise HttpError(501, "this daemon serves no metrics")
            body, content_type = self.metrics()
            return Response(200, body, {"Content-Type": content_type})
        if request.path in ("/ui", "/ui/") or request.path.startswith("/ui/"):
            self._method(request, "GET")
            name = request.path.removeprefix("/ui").strip("/")
            return page.page() if not name else page.asset(name)
        self._authorize(request)
        if request.path == "/policy/check":
            self._method(request, "POST")
            return self._check(request)
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
        if action == "/ladder":
            self._method(request, "GET")
            return self._ladder(transfer_id)
        self._method(request, "POST")
        self._no_body(request)
        try:
            if action == "/complete":
                return Response(202, await self.service.complete(transfer_id))
            return Response(200, await self.service.cancel(transfer_id))
        except ServiceError as exc:
            raise self._error(exc) from None

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
    def _error(exc: ServiceError) -> HttpError:
        extra: dict[str, Any] = {}
        if exc.transfer is not None:
            extra["transfer"] = exc.transfer
        return HttpError(exc.status, exc.message, **extra)

    # -- handlers -------------------------------------------------------------------------

    def _ready(self) -> Response:
        pbxs = self.service.readiness()
        database = self.service.database()
        ready = all(pbx["ready"] for pbx in pbxs.values()) and bool(database["reachable"])
        return Response(
            200 if ready else 503,
            {"ready": ready, "pbxs": pbxs, "database": database},
            {} if ready else {"Retry-After": "2"},
        )

    def _list(self, request: Request) -> Response:
        limit_text = request.query.get("limit", ["50"])[-1]
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            raise HttpError(400, "limit must be a number from 1 to 1000")
        state = request.query.get("state", [None])[-1]
        if state is not None and state not in set(State):
            raise HttpError(400, f"state must be one of {', '.join(State)}")
        records = self.service.records(limit=int(limit_text), state=None if state is None else State(state))
        return Response(200, {"transfers": records})

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
        if body["flow"] not in set(Flow):
            raise HttpError(422, "flow must be 'blind' or 'attended'")
        try:
            transfer = await self.service.start(
                Flow(body["flow"]), body["pbx"], body["channel"], body["exten"], body.get("context")
            )
        except ServiceError as exc:
            raise self._error(exc) from None
        return Response(201, transfer, {"Location": f"/transfers/{transfer['id']}"})

    def _show(self, transfer_id: int) -> Response:
        record = self.service.record(transfer_id)
        if record is None:
            raise HttpError(404, f"no transfer {transfer_id}")
        return Response(200, {**record, "live": self.service.live(transfer_id)})

    def _ladder(self, transfer_id: int) -> Response:
        svg = self.service.ladder(transfer_id)
        if svg is None:
            raise HttpError(404, f"no transfer {transfer_id}")
        return page.picture(svg)

    def _check(self, request: Request) -> Response:
        if self.policy is None:
            raise HttpError(503, "no policy is configured: start referee orchestrator with --policy FILE")
        body = request.json()
        if not isinstance(body, dict):
            raise HttpError(422, "the body must be a JSON object: {refer_to, referrer, dialogs?, depth?}")
        unknown = sorted(set(body) - CHECK_FIELDS)
        if unknown:
            raise HttpError(422, f"unknown field(s): {', '.join(unknown)}")
        for name in ("refer_to", "referrer"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise HttpError(422, f"{name} must be a non-empty string")
        dialogs = body.get("dialogs", [])
        if not isinstance(dialogs, list) or len(dialogs) > MAX_DIALOGS:
            raise HttpError(422, f"dialogs must be a list of at most {MAX_DIALOGS} 'CALL-ID;TAG;TAG' strings")
        if not all(isinstance(dialog, str) for dialog in dialogs):
            raise HttpError(422, "dialogs must be strings: 'CALL-ID;TAG;TAG'")
        depth = body.get("depth", 0)
        if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= MAX_DEPTH:
            raise HttpError(422, f"depth must be a whole number from 0 to {MAX_DEPTH}")
        try:
            return Response(200, self.policy.check(body["refer_to"], body["referrer"], dialogs, depth))
        except ValueError as exc:
            raise HttpError(422, str(exc)) from None
