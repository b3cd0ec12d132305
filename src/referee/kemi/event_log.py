"""The proxy's JSON-lines event file: one decision per REFER, one outcome per NOTIFY.

The lines are :func:`referee.events.to_json` of the typed events; this module only appends them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from referee import events


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
            os.write(self._open(), (events.to_json(event) + "\n").encode("utf-8", "replace"))
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
