"""The FastAGI wire protocol: the request header, and commands with results.

Why not panoramisk's ``Application.handler`` (panoramisk 1.4) for the request header:

- it loops ``while b'\\n\\n' not in buffer: buffer += await reader.read(100)``. At EOF
  ``read`` returns ``b''`` at once without suspending, so a client that closes mid-header
  makes the coroutine spin forever and stalls the whole event loop;
- it has no read timeout (a slow client holds its session forever) and no size bound (a
  client sending bytes without a blank line grows the buffer without limit).

So :class:`HeaderParser` reads the header here, bounded in lines and bytes (the server bounds it in
time). What panoramisk does well is kept: routes are panoramisk-style handlers (``async def h(request)``)
and get a :class:`panoramisk.fast_agi.Request` (``request.headers``,
``await request.send_command(...)``), with results parsed by panoramisk's ``parse_agi_result``; its
reader and writer are anything with a StreamReader's ``readline`` and a StreamWriter's ``write`` and
``drain`` (the server's connection itself). :class:`AgiRequest` fixes one more panoramisk bug there: at
EOF its ``_read_result`` parses ``''`` and raises ``ValueError: invalid literal for int()``; here a closed
connection is an :class:`AgiHangup`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from panoramisk.fast_agi import Request
from panoramisk.utils import parse_agi_result

from referee.agi.quoting import agi_quote


class BadRequest(Exception):
    """A FastAGI request header that cannot be used; the connection is dropped."""


class AgiHangup(Exception):
    """The connection closed (or Asterisk said HANGUP) while a command waited for its result."""


class AgiCommandError(Exception):
    """Asterisk answered a command with an error (510, 520, result=-1, ...)."""


@dataclass(frozen=True)
class HeaderLimits:
    timeout: float = 5.0  # seconds for the whole header, however the bytes trickle in
    max_bytes: int = 32 * 1024
    max_lines: int = 256


class HeaderParser:
    """The request header, fed as it arrives: ``agi_name: value`` lines up to the blank line.

    Sans-I/O, so that the server parses it in ``data_received``, with no task and no reader. The header
    usually arrives in one segment: each chunk is split here at once rather than awaited line by line.
    Each line is bounded by ``max_line``, the whole by ``limits.max_bytes`` and ``limits.max_lines``
    (the time bound, ``limits.timeout``, is the caller's). Raises :class:`BadRequest`.
    """

    def __init__(self, limits: HeaderLimits, max_line: int = 8 * 1024) -> None:
        self.limits = limits
        self.max_line = max_line
        self.headers: dict[str, str] = {}
        self._size = 0
        self._pending = b""  # an unfinished line

    def feed(self, chunk: bytes) -> bytes | None:
        """None while the header goes on; once its blank line came, the bytes after it (often ``b""``).

        Asterisk sends nothing before the first command, but a HANGUP may come early: what follows the
        header belongs to the commands' results.
        """
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        headers, limits = self.headers, self.limits
        for number, line in enumerate(lines):
            self._size += len(line) + 1
            if len(line) >= self.max_line:
                raise BadRequest("header line too long")
            if self._size > limits.max_bytes:
                raise BadRequest("header too large")
            text = line.rstrip(b"\r")
            if not text:
                if not headers:
                    raise BadRequest("empty header")
                return b"\n".join([*lines[number + 1 :], self._pending])
            if len(headers) >= limits.max_lines:
                raise BadRequest("too many header lines")
            headers.update([_header_line(text)])
        if len(self._pending) >= self.max_line:
            raise BadRequest("header line too long")
        return None

    def closed(self) -> BadRequest:
        """What to say when the client closes before the blank line."""
        where = "mid-header" if self._pending or self.headers else "before the header"
        return BadRequest(f"connection closed {where}")


# A header line: an ASCII ``agi_`` name, a colon, a value in any charset (a Latin-1 caller ID name),
# decoded leniently.
_HEADER_LINE = re.compile(rb"(agi_[A-Za-z0-9_]*):(.*)", re.DOTALL)


def _header_line(text: bytes) -> tuple[str, str]:
    line = _HEADER_LINE.fullmatch(text)
    if line is None:
        raise BadRequest(f"not an AGI header line: {text.decode('utf-8', 'replace')[:60]!r}")
    return line[1].decode("ascii"), line[2].decode("utf-8", "replace").strip(" ")


class AgiRequest(Request):  # type: ignore[misc]  # panoramisk ships no type information
    """panoramisk's Request, with EOF and HANGUP turned into :class:`AgiHangup`."""

    async def _read_result(self) -> dict[str, Any]:
        # Workaround: panoramisk 1.4 decodes an EOF (b'') as '' and fails in int('').
        line: bytes = await self.reader.readline()
        if not line.endswith(b"\n"):
            raise AgiHangup("connection closed while waiting for a result")
        result: dict[str, Any] = parse_agi_result(line.decode(self.encoding, "replace").rstrip("\r\n"))
        return result

    async def command(self, command: str) -> dict[str, Any]:
        """Send one command; its parsed result, or AgiHangup / AgiCommandError."""
        result: dict[str, Any] = await self.send_command(command)
        error = result.get("error")
        if error == "AGIResultHangup":
            raise AgiHangup(result.get("msg", "hangup"))
        if error:
            raise AgiCommandError(f"{command.split(' ', 2)[:2]}: {error} {result.get('msg', '')}".strip())
        return result

    async def get_variable(self, name: str) -> str | None:
        """``GET VARIABLE``: the value, or None when the variable is not set."""
        result = await self.command(f"GET VARIABLE {agi_quote(name)}")
        code, value = result.get("result", ("0", ""))
        return str(value) if code == "1" else None

    async def set_variable(self, name: str, value: str) -> None:
        await self.command(f"SET VARIABLE {agi_quote(name)} {agi_quote(value)}")
