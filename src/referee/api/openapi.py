"""The OpenAPI 3.1 document of the operator API (served at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

from referee.api.page import ASSETS
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
            "connected to, read the audit trail and its ladders, and ask the transfer policy about a REFER. "
            "Loopback only; every path but this document, /health, /ready and the page (/ui) needs "
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
                "PolicyCheck": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["refer_to", "referrer"],
                    "properties": {
                        "refer_to": {"type": "string", "description": "the Refer-To header value"},
                        "referrer": {"type": "string", "description": "the REFER's From URI"},
                        "dialogs": {
                            "type": "array",
                            "maxItems": 16,
                            "items": {"type": "string", "description": "CALL-ID;TAG;TAG"},
                            "description": "dialogs the referrer is a party to (for a Replaces)",
                        },
                        "depth": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 0},
                    },
                },
                "Decision": {
                    "type": "object",
                    "description": "what `referee policy check --json` prints",
                    "properties": {
                        "allowed": {"type": "boolean"},
                        "status": {"type": "integer"},
                        "reason": {"type": "string"},
                        "rule": {"type": "string"},
                        "refer_to": {"type": ["string", "null"]},
                        "target": {"type": ["string", "null"]},
                        "replaces": {"type": ["object", "null"]},
                        "tenant": {"type": ["string", "null"]},
                        "pbx": {"type": ["string", "null"]},
                        "trace": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "rule": {"type": "string"},
                                    "outcome": {"type": "string"},
                                    "detail": {"type": "string"},
                                },
                            },
                        },
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
                        "evidence": {
                            "type": ["string", "null"],
                            "description": "what the outcome rests on: the PBX's view or the proxy's alone",
                        },
                        "policy_version": {"type": ["string", "null"]},
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
                    "summary": "readiness: every PBX answered the link's Ping or sent an event lately,"
                    " and the audit database answers",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "every PBX ready; per PBX: ready, connected, silent_seconds;"
                            " database: reachable (and error when it is not)"
                        },
                        "503": {
                            "description": "a PBX is not connected, or silent (frozen), or the database does"
                            " not answer: the same body"
                        },
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics of the daemon (text format; docs/metrics.md)",
                    "security": [],
                    "responses": {"200": {"description": "text/plain; version=0.0.4"}},
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
            "/transfers/{id}/ladder": {
                "get": {
                    "summary": "the audit record's ladder: an SVG picture",
                    "parameters": [_ID_PARAM],
                    "responses": {
                        "200": {"description": "the ladder", "content": {"image/svg+xml": {}}},
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
            "/policy/check": {
                "post": {
                    "summary": "decide one REFER with the daemon's policy (--policy), with the rule trace",
                    "requestBody": {"required": True, "content": _json("PolicyCheck")},
                    "responses": {
                        "200": {
                            "description": "allowed or rejected: the decision",
                            "content": _json("Decision"),
                        },
                        **_errors(400, 401, 413, 415, 422),
                        "503": {**_ERROR, "description": "the daemon has no policy (start it with --policy)"},
                    },
                }
            },
            "/ui": {
                "get": {
                    "summary": "the transfers page (it asks for the token, then calls this API)",
                    "security": [],
                    "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
                }
            },
            "/ui/{asset}": {
                "get": {
                    "summary": "the page's script and style",
                    "security": [],
                    "parameters": [
                        {"name": "asset", "in": "path", "required": True, "schema": {"enum": ASSETS}}
                    ],
                    "responses": {"200": {"description": "the file"}, **_errors(404)},
                }
            },
        },
    }
