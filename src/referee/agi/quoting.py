"""Quoting AGI command arguments, for the process AGI and the FastAGI server alike."""

from __future__ import annotations

import re

MAX_VALUE = 512
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def agi_quote(value: str, limit: int = MAX_VALUE) -> str:
    """One AGI command argument, quoted for res_agi's parser.

    Neither pyst2's ``AGI._quote`` nor panoramisk escapes anything: a ``"`` in a value ends
    the argument early, and a newline ends the command and starts another one (command
    injection from a Refer-To). res_agi reads ``\\"`` and ``\\\\`` as literals inside quotes;
    control characters have no escape, so they become spaces. Values are cut to ``limit`` characters
    (512 by default: a command line, escapes included, stays within res_agi's 2,048-byte buffer).
    """
    text = _CONTROL.sub(" ", value[:limit])  # one regex pass: a per-character loop cost more than the rest
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
