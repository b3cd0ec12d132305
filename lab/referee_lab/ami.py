"""A PBX's AMI while a scenario runs: the events it reports (for ``[[expect.ami]]`` and ``[operator]``), and
the actions a scenario sends it (``[[actions.ami]]``) once it has reported given events.

One blocking socket per PBX, read by a thread: logged in (and answered) before the phones start, so no
event of the scenario is missed, and closed once they are done. The lab's manager.conf permits the
referee user from the PBX's own address only, so the connection is made from there.

Matching (both for expectations and for an action's ``when``): an event matches a pattern when it carries
every field of the pattern with that value; a value ending in ``*`` matches any value with that prefix
(``Channel = "PJSIP/1002-*"``: bob's channel, whatever its sequence number).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from referee.orchestrator.amitext import AmiMessage, format_message, parse_messages

#: Classes of events the recorder asks for: call (BlindTransfer, Hangup, BridgeEnter...) and dialplan
#: (VarSet: what the transfer guard set on the channel).
EVENTS = "call,dialplan"


def matches(event: Mapping[str, str], pattern: Mapping[str, str]) -> bool:
    """``event`` carries every field of ``pattern`` (a value ``prefix*`` matches by prefix)."""
    for key, want in pattern.items():
        got = event.get(key)
        if got is None:
            return False
        if want.endswith("*") and got.startswith(want[:-1]):
            continue
        if got != want:
            return False
    return True


_FIELD = re.compile(r"\{([A-Za-z0-9_-]+)\}")


def fill(template: Mapping[str, str], event: Mapping[str, str]) -> AmiMessage:
    """The action ``template`` with each ``{Field}`` replaced by that field of ``event``.

    A field the event does not carry is an error (KeyError): the action would name nothing.
    """
    return {key: _FIELD.sub(lambda m: event[m.group(1)], value) for key, value in template.items()}


@dataclass(frozen=True)
class Action:
    """An AMI action sent once the PBX has reported, in this run, an event matching each ``when`` pattern
    (in any order), and ``delay`` seconds later (SIP the events' moment put on the wire, such as the ACK
    of the call just answered, is through the proxy first); ``{Field}`` in ``fields`` is taken from the
    event that matched the first pattern."""

    pbx: str
    when: tuple[tuple[tuple[str, str], ...], ...]
    fields: tuple[tuple[str, str], ...]
    delay: float = 0.0

    def ready(self, events: Sequence[Mapping[str, str]]) -> AmiMessage | None:
        """The action to send if every pattern has matched an event (None if not yet)."""
        found = []
        for pattern in self.when:
            hit = next((e for e in events if matches(e, dict(pattern))), None)
            if hit is None:
                return None
            found.append(hit)
        return fill(dict(self.fields), found[0] if found else {})


@dataclass
class Sent:
    """An action the recorder sent, and the PBX's response to it (empty until it came)."""

    action: AmiMessage
    response: AmiMessage


class AmiRecorder:
    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        secret: str,
        timeout: float = 5.0,
        actions: Sequence[Action] = (),
    ) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout, source_address=(host, 0))
        self._data = bytearray()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closed = False
        self._pending = list(actions)
        self._events: list[AmiMessage] = []
        self._parsed = 0  # bytes of _data already split into complete messages
        self._timers: list[tuple[threading.Timer, Action, AmiMessage]] = []
        self.sent: list[Sent] = []
        self.unsent: list[Action] = []
        self.errors: list[str] = []
        self._sock.sendall(
            format_message({"Action": "Login", "Username": user, "Secret": secret, "Events": EVENTS}).encode()
        )
        login = self._read_until_response()
        if login.get("Response") != "Success":
            self._sock.close()
            raise RuntimeError(f"AMI login to {host}:{port} failed: {login.get('Message', login)}")
        self._sock.settimeout(None)
        with self._lock:
            self._fire()  # events that came with the login response
        self._thread = threading.Thread(target=self._read, name=f"ami-{host}", daemon=True)
        self._thread.start()

    def schedule(self, actions: Sequence[Action]) -> None:
        """Send these actions too once their events have come (some may have already)."""
        with self._lock:
            self._pending += actions
            self._fire()

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
                break
            if not chunk:
                break
            with self._lock:
                self._data += chunk
                self._fire()
        with self._lock:
            self._closed = True
            self._changed.notify_all()

    def wait_for(self, patterns: Sequence[Mapping[str, str]], timeout: float) -> AmiMessage | None:
        """Block until an event matching each pattern has come (the first pattern's event), or None on
        ``timeout`` or when the connection closed first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [next((e for e in self._events if matches(e, p)), None) for p in patterns]
                if all(found):
                    return found[0] or {}
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    return None
                self._changed.wait(left)

    def _fire(self) -> None:
        """Parse the complete messages, wake waiters and send every pending action whose events have come
        (called with the lock held)."""
        end = self._data.rfind(b"\r\n\r\n")
        if end >= self._parsed:
            text = self._data[self._parsed : end + 4].decode(errors="replace")
            self._events += [m for m in parse_messages(text) if "Event" in m]
            self._parsed = end + 4
            self._changed.notify_all()
        for action in list(self._pending):
            try:
                message = action.ready(self._events)
            except KeyError as e:
                self._pending.remove(action)
                self.errors.append(
                    f"AMI action {dict(action.fields)} on {action.pbx}: no field {e} to fill in"
                )
                continue
            if message is None:
                continue
            self._pending.remove(action)
            if action.delay > 0:
                timer = threading.Timer(action.delay, self._send_later, (action, message))
                timer.daemon = True
                self._timers.append((timer, action, message))
                timer.start()
            else:
                self._send(action, message)

    def _send_later(self, action: Action, message: AmiMessage) -> None:
        with self._lock:
            if not self._closed:
                self._send(action, message)

    def _send(self, action: Action, message: AmiMessage) -> None:
        """Send ``message`` (with the lock held)."""
        message["ActionID"] = f"referee-lab-{len(self.sent) + 1}"
        try:
            self._sock.sendall(format_message(message).encode())
        except OSError as e:
            self.errors.append(f"AMI action {message} on {action.pbx}: not sent: {e}")
            return
        self.sent.append(Sent(message, {}))

    def close(self) -> list[AmiMessage]:
        """Stop reading; every event received (login response included: not an event).

        Afterwards ``sent`` holds each action sent with its response, and ``unsent`` the actions never sent.
        """
        with self._lock:
            self._closed = True  # a delayed action not sent yet stays unsent
            for timer, action, message in self._timers:
                timer.cancel()
                if not any(s.action is message for s in self.sent):
                    self.errors.append(
                        f"AMI action {message.get('Action')} on {action.pbx}: the run ended first"
                    )
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        self._sock.close()
        with self._lock:
            text = self._data.decode(errors="replace")
            self.unsent = list(self._pending)
        messages = parse_messages(text)
        by_id = {m["ActionID"]: m for m in messages if "Response" in m and "ActionID" in m}
        for sent in self.sent:
            sent.response = by_id.get(sent.action["ActionID"], {})
        return [m for m in messages if "Event" in m]


def action_problems(
    pbx: str, sent: Sequence[Sent], unsent: Sequence[Action], errors: Sequence[str] = ()
) -> list[str]:
    """What went wrong with a PBX's actions: never sent (their events never came) or not answered Success."""
    problems = list(errors)
    for action in unsent:
        when = " and ".join(", ".join(f"{k}: {v}" for k, v in p) for p in action.when)
        problems.append(
            f"AMI action {dict(action.fields).get('Action')} on {pbx} never sent (no event {when})"
        )
    for one in sent:
        if one.response.get("Response") != "Success":
            shown = one.response.get("Message", "no response") if one.response else "no response"
            problems.append(f"AMI action {one.action.get('Action')} on {pbx}: {shown}")
    return problems
