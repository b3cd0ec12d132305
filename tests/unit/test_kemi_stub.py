"""The typed KSR stub names only functions Kamailio really exports, with the right arity.

``data/kemi_api_5.6.txt`` is ``kamcmd app_python.api_list`` of Kamailio 5.6.3 with the
modules kamailio.cfg.j2 loads.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from referee.kemi import ksr
from referee.testing.fake_ksr import FakeKSR

API = Path(__file__).with_name("data") / "kemi_api_5.6.txt"


def exported() -> dict[str, int]:
    """'module.name' (or 'name' for core functions) -> number of parameters."""
    functions = {}
    for line in API.read_text().splitlines():
        match = re.fullmatch(r"([\w.]+)\((.*)\) -> \w+", line)
        if match:
            params = match.group(2)
            functions[match.group(1)] = 0 if params == "none" else len(params.split(","))
    return functions


def stubbed() -> dict[str, int]:
    functions = {}
    for prop_name, prop in inspect.getmembers(ksr.KSR):
        if isinstance(prop, property):
            module = inspect.get_annotations(prop.fget, eval_str=True)["return"]  # type: ignore[arg-type]
            for name, func in inspect.getmembers(module, inspect.isfunction):
                if not name.startswith("_"):
                    functions[f"{prop_name}.{name}"] = len(inspect.signature(func).parameters) - 1
        elif inspect.isfunction(prop) and not prop_name.startswith("_"):
            functions[prop_name] = len(inspect.signature(prop).parameters) - 1
    return functions


def test_api_list_is_there() -> None:
    assert len(exported()) > 500
    assert exported()["is_method"] == 1


@pytest.mark.parametrize("name", sorted(stubbed()))
def test_stub_function_exists_in_kamailio(name: str) -> None:
    api = exported()
    assert name in api, f"KSR.{name} is not exported by Kamailio 5.6"
    assert stubbed()[name] == api[name], f"KSR.{name} takes {api[name]} parameters"


def test_stub_covers_what_the_adapter_calls() -> None:
    package = Path(ksr.__file__).parent
    source = "\n".join(path.read_text() for path in sorted(package.glob("*.py")))
    assert "self.k." in source  # the adapter is where we think it is
    called = set(re.findall(r"\bk\.(\w+(?:\.\w+)?)\(", source)) | set(
        re.findall(r"self\.k\.(\w+(?:\.\w+)?)\(", source)
    )
    called |= {f"htable.{n}" for n in re.findall(r"htable\.(\w+)\(", source)}
    missing = sorted(name for name in called if name not in stubbed())
    assert missing == []


def test_fake_implements_every_stub_function() -> None:
    fake = FakeKSR()
    for name, arity in stubbed().items():
        target: object = fake
        for part in name.split("."):
            target = getattr(target, part)
        assert callable(target), name
        assert len(inspect.signature(target).parameters) == arity, name  # type: ignore[arg-type]
