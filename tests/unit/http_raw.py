"""Raw HTTP over asyncio streams, for the API tests: exactly the bytes we choose."""

from __future__ import annotations

import asyncio
import json
from typing import Any


async def exchange(
    host: str, port: int, raw: bytes, *, close_write: bool = False, source: str | None = None
) -> tuple[int, dict[str, str], Any]:
    """Send ``raw`` (from the address ``source`` if given) and read the whole answer."""
    local = None if source is None else (source, 0)
    reader, writer = await asyncio.open_connection(host, port, local_addr=local)
    writer.write(raw)
    await writer.drain()
    if close_write:
        writer.write_eof()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("content-type", "application/json") != "application/json":
        return status, headers, body  # the page, its files, a ladder: bytes as sent
    return status, headers, json.loads(body) if body else None


def request(
    method: str, path: str, *, token: str | None = None, body: Any = None, ctype: str = "application/json"
) -> bytes:
    payload = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.3.2"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if payload:
        lines += [f"Content-Type: {ctype}", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
