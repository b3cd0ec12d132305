"""A fake Asterisk manager interface on TCP, for tests: real panoramisk clients talk to it.

It greets like Asterisk, accepts ``Login`` with the configured secret (then sends
``FullyBooted``; like Asterisk's ``permit=``, ``permit`` refuses logins from other
addresses), answers other actions from ``answers`` (action name -> raw AMI text, with
``{ActionID}`` replaced; a callable may build the text from the action), and records every
action it receives. :meth:`FakeAmi.push` sends raw AMI text (a trace) to every client;
:meth:`FakeAmi.drop_clients` cuts the connections, to test reconnects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from referee.orchestrator.amitext import BANNER, AmiMessage, format_message, parse_messages

Answer = str | Callable[[AmiMessage], str]


def success(message: str = "") -> str:
    return (
        "Response: Success\r\nActionID: {ActionID}\r\n"
        + (f"Message: {message}\r\n" if message else "")
        + "\r\n"
    )


def error(message: str) -> str:
    return f"Response: Error\r\nActionID: {{ActionID}}\r\nMessage: {message}\r\n\r\n"


@dataclass
class FakeAmi:
    host: str = "127.0.3.1"
    username: str = "referee"
    secret: str = "secret"
    answers: dict[str, Answer] = field(default_factory=dict)
    actions: list[AmiMessage] = field(default_factory=list)
    port: int = 0
    logins: int = 0
    refused: int = 0
    permit: str | None = None  # like manager.conf's permit=: logins from this address only
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = field(default_factory=list)

    async def start(self) -> FakeAmi:
        self._server = await asyncio.start_server(self._client, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self.drop_clients()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop_clients(self) -> None:
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def push(self, text: str) -> None:
        """Send raw AMI text (one or more messages) to every logged-in client."""
        data = "".join(format_message(m) for m in parse_messages(text)).encode()
        for writer in list(self._writers):
            writer.write(data)
            await writer.drain()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds (checked after each action received)."""
        if condition():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((condition, future))
        await future

    def _wake(self) -> None:
        for waiter in list(self._waiters):
            condition, future = waiter
            if not future.done() and condition():
                future.set_result(None)
                self._waiters.remove(waiter)

    def named(self, action: str) -> list[AmiMessage]:
        return [a for a in self.actions if a.get("Action", "").lower() == action.lower()]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"{BANNER}\r\n".encode())
        buffer = ""
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buffer += chunk.decode("utf-8", "replace")
                while "\r\n\r\n" in buffer:
                    block, buffer = buffer.split("\r\n\r\n", 1)
                    (action,) = parse_messages(block) or [{}]
                    await self._answer(action, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if writer in self._writers:
                self._writers.remove(writer)
            writer.close()

    async def _answer(self, action: AmiMessage, writer: asyncio.StreamWriter) -> None:
        name = action.get("Action", "")
        action_id = action.get("ActionID", "")
        if name.lower() == "login":
            peer = writer.get_extra_info("peername")[0]
            ok = action.get("Username") == self.username and action.get("Secret") == self.secret
            ok = ok and (self.permit is None or peer == self.permit)
            self.refused += not ok
            text = success("Authentication accepted") if ok else error("Authentication failed")
            writer.write(text.replace("{ActionID}", action_id).encode())
            if ok:
                self.logins += 1
                self._writers.append(writer)
                writer.write(b"Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n")
            await writer.drain()
            self._wake()
            return
        self.actions.append(action)
        answer = self.answers.get(
            name, success() if name.lower() == "ping" else error(f"Invalid/unknown command: {name}")
        )
        text = answer(action) if callable(answer) else answer
        raw = "".join(format_message(m) for m in parse_messages(text))  # traces may be LF-only
        writer.write(raw.replace("{ActionID}", action_id).encode())
        await writer.drain()
        self._wake()
