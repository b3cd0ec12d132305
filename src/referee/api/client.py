"""A client of the operator API for the command line (stdlib urllib, loopback only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class ApiUnreachable(Exception):
    pass


class ApiError(Exception):
    def __init__(self, status: int, message: str, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = body


def call(base: str, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base.rstrip("/") + path, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return _decode(answer.read())
    except urllib.error.HTTPError as exc:
        payload = _decode(exc.read())
        raise ApiError(exc.code, str(payload.get("error", exc.reason)), payload) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ApiUnreachable(f"cannot reach the orchestrator API at {base}: {exc}") from None


def readiness(base: str) -> dict[str, Any]:
    """``GET /ready``: ``{ready, pbxs: {NAME: {ready, connected, silent_seconds}}}``, ready or not (503)."""
    try:
        return call(base, "", "GET", "/ready")
    except ApiError as exc:
        if exc.status == 503 and "pbxs" in exc.body:
            return exc.body
        raise


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {"error": raw[:200].decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"value": value}
