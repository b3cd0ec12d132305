"""Load the AMI traces under tests/unit/data/ami/ (raw AMI text; see the README there)."""

from __future__ import annotations

from pathlib import Path

from referee.orchestrator.amitext import AmiMessage, parse_messages

DATA = Path(__file__).resolve().parent / "data" / "ami"

ALICE, BOB, CAROL = "1764000000.0", "1764000000.1", "1764000000.2"
LOCAL1, LOCAL2, CAROL2, BOB2, CAROL3 = (
    "1764000000.3",
    "1764000000.4",
    "1764000000.5",
    "1764000000.6",
    "1764000000.7",
)


def trace(name: str) -> list[AmiMessage]:
    return parse_messages((DATA / name).read_text())


def text(name: str) -> str:
    return (DATA / name).read_text()
