"""`referee.events` is the only code that builds or parses an event line: no other module of the runtime or the
lab spells a key that only an event's JSON has (issue "Structure")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from referee import events

REPO = Path(__file__).resolve().parents[2]
# Keys of the event JSON that nothing else of referee has (a record's own JSON shares call_id, state, ...).
EVENT_ONLY_KEYS = frozenset(
    {"event", "forwarded_refer_to", "replaces_pbx", "subscription_state", "refer_cseq", "policy_version"}
)
# refer_cseq and policy_version are also columns and fields of the audit record.
RECORD_FIELD = {"audit/store.py", "audit/record.py", "api/openapi.py"}
SHARED_ELSEWHERE = {"refer_cseq": RECORD_FIELD, "policy_version": RECORD_FIELD}


def sources() -> list[Path]:
    found = [
        *sorted((REPO / "src" / "referee").rglob("*.py")),
        *sorted((REPO / "lab" / "referee_lab").rglob("*.py")),
    ]
    return [p for p in found if p != Path(events.__file__).resolve()]


def dict_keys(tree: ast.AST) -> set[str]:
    """String keys of dict displays and subscripts: what building or reading a JSON object spells."""
    keys: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys |= {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            if isinstance(node.slice.value, str):
                keys.add(node.slice.value)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", "") in ("get", "pop", "setdefault")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            keys.add(node.args[0].value)
    return keys


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_but_events_spells_an_event_key(path: Path) -> None:
    relative = path.relative_to(REPO / "src" / "referee") if "src" in path.parts else path
    allowed = {key for key, places in SHARED_ELSEWHERE.items() if str(relative) in places}
    spelled = dict_keys(ast.parse(path.read_text())) & (EVENT_ONLY_KEYS - allowed)
    assert not spelled, (
        f"{path.name} spells event keys {sorted(spelled)}: build or read events with referee.events"
    )


def test_the_check_finds_an_event_key() -> None:
    assert dict_keys(ast.parse('x = {"event": "refer.decision"}; y = raw["forwarded_refer_to"]')) >= {
        "event",
        "forwarded_refer_to",
    }
