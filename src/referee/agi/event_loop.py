"""Which event loop runs ``referee fastagi``: uvloop when it is installed (``referee[fast]``), else asyncio's.

A guard session is one accept, two reads, one write and a close; the loop's own machinery for these is
most of a session's CPU, and uvloop (libuv, in C) does it for less than asyncio's selector loop in Python.
The server is the same on either (``asyncio.BufferedProtocol``, timers, tasks: uvloop implements them
all), so uvloop is optional: ``--loop auto`` (the default) uses it when it imports, ``--loop asyncio``
never does (an operator's way out), ``--loop uvloop`` insists on it.

asyncio is imported when a loop is made, not with this module: ``referee policy ...`` parses the same
command line (``--loop``'s choices) and should not pay for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncio

LOOPS = ("auto", "asyncio", "uvloop")

T = TypeVar("T")


class LoopUnavailable(Exception):
    """``--loop uvloop`` without uvloop installed."""


def loop_factory(choice: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The loop ``choice`` (one of :data:`LOOPS`) stands for: its name and how to make one."""
    if choice not in LOOPS:
        raise ValueError(f"event loop {choice!r}: one of {', '.join(LOOPS)}")
    if choice != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError as err:
            if choice == "uvloop":
                raise LoopUnavailable(f"uvloop is not installed ({err}): install referee[fast]") from err
        else:
            new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return "uvloop", new_loop
    import asyncio  # noqa: PLC0415

    return "asyncio", asyncio.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """What the logs call a running loop: "uvloop" or "asyncio"."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run(main: Coroutine[Any, Any, T], factory: Callable[[], asyncio.AbstractEventLoop]) -> T:
    """``asyncio.run(main)`` on a loop from ``factory`` (``asyncio.Runner`` exists since Python 3.11)."""
    import asyncio  # noqa: PLC0415

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
