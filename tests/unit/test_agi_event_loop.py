"""referee.agi.event_loop: which loop ``--loop`` stands for, with and without uvloop installed."""

from __future__ import annotations

import asyncio
import sys

import pytest

from referee.agi.event_loop import LoopUnavailable, loop_factory, loop_name, run


async def running_loop() -> str:
    return loop_name(asyncio.get_running_loop())


@pytest.mark.parametrize(
    ("choice", "expected"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")]
)
def test_each_choice_runs_on_its_loop_when_uvloop_is_installed(choice: str, expected: str) -> None:
    name, factory = loop_factory(choice)
    assert name == expected
    assert run(running_loop(), factory) == expected


def test_without_uvloop_auto_is_asyncio_and_uvloop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    name, factory = loop_factory("auto")
    assert name == "asyncio"
    assert run(running_loop(), factory) == "asyncio"
    with pytest.raises(LoopUnavailable, match=r"uvloop is not installed .*referee\[fast\]"):
        loop_factory("uvloop")


def test_an_unknown_loop_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="one of auto, asyncio, uvloop"):
        loop_factory("trio")
