"""The import structure of src/referee, read with ast (every import, also inside functions and try):

- no cycle between referee's parts (a part is a subpackage, ``referee.audit``, or a top-level
  module, ``referee.service``);
- the core (``referee.sip``, ``referee.policy``, ``referee.events``: Kamailio's embedded Python
  imports it) imports nothing of referee outside the core;
- nothing imports the lab (``referee.lab``, ``referee_lab``) but the top-level CLI's one optional
  dispatch of ``referee lab``. (While the lab still lives in src/referee/lab, its own modules
  importing each other are the lab itself, not an import of it.)
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
CORE = frozenset({"referee.sip", "referee.policy", "referee.events"})
LAB = ("referee.lab", "referee_lab")
LAB_DISPATCH = "referee.cli"  # the one module that may import the lab


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, referee.orchestrator.tracker
    target: str  # what it imports, referee.audit.store
    line: int


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(src: Path, package: str = "referee") -> Iterator[Import]:
    for path in sorted((src / package).rglob("*.py")):
        module = module_name(path, src)
        here = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(module, alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                if base == package:  # from referee import events: the submodule is the target
                    for alias in node.names:
                        yield Import(module, f"{package}.{alias.name}", node.lineno)
                else:
                    yield Import(module, base, node.lineno)


def part(name: str) -> str:
    """referee.orchestrator.tracker -> referee.orchestrator; referee -> referee."""
    return ".".join(name.split(".")[:2])


def is_lab(name: str) -> bool:
    return any(name == lab or name.startswith(lab + ".") for lab in LAB)


def graph(found: list[Import]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for imp in found:
        if imp.target.split(".")[0] == "referee" and part(imp.module) != part(imp.target):
            edges.setdefault(part(imp.module), set()).add(part(imp.target))
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of parts (depth-first, small graphs)."""
    found: list[list[str]] = []
    seen: set[str] = set()

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt in path:
                cycle = [*path[path.index(nxt) :], nxt]
                if not any(set(cycle) <= set(other) for other in found):
                    found.append(cycle)
            elif nxt not in seen:
                walk(nxt, [*path, nxt])
        seen.add(node)

    for start in sorted(edges):
        walk(start, [start])
    return found


def core_violations(found: list[Import]) -> list[str]:
    return [
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in found
        if part(imp.module) in CORE
        and imp.target.split(".")[0] in ("referee", "referee_lab")
        and part(imp.target) not in CORE
    ]


def lab_violations(found: list[Import]) -> list[str]:
    bad = [
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in found
        if is_lab(imp.target) and not is_lab(imp.module) and imp.module != LAB_DISPATCH
    ]
    dispatch = {imp.line for imp in found if imp.module == LAB_DISPATCH and is_lab(imp.target)}
    if len(dispatch) > 1:
        bad.append(
            f"{LAB_DISPATCH} imports the lab {len(dispatch)} times (lines {sorted(dispatch)}): once at most"
        )
    return bad


# -- the rules on src/referee -----------------------------------------------------------------

FOUND = list(imports(SRC))


def test_the_walk_sees_the_imports() -> None:
    edges = graph(FOUND)
    assert "referee.audit" in edges["referee.orchestrator"]
    assert "referee.orchestrator" in edges["referee.service"]
    assert any(
        imp.module == "referee.policy.engine" and imp.target.startswith("referee.sip") for imp in FOUND
    )


def test_no_cycle_between_referees_parts() -> None:
    assert cycles(graph(FOUND)) == []


def test_the_core_imports_nothing_else_of_referee() -> None:
    assert core_violations(FOUND) == []


# Kamailio's embedded Python imports these with no virtualenv: prometheus-client is not there.
STDLIB_ONLY = (*CORE, "referee.kemi")


def third_party_violations(found: list[Import], package: str) -> list[str]:
    return [
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in found
        if imp.target.split(".")[0] == package
        and any(imp.module == part_ or imp.module.startswith(part_ + ".") for part_ in STDLIB_ONLY)
    ]


def test_prometheus_client_stays_out_of_the_core_and_the_kemi_adapter() -> None:
    assert any(imp.target.startswith("prometheus_client") for imp in FOUND)  # the walk sees it at all
    assert third_party_violations(FOUND, "prometheus_client") == []


def test_a_core_import_of_prometheus_client_is_found(tmp_path: Path) -> None:
    found = write(
        tmp_path,
        {
            "referee/__init__.py": "",
            "referee/events.py": "def f():\n    import prometheus_client\n",
            "referee/kemi/metrics.py": "from prometheus_client import Counter\n",
        },
    )
    assert third_party_violations(found, "prometheus_client") == [
        "referee.events:2 imports prometheus_client",
        "referee.kemi.metrics:1 imports prometheus_client",
    ]


def test_only_the_top_level_cli_may_import_the_lab() -> None:
    assert lab_violations(FOUND) == []


def test_the_api_does_not_reach_into_the_daemon_and_the_wiring_is_on_top() -> None:
    edges = graph(FOUND)
    # The rest comes through its TransferService; slots (connection caps) is a leaf, like the core.
    assert edges["referee.api"] <= {"referee.events", "referee.slots"}
    assert not edges.get("referee.slots")
    assert {source for source, targets in edges.items() if "referee.service" in targets} == {"referee.cli"}


# -- the checks themselves, on a made-up package ---------------------------------------------


def write(root: Path, files: dict[str, str]) -> list[Import]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(imports(root))


def test_a_cycle_through_a_relative_and_a_function_level_import_is_found(tmp_path: Path) -> None:
    found = write(
        tmp_path,
        {
            "referee/__init__.py": "",
            "referee/api/__init__.py": "",
            "referee/api/app.py": "from ..orchestrator import operations\n",
            "referee/orchestrator/__init__.py": "",
            "referee/orchestrator/operations.py": "def f():\n    from referee.api.app import x\n",
            "referee/audit.py": "from referee import events\n",
            "referee/events.py": "",
        },
    )
    assert cycles(graph(found)) == [["referee.api", "referee.orchestrator", "referee.api"]]
    assert graph(found)["referee.audit"] == {"referee.events"}


def test_a_core_import_of_anything_else_is_found(tmp_path: Path) -> None:
    found = write(
        tmp_path,
        {
            "referee/__init__.py": "",
            "referee/policy/__init__.py": "from referee.sip import parse\n",
            "referee/policy/engine.py": "try:\n    from referee.audit import store\nexcept ImportError:\n    pass\n",
        },
    )
    assert core_violations(found) == ["referee.policy.engine:2 imports referee.audit"]


@pytest.mark.parametrize("target", ["referee.lab.topology", "referee_lab", "referee_lab.cli"])
def test_an_import_of_the_lab_is_found_outside_the_one_dispatch(tmp_path: Path, target: str) -> None:
    found = write(
        tmp_path,
        {
            "referee/__init__.py": "",
            "referee/cli.py": f"try:\n    import {target}\nexcept ImportError:\n    pass\n",
            "referee/orchestrator/settings.py": f"def lab():\n    import {target}\n",
        },
    )
    assert lab_violations(found) == [f"referee.orchestrator.settings:2 imports {target}"]
    found += write(tmp_path, {"referee/cli.py": f"import {target}\nimport {target}\n"})
    assert any("once at most" in problem for problem in lab_violations(list(imports(tmp_path))))
