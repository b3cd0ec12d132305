"""A scenario as ``scenario.toml`` describes it: the phones, and the checks its other tables choose.

A scenario is a folder of ``tests/scenarios/``: ``scenario.toml`` and one SIPp file per phone
(``alice.xml``, ``bob.xml``...). The model reads ``summary``, ``description``, ``timeout``, the
``[[phones]]`` and ``registered`` (phones registered but not played); every other table or key
belongs to a check plug-in (:mod:`referee_lab.scenario.checks`), and one no plug-in claims is an
error, so a misspelt table fails the load instead of checking nothing.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from referee_lab.provision import REPO
from referee_lab.scenario import checks

SCENARIOS_DIR = REPO / "tests" / "scenarios"
OWN_KEYS = ("summary", "description", "timeout", "phones", "registered")
#: Tables whose keys are claimed one by one (``expect.ami``, ``actions.ami``...), not as a whole.
SHARED_TABLES = ("expect", "actions")

C = TypeVar("C")


@dataclass(frozen=True)
class PhoneSpec:
    """One SIPp process: a phone ``role`` playing ``{file}.xml`` (default ``{role}.xml``).

    A phone with two call legs runs two processes: the second one names its own ``file``, listens on
    another ``port`` of the phone's address, and both pass values through SIPp's 3PCC twin socket
    (``twin``, ``-3pcc ADDR:PORT``: the process whose first twin command is ``recvCmd`` listens there,
    so it starts first). ``calls``: how many calls the process takes before it ends (``-m``), for one
    scenario file that answers two calls.
    """

    role: str
    delay: float = 0.5
    timeout: float = 60.0
    file: str = ""
    port: int | None = None
    twin: str = ""
    calls: int = 1

    @property
    def name(self) -> str:
        return self.file or self.role


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    summary: str
    description: str
    phones: tuple[PhoneSpec, ...]
    checks: tuple[checks.Check, ...] = ()
    # Phones registered but not played: switched off after registering, nothing answers at their contact.
    registered: tuple[str, ...] = ()

    @property
    def timeout(self) -> float:
        """How long the phones may take, together."""
        return max(p.timeout for p in self.phones)

    def check(self, kind: type[C]) -> C | None:
        """The scenario's check of this class, if its tables chose one."""
        return next((c for c in self.checks if isinstance(c, kind)), None)


def discover(root: Path = SCENARIOS_DIR) -> list[Scenario]:
    return [load(p) for p in sorted(root.iterdir()) if (p / "scenario.toml").is_file()]


def load(path: Path) -> Scenario:
    data = tomllib.loads((path / "scenario.toml").read_text())
    name = path.name
    if unclaimed := sorted(set(_keys(data)) - set(OWN_KEYS) - set(checks.claimed())):
        raise ValueError(f"scenario {name}: no check knows {', '.join(unclaimed)}")
    if not data.get("phones"):
        raise ValueError(f"scenario {name}: no [[phones]]")
    phones = tuple(_phone(p, float(data.get("timeout", 60))) for p in data["phones"])
    names = [p.name for p in phones]
    if len(set(names)) != len(names):
        raise ValueError(f"scenario {name}: two phones play the same file; give one a `file`")
    for p in phones:
        if not (path / f"{p.name}.xml").is_file():
            raise ValueError(f"scenario {name}: no {p.name}.xml")
    return Scenario(
        name=name,
        path=path,
        summary=str(data.get("summary", "")),
        description=str(data.get("description", "")).strip(),
        phones=phones,
        checks=checks.load(name, data),
        registered=tuple(str(role) for role in data.get("registered", ())),
    )


def _phone(raw: Mapping[str, Any], timeout: float) -> PhoneSpec:
    return PhoneSpec(
        role=str(raw["role"]),
        delay=float(raw.get("delay", 0.5)),
        timeout=float(raw.get("timeout", timeout)),
        file=str(raw.get("file", "")).removesuffix(".xml"),
        port=int(raw["port"]) if "port" in raw else None,
        twin=str(raw.get("twin", "")),
        calls=int(raw.get("calls", 1)),
    )


def _keys(data: Mapping[str, Any]) -> list[str]:
    """The file's keys as plug-ins claim them: ``operator``, ``expect.audit``, ``actions.ami``..."""
    out = []
    for key, value in data.items():
        if key in SHARED_TABLES and isinstance(value, dict):
            out += [f"{key}.{sub}" for sub in value]
        else:
            out.append(key)
    return out
