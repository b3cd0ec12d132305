"""Quoting AGI command arguments, for the process AGI and the FastAGI server alike."""

from __future__ import annotations

MAX_VALUE = 512


def agi_quote(value: str, limit: int = MAX_VALUE) -> str:
    """One AGI command argument, quoted for res_agi's parser.

    Neither pyst2's ``AGI._quote`` nor panoramisk escapes anything: a ``"`` in a value ends
    the argument early, and a newline ends the command and starts another one (command
    injection from a Refer-To). res_agi reads ``\\"`` and ``\\\\`` as literals inside quotes;
    control characters have no escape, so they become spaces. Values are cut to ``limit`` characters
    (512 by default: a command line, escapes included, stays within res_agi's 2,048-byte buffer).
    """
    text = "".join(ch if ch >= " " and ch != "\x7f" else " " for ch in value[:limit])
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
