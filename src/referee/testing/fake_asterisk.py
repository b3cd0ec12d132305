"""A fake Asterisk for tests: the channel side of one AGI session, over asyncio streams.

It sends the AGI environment, answers ``GET VARIABLE`` from a dict, records ``SET
VARIABLE``, and splits each command line the way res_agi's ``parse_args`` does (double
quotes group, a backslash makes the next character literal), so a test sees exactly the
values Asterisk would store. Works against the FastAGI server (a TCP connection) and the
process AGI (a subprocess's pipes) alike. Bounded: at most ``max_commands`` commands, each
awaited at most ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class Channel:
    """What the fake channel knows and what the AGI did to it."""

    env: dict[str, str]
    variables: dict[str, str] = field(default_factory=dict)
    commands: list[list[str]] = field(default_factory=list)
    set_order: list[str] = field(default_factory=list)

    @property
    def allowed(self) -> str | None:
        return self.variables.get("REFEREE_ALLOWED")


def agi_env(
    exten: str, *, callerid: str = "1001", script: str = "transfer-guard", **extra: str
) -> dict[str, str]:
    """An AGI environment as Asterisk 22 sends it for a channel in the transfer context."""
    env = {
        "agi_network": "yes",
        "agi_network_script": script,
        "agi_request": f"agi://127.0.0.1:4573/{script}",
        "agi_channel": "PJSIP/referee-proxy-00000007",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": "1732436400.7",
        "agi_version": "22.0.0",
        "agi_callerid": callerid,
        "agi_calleridname": "unknown",
        "agi_callingpres": "0",
        "agi_dnid": "unknown",
        "agi_rdnis": "unknown",
        "agi_context": "referee-transfer",
        "agi_extension": exten,
        "agi_priority": "2",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "140000000000000",
    }
    env.update(extra)
    return env


def split_args(line: str) -> list[str]:
    """Split an AGI command line as res_agi does (quotes group words, backslash escapes)."""
    words: list[str] = []
    current: list[str] = []
    in_word = quoted = escaped = False
    for ch in line:
        if escaped:
            current.append(ch)
            in_word, escaped = True, False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
            in_word = True
        elif ch in " \t" and not quoted:
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(ch)
            in_word = True
    if in_word:
        words.append("".join(current))
    return words


async def play(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    env: Mapping[str, str],
    variables: Mapping[str, str] | None = None,
    *,
    max_commands: int = 64,
    timeout: float = 10.0,
    encoding: str = "utf-8",
) -> Channel:
    """Run one AGI session as the channel; return what happened to it.

    ``encoding`` is that of the environment's values (Asterisk passes caller ID bytes as they came).
    """
    channel = Channel(dict(env), dict(variables or {}))
    writer.write("".join(f"{k}: {v}\n" for k, v in env.items()).encode(encoding) + b"\n")
    await writer.drain()
    for _ in range(max_commands):
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line:
            return channel  # the AGI is done
        words = split_args(line.decode().rstrip("\n"))
        channel.commands.append(words)
        writer.write(_answer(channel, words).encode())
        await writer.drain()
    raise AssertionError(f"more than {max_commands} AGI commands")


def _answer(channel: Channel, words: list[str]) -> str:
    verb = " ".join(words[:2]).upper()
    if verb == "GET VARIABLE" and len(words) == 3:
        value = channel.variables.get(words[2])
        return "200 result=0\n" if value is None else f"200 result=1 ({value})\n"
    if verb == "SET VARIABLE" and len(words) == 4:
        channel.variables[words[2]] = words[3]
        channel.set_order.append(words[2])
        return "200 result=1\n"
    if verb.startswith("VERBOSE"):
        return "200 result=1\n"
    return "520 Invalid command syntax.  Proper usage not available.\n"


async def call(
    host: str,
    port: int,
    env: Mapping[str, str],
    variables: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    source: str | None = None,
) -> Channel:
    """Connect to a FastAGI server (from the address ``source`` if given) and run one session as the
    channel."""
    local = None if source is None else (source, 0)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, local_addr=local), timeout)
    try:
        return await play(reader, writer, env, variables, timeout=timeout)
    finally:
        writer.close()


def call_blocking(
    host: str,
    port: int,
    env: Mapping[str, str],
    variables: Mapping[str, str] | None = None,
    *,
    max_commands: int = 64,
    timeout: float = 10.0,
) -> Channel:
    """:func:`call` over a blocking socket, as res_agi talks to a FastAGI server (a channel thread, plain
    reads and writes): no event loop on the client's side, for benchmarks whose client must cost little."""
    channel = Channel(dict(env), dict(variables or {}))
    with socket.create_connection((host, port), timeout) as sock:
        sock.sendall("".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n")
        pending = b""
        while data := sock.recv(65536):
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                words = split_args(line.decode())
                channel.commands.append(words)
                if len(channel.commands) > max_commands:
                    raise AssertionError(f"more than {max_commands} AGI commands")
                sock.sendall(_answer(channel, words).encode())
    return channel
