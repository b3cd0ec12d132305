"""The proxy's JSON-lines event file: one decision per REFER, one outcome per NOTIFY.

The lines are :func:`referee.events.to_json` of the typed events, byte for byte; this module only
appends them. The two events of every REFER (its decision and its response) are encoded here from
precomputed JSON prefixes rather than through ``to_dict`` and the JSON encoder: the same line, for
about a fifth of the cost on Kamailio's hot path (tests/unit/test_kemi_event_lines.py holds them equal).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from referee import events

# The string encoder of events.to_json (ensure_ascii=False): a JSON string literal, quotes included.
_string: Callable[[str], str] = json.encoder.encode_basestring
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_DECISION = ',"event":"refer.decision","call_id":'
_RESPONSE = ',"event":"refer.response","call_id":'
_COPIED = frozenset(("allowed", "status", "reason", "rule"))


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _optional(name: str, value: str | None) -> str:
    return "" if value is None else f',"{name}":{_string(value)}'


def decision_line(event: events.ReferDecision) -> str:
    """``events.to_json(event)`` of a ReferDecision."""
    if _COPIED.intersection(event.decision):  # to_dict lets the fields win, in the summary's key order
        return events.to_json(event)
    summary = _encode(event.decision)[:-1] if event.decision else "{"
    comma = "," if event.decision else ""
    return (
        f'{{"time":{event.time!r}{_DECISION}{_string(event.call_id)},"cseq":{event.cseq!r}'
        f',"from":{_string(event.referrer)},"src":{_string(event.src)}'
        f',"subscription":{_bool(event.subscription)},"decision":{summary}{comma}'
        f'"allowed":{_bool(event.allowed)},"status":{event.status!r},"reason":{_string(event.reason)}'
        f',"rule":{_string(event.rule)}}}'
        f"{_optional('refer_to', event.refer_to)}"
        f"{_optional('forwarded_refer_to', event.forwarded_refer_to)}"
        f"{_optional('replaces_pbx', event.replaces_pbx)}"
        f"{_optional('policy_version', event.policy_version)}}}"
    )


def response_line(event: events.ReferResponse) -> str:
    """``events.to_json(event)`` of a ReferResponse."""
    reason = f',"reason":{_string(event.reason)}' if event.reason else ""
    local = ',"local":true' if event.local else ""
    subscription = "" if event.subscription else ',"subscription":false'
    return (
        f'{{"time":{event.time!r}{_RESPONSE}{_string(event.call_id)},"cseq":{event.cseq!r}'
        f',"status":{event.status!r}{reason}{local}{subscription}}}'
    )


# The hot path's events, encoded without a dict; any other goes through events.to_json.
_LINES: dict[type, Callable[[Any], str]] = {
    events.ReferDecision: decision_line,
    events.ReferResponse: response_line,
}


class EventLog:
    """Appends one event per line. O_APPEND writes of one line are not interleaved.

    The file stays open between events; at most once a second it is checked to have been
    rotated or removed, and then reopened. ``now()`` is the time the events are stamped with.
    """

    def __init__(
        self,
        path: str,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.now = clock
        self._monotonic = monotonic
        self._on_error = on_error
        self._fd: int | None = None
        self._inode = 0
        self._next_check = 0.0
        self._next_error = 0.0
        self.lost = 0  # events that could not be written

    def _open(self) -> int:
        now = self._monotonic()
        if self._fd is not None and now < self._next_check:
            return self._fd
        self._next_check = now + 1.0
        try:
            inode = os.stat(self.path).st_ino
        except OSError:
            inode = -1
        if self._fd is None or inode != self._inode:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._inode = os.fstat(self._fd).st_ino
        return self._fd

    def write(self, event: events.Event) -> None:
        """Append one event. A file that cannot be written loses the event, never the decision:
        the error is reported (at most every 10 s) and the caller goes on."""
        try:
            line = _LINES.get(type(event), events.to_json)(event)
            os.write(self._open(), (line + "\n").encode("utf-8", "replace"))
        except OSError as exc:
            self.lost += 1
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            now = self._monotonic()
            if self._on_error is not None and now >= self._next_error:
                self._next_error = now + 10.0
                self._on_error(
                    f"referee: cannot write events to {self.path} ({exc}); {self.lost} lost so far"
                )
