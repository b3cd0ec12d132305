"""Helpers of the root-free lab tests."""

from __future__ import annotations

from pathlib import Path

from referee_lab import scenario


def load_scenario(folder: Path, tables: str) -> scenario.Scenario:
    """A scenario folder with bob as its one phone and ``tables`` after the phones, loaded."""
    (folder / "bob.xml").write_text("<scenario/>")
    (folder / "scenario.toml").write_text('[[phones]]\nrole = "bob"\n' + tables)
    return scenario.load(folder)
