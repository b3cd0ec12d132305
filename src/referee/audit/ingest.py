"""Ingest of the proxy's JSON-lines event file into audit records.

Each line is parsed by :mod:`referee.events`, handed to the correlator
(:mod:`referee.audit.correlate`, which finds its record and moves its state), and the file offset
recorded, all in one transaction: a restart neither loses nor repeats a line. A rotated file
(other inode, or shorter than the offset) is read again from its start. A line that is not one of
the proxy's events is counted, logged and skipped.

The offset is kept under ``name`` (the file's path unless given): proxies on several hosts writing one
database each give their own name, since their event files have the same path.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import BinaryIO

from referee.audit.correlate import Correlator
from referee.audit.store import AuditStore
from referee.events import BadEvent, PbxHealth, ProxyReply, from_json

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 20


@dataclass
class EventFileIngest:
    """Follows the proxy's event file; call :meth:`poll` whenever it may have grown."""

    store: AuditStore
    path: str
    name: str = ""  # where the offset is kept; the path when empty
    applied: int = 0
    bad: int = 0
    last_error: str = field(default="")
    correlator: Correlator = field(init=False)
    # Where it got to, for its lag (referee.metrics.audit): (inode, offset) applied up to, and when
    # (time.monotonic()) a poll last left nothing unread.
    position: tuple[int, int] | None = field(default=None, init=False)
    caught_up_at: float = field(default_factory=time.monotonic, init=False)

    def __post_init__(self) -> None:
        self.correlator = Correlator(self.store)

    def poll(self) -> int:
        """Apply every complete line written since the last poll, then fail the transfers that
        waited too long (:meth:`Correlator.expire`); how many lines were applied."""
        count = self._read()
        self._measure()
        self.correlator.expire(self.store.now())
        return count

    def _measure(self) -> None:
        try:
            size = os.stat(self.path).st_size
        except OSError:
            size = 0
        self.position = self.store.ingest_offset(self.path)
        if size == 0 or (self.position is not None and self.position[1] >= size):
            self.caught_up_at = time.monotonic()

    def _read(self) -> int:
        try:
            st = os.stat(self.path)
        except OSError:
            return 0
        saved = self.store.ingest_offset(self.name or self.path)
        offset = 0
        if saved is not None and saved[0] == st.st_ino and saved[1] <= st.st_size:
            offset = saved[1]
        if offset == st.st_size:
            return 0
        count = 0
        with open(self.path, "rb") as handle:
            while True:
                handle.seek(offset)
                chunk = handle.read(READ_CHUNK)
                end = chunk.rfind(b"\n")
                if end < 0 and len(chunk) == READ_CHUNK:
                    offset = self._skip_long_line(handle, offset, st.st_ino)
                    if offset < 0:
                        break
                    continue
                if end < 0:
                    break  # a line still being written
                for line in chunk[: end + 1].splitlines(keepends=True):
                    offset += len(line)
                    count += self._apply_line(line.strip(), st.st_ino, offset)
                if len(chunk) < READ_CHUNK:
                    break
        return count

    def _skip_long_line(self, handle: BinaryIO, offset: int, inode: int) -> int:
        """Past a line longer than READ_CHUNK (counted as bad); -1 while its end is not written yet."""
        position = offset
        while True:
            handle.seek(position)
            chunk = handle.read(READ_CHUNK)
            if not chunk:
                return -1
            newline = chunk.find(b"\n")
            if newline >= 0:
                end = position + newline + 1
                with self.store.transaction():
                    self.bad += 1
                    self.last_error = f"{self.path} offset {end}: line longer than {READ_CHUNK} bytes"
                    log.warning("skipping proxy event line: %s", self.last_error)
                    self.store.set_ingest_offset(self.name or self.path, inode, end)
                return end
            position += len(chunk)

    def _apply_line(self, line: bytes, inode: int, offset: int) -> int:
        with self.store.transaction():
            applied = 0
            if line:
                try:
                    event = from_json(line)
                    if isinstance(event, PbxHealth):
                        self.correlator.pbx_health(event)
                    elif isinstance(event, ProxyReply):
                        self.correlator.proxy_reply(event)
                    else:
                        self.correlator.proxy(event)
                    applied = 1
                except BadEvent as exc:
                    self.bad += 1
                    self.last_error = f"{self.path} offset {offset}: {exc}"
                    log.warning("skipping proxy event line: %s", self.last_error)
            self.store.set_ingest_offset(self.name or self.path, inode, offset)
        self.applied += applied
        return applied
