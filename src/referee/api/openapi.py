"""The OpenAPI 3.1 document of the operator API (served at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

from referee.events import State

STATES = [str(state) for state in State]

_ERROR = {
    "description": "what was wrong",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _ERROR for code in codes}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


_ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "referee operator API",
            "version": "1",
            "description": "Start, follow, complete and cancel transfers on the PBXs the orchestrator is "
            "connected to, and read the audit trail. Loopback only; every path but this document needs "
            "Authorization: Bearer <token>. Errors are JSON objects with an `error` message.",
        },
        "security": [{"token": []}],
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "transfer": {"$ref": "#/components/schemas/Transfer"},
                    },
                },
                "NewTransfer": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["flow", "pbx", "channel", "exten"],
                    "properties": {
                        "flow": {"enum": ["blind", "attended"]},
                        "pbx": {"type": "string", "description": "PBX name, e.g. pbx1"},
                        "channel": {
                            "type": "string",
                            "description": "the initiator: a channel name (PJSIP/1002-00000001) "
                            "or an endpoint with exactly one call (PJSIP/1002)",
                        },
                        "exten": {"type": "string", "pattern": "^[0-9A-Za-z*#+][0-9A-Za-z*#+_.-]{0,63}$"},
                        "context": {"type": "string", "default": "referee-transfer"},
                    },
                },
                "Transfer": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "pbx": {"type": "string"},
                        "flow": {"enum": ["blind", "attended"]},
                        "origin": {"enum": ["operator", "refer", "pbx"]},
                        "state": {"enum": list(STATES)},
                        "result": {"type": "string"},
                        "exten": {"type": "string"},
                        "context": {"type": "string"},
                        "parties": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
                "Record": {
                    "type": "object",
                    "description": "an audit record; `entries` (the ladder) only on GET /transfers/{id}",
                    "properties": {
                        "id": {"type": "integer"},
                        "call_id": {"type": ["string", "null"]},
                        "refer_cseq": {"type": ["string", "null"]},
                        "origin": {"type": "string"},
                        "flow": {"type": ["string", "null"]},
                        "pbx": {"type": ["string", "null"]},
                        "state": {"enum": list(STATES)},
                        "result": {"type": ["string", "null"]},
                        "parties": {"type": "object"},
                        "created": {"type": "number"},
                        "updated": {"type": "number"},
                        "ended": {"type": ["number", "null"]},
                        "entries": {"type": "array", "items": {"type": "object"}},
                        "live": {"oneOf": [{"$ref": "#/components/schemas/Transfer"}, {"type": "null"}]},
                    },
                },
            },
        },
        "paths": {
            "/openapi.json": {
                "get": {
                    "summary": "this document",
                    "security": [],
                    "responses": {"200": {"description": "OK"}},
                }
            },
            "/health": {
                "get": {
                    "summary": "liveness: the daemon answers",
                    "security": [],
                    "responses": {"200": {"description": '{"status": "alive"}'}},
                }
            },
            "/ready": {
                "get": {
                    "summary": "readiness: every PBX answered the link's Ping or sent an event lately",
                    "security": [],
                    "responses": {
                        "200": {"description": "every PBX ready; per PBX: ready, connected, silent_seconds"},
                        "503": {"description": "a PBX is not connected, or silent (frozen): the same body"},
                    },
                }
            },
            "/transfers": {
                "get": {
                    "summary": "audit records, newest first",
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                        {"name": "state", "in": "query", "schema": {"enum": list(STATES)}},
                    ],
                    "responses": {
                        "200": {"description": "records", "content": _json("Record")},
                        **_errors(400, 401),
                    },
                },
                "post": {
                    "summary": "start a blind or attended transfer",
                    "requestBody": {"required": True, "content": _json("NewTransfer")},
                    "responses": {
                        "201": {"description": "started", "content": _json("Transfer")},
                        **_errors(400, 401, 404, 409, 413, 415, 422, 502, 503),
                    },
                },
            },
            "/transfers/{id}": {
                "get": {
                    "summary": "one transfer: audit record with its ladder, and live state",
                    "parameters": [_ID_PARAM],
                    "responses": {
                        "200": {"description": "the record", "content": _json("Record")},
                        **_errors(401, 404),
                    },
                }
            },
            "/transfers/{id}/complete": {
                "post": {
                    "summary": "complete an attended transfer (hangs up the initiator's channel)",
                    "parameters": [_ID_PARAM],
                    "responses": {
                        "202": {
                            "description": "asked; the state follows the PBX",
                            "content": _json("Transfer"),
                        },
                        **_errors(401, 404, 409, 422, 502, 503),
                    },
                }
            },
            "/transfers/{id}/cancel": {
                "post": {
                    "summary": "cancel a transfer",
                    "parameters": [_ID_PARAM],
                    "responses": {
                        "200": {"description": "cancelled", "content": _json("Transfer")},
                        **_errors(401, 404, 409, 422, 502, 503),
                    },
                }
            },
        },
    }
