"""Check plug-ins: what a scenario verifies beyond every phone's SIPp scenario passing.

Laid out like the Asterisk testsuite's pluggable modules: each module of this package is one check,
chosen by the tables of ``scenario.toml`` it owns, with the same four steps:

- ``load(scenario, data)`` (module level): the check the file's tables describe, or None when the file has
  none of them (``OWNS`` names the tables and keys the module reads: ``expect.ami``, ``operator``...);
- ``start(run)``: once the phones are registered, before they call (log in to an AMI, start a daemon);
- ``stop(run)``: once the phones are done, in reverse start order (join threads, stop the daemon);
- ``problems(run)`` and ``notes(run)``: once the capture, the proxy's events and the AMI events are in
  ``run`` (:class:`referee_lab.scenario.context.Run`): what went wrong, and what happened, as lines.

A check may also hold phones back (:class:`Gate`, ``hold(run, phone, timeout)``): the runner asks every
such check before it starts each phone (the faults check starts a phone once a PBX is down).

Adding a check is adding a module here: the runner knows none of them by name.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from referee_lab.scenario.context import Run


class Check(Protocol):
    def start(self, run: Run) -> None: ...
    def stop(self, run: Run) -> None: ...
    def problems(self, run: Run) -> list[str]: ...
    def notes(self, run: Run) -> list[str]: ...


@runtime_checkable
class Gate(Protocol):
    def hold(self, run: Run, phone: str, timeout: float) -> str:
        """Block until ``phone`` (a phone's name: its file) may start; why not, when it may not."""
        ...


def plugins() -> list[ModuleType]:
    """Every check module, in name order (the order checks start and report in)."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def claimed() -> list[str]:
    return [key for module in plugins() for key in module.OWNS]


def load(scenario: str, data: Mapping[str, Any]) -> tuple[Check, ...]:
    """The checks ``data`` (a parsed scenario.toml) chooses."""
    found = (module.load(scenario, data) for module in plugins())
    return tuple(check for check in found if check is not None)
