"""docs/policy.md stays true: its policy examples load, and it documents every key the loader reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from referee.policy import parse_policy

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "policy.md").read_text()
LOADER = (ROOT / "src" / "referee" / "policy" / "loader.py").read_text()
EXAMPLES = [block for block in re.findall(r"```toml\n(.*?)```", DOC, re.S) if "[[tenants]]" in block]


@pytest.mark.parametrize("text", EXAMPLES)
def test_policy_examples_in_the_docs_load(text: str) -> None:
    parse_policy(text)


def test_every_key_the_loader_reads_is_documented() -> None:
    # The loader reads keys by name as the first argument of its typed getters: .string("id", ...).
    keys = set(
        re.findall(r'\.(?:string|choice|boolean|integer|strings|table|tables)\(\s*"([a-z_]+)"', LOADER)
    )
    keys |= set(re.findall(r'_uri\(\w+, "([a-z_]+)"', LOADER))
    assert {"allowed_uri_parameters", "on_uri_parameter", "allowed_transports", "referrer"} <= keys
    # a key is documented as `key`, or as a table heading: `[policy]`, `[[tenants]]`, `[[tenants.extensions]]`
    spellings = ("`{}`", "`[{}]`", "`[[{}]]`", ".{}]")
    missing = sorted(key for key in keys if not any(form.format(key) in DOC for form in spellings))
    assert missing == []
