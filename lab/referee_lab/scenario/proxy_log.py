"""The proxy's event file, read back as :mod:`referee.events` records (the lab knows no JSON key of them).

A run notes where the file ends when it starts (:func:`position`: inode and size) and reads the events
written since (:func:`read`); a file rotated meanwhile (another inode) is read from its start.
"""

from __future__ import annotations

import os
from pathlib import Path

from referee.events import BadEvent, Event, ReferDecision, from_json

PROXY_EVENTS = "/var/log/referee/events.jsonl"  # kamailio__events_file, inside the rootfs

Position = tuple[int, int]  # (inode, size); (0, 0) when there is no file yet


def path_in(root: Path) -> Path:
    """The proxy's event file in the rootfs ``root``."""
    return root / PROXY_EVENTS.lstrip("/")


def position(path: Path) -> Position:
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0)
    return (st.st_ino, st.st_size)


def read(path: Path, start: Position) -> list[Event]:
    """The events written since ``start``; lines that are no event (a torn last line) are left out."""
    try:
        f = path.open("rb")
    except OSError:
        return []
    with f:
        inode, offset = start
        if os.fstat(f.fileno()).st_ino == inode:
            f.seek(offset)
        lines = f.read().splitlines()
    events = []
    for line in lines:
        try:
            events.append(from_json(line))
        except BadEvent:
            continue
    return events


def describe(event: Event) -> str:
    """A REFER decision as a note line (empty for the other events)."""
    if not isinstance(event, ReferDecision):
        return ""
    verdict = "allowed" if event.allowed else "refused"
    line = (
        f"proxy: REFER from {event.referrer} to {event.refer_to}: {verdict} "
        f"{event.status} {event.reason} [rule {event.rule}]"
    )
    if event.allowed:
        line += f" -> {event.forwarded_refer_to}"
    return line
