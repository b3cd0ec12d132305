from __future__ import annotations

from pathlib import Path

import pytest

from referee import demo

REPO = Path(__file__).resolve().parents[2]


def test_demo_table_shows_both_verdicts(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main([]) == 0
    out = capsys.readouterr().out
    assert out.count("ALLOW  ->") + out.count("REJECT ") == len(demo.CASES)
    assert "REJECT 403 Transfer to +449001234567 denied: premium-rate (09)" in out
    assert "ALLOW  -> <sip:1003@127.0.0.20:5060>" in out


def test_demo_with_a_bad_policy_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["/nonexistent/policy.toml"]) == 3
    assert "cannot read" in capsys.readouterr().err


def test_the_packaged_example_is_the_checkouts_example() -> None:
    # referee/data/policy.toml ships in the wheel; examples/policy.toml is the one people read and edit.
    assert demo.EXAMPLE.read_text() == (REPO / "examples" / "policy.toml").read_text()
