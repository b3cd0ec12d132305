"""A small HTTP/1.1 JSON server on asyncio streams: one request per connection, bounded in every way.

Limits: request line and headers 16 KiB (431), body 64 KiB (413), ``Content-Length`` only
(chunked bodies get 411), a read timeout per request (408), at most ``max_connections``
at once and ``max_per_address`` from one peer address (503 with Retry-After for the others). A handler
raises :class:`HttpError` for 4xx answers; anything else it raises is logged and answered 500 (the API's
tests make sure that never happens).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from referee.slots import Slots, peer_address

log = logging.getLogger(__name__)

MAX_HEAD = 16384
MAX_BODY = 65536
REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


class HttpError(Exception):
    def __init__(
        self, status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        if not self.body:
            return None
        ctype = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise HttpError(415, f"send the body as application/json, not {ctype or 'no Content-Type'}")
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise HttpError(400, f"the body is not valid JSON: {exc}") from None


@dataclass
class Response:
    """``body`` is JSON-ready, or bytes sent as they are (with a Content-Type in ``headers``)."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


def _encode(response: Response) -> bytes:
    if isinstance(response.body, bytes):  # a page, a script, a picture: its Content-Type is in the headers
        body, ctype = response.body, "application/octet-stream"
    else:
        body, ctype = json.dumps(response.body, indent=2, default=str).encode() + b"\n", "application/json"
    head = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}"]
    headers = {
        "Content-Type": ctype,
        "X-Content-Type-Options": "nosniff",
        "Content-Length": str(len(body)),
        "Connection": "close",
        "Cache-Control": "no-store",
        **response.headers,
    }
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def error_response(exc: HttpError) -> Response:
    return Response(exc.status, {"error": exc.message, **exc.extra}, exc.headers)


async def _read_request(reader: asyncio.StreamReader) -> Request:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise HttpError(431, f"request line and headers exceed {MAX_HEAD} bytes") from None
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise ConnectionResetError from None
        raise HttpError(400, "the request ended inside its headers") from None
    if len(head) > MAX_HEAD:
        raise HttpError(431, f"request line and headers exceed {MAX_HEAD} bytes")
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise HttpError(400, "undecodable request") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1].startswith("/"):
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(505, f"{version[:20]!r} is not HTTP/1.0 or HTTP/1.1")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, f"malformed header line {line[:40]!r}")
        key = name.lower()
        if key in headers and key in ("content-length", "authorization", "content-type"):
            raise HttpError(400, f"repeated {name} header")
        headers[key] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise HttpError(411, "chunked bodies are not accepted: send Content-Length")
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        raise HttpError(400, "Content-Length must be a number")
    length = int(length_text)
    if length > MAX_BODY:
        raise HttpError(413, f"the body exceeds {MAX_BODY} bytes")
    try:
        body = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError:
        raise HttpError(400, "the body is shorter than its Content-Length") from None
    try:
        split = urlsplit(target)
        query = parse_qs(split.query, max_num_fields=50)
    except ValueError as exc:  # "//[" is an invalid IPv6 netloc to urlsplit; too many fields
        raise HttpError(400, f"malformed request target: {exc}") from None
    return Request(method.upper(), unquote(split.path), query, headers, body)


class HttpServer:
    """``max_connections`` at once, at most ``max_per_address`` of them from one peer address (a quarter of
    the total by default), so that one peer holding slow connections never locks the others out."""

    def __init__(
        self,
        handler: Handler,
        *,
        read_timeout: float = 10.0,
        max_connections: int = 64,
        max_per_address: int | None = None,
    ) -> None:
        self.handler = handler
        self.read_timeout = read_timeout
        self.slots = Slots.of(max_connections, max_per_address)
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[object]] = set()

    @property
    def open(self) -> int:
        """Connections being served (refused ones are not counted)."""
        return self.slots.open

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._connection, host, port, limit=MAX_HEAD)
        address = self.server.sockets[0].getsockname()
        return str(address[0]), int(address[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_address(writer.get_extra_info("peername"))
        refused = self.slots.take(peer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            response: Response | None
            if refused is None:
                response = await self._respond(reader)
            else:
                # Take in what the client sent first (briefly): closing on unread data would reset
                # the connection and lose the answer.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.read(MAX_HEAD), 1.0)
                response = Response(
                    503, {"error": f"too many connections ({refused}), try again"}, {"Retry-After": "1"}
                )
            if response is not None:
                writer.write(_encode(response))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # the server is closing
            pass
        finally:
            if refused is None:
                self.slots.give(peer)
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> Response | None:
        try:
            request = await asyncio.wait_for(_read_request(reader), self.read_timeout)
        except TimeoutError:
            return Response(408, {"error": f"no complete request within {self.read_timeout:g} s"})
        except ConnectionResetError:
            return None
        except HttpError as exc:
            return error_response(exc)
        except (ValueError, UnicodeError) as exc:  # a parse we did not foresee: still the client's fault
            log.warning("malformed request: %s", exc)
            return Response(400, {"error": "malformed request"})
        try:
            return await self.handler(request)
        except HttpError as exc:
            return error_response(exc)
        except Exception:
            log.exception("API handler failed on %s %s", request.method, request.path)
            return Response(500, {"error": "internal error (logged)"})
