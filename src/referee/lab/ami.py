"""The AMI events a PBX reports while a scenario runs, for ``[[expect.ami]]`` in scenario.toml.

One blocking socket per PBX, read by a thread: logged in (and answered) before the phones start, so no
event of the scenario is missed, and closed once they are done. The lab's manager.conf permits the
referee user from the PBX's own address only, so the connection is made from there.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Mapping, Sequence

from referee.orchestrator.amitext import AmiMessage, format_message, parse_messages


class AmiRecorder:
    def __init__(self, host: str, port: int, user: str, secret: str, timeout: float = 5.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout, source_address=(host, 0))
        self._data = bytearray()
        self._lock = threading.Lock()
        self._sock.sendall(
            format_message({"Action": "Login", "Username": user, "Secret": secret, "Events": "call"}).encode()
        )
        login = self._read_until_response()
        if login.get("Response") != "Success":
            self._sock.close()
            raise RuntimeError(f"AMI login to {host}:{port} failed: {login.get('Message', login)}")
        self._sock.settimeout(None)
        self._thread = threading.Thread(target=self._read, name=f"ami-{host}", daemon=True)
        self._thread.start()

    def _read_until_response(self) -> AmiMessage:
        while True:
            for message in parse_messages(self._data.decode(errors="replace")):
                if "Response" in message:
                    return message
            chunk = self._sock.recv(65536)
            if not chunk:
                return {}
            self._data += chunk

    def _read(self) -> None:
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self._data += chunk

    def close(self) -> list[AmiMessage]:
        """Stop reading; every event received (login response included: not an event)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        self._sock.close()
        with self._lock:
            text = self._data.decode(errors="replace")
        return [m for m in parse_messages(text) if "Event" in m]


def unmet(expected: Sequence[Mapping[str, str]], events: Mapping[str, Sequence[AmiMessage]]) -> list[str]:
    """The expectations no event matches. Each names its ``pbx`` and the fields an event must carry."""
    problems = []
    for want in expected:
        pbx = want.get("pbx", "")
        fields = {k: v for k, v in want.items() if k != "pbx"}
        if not any(all(e.get(k) == v for k, v in fields.items()) for e in events.get(pbx, ())):
            shown = ", ".join(f"{k}: {v}" for k, v in fields.items())
            problems.append(f"no AMI event on {pbx} with {shown}")
    return problems
