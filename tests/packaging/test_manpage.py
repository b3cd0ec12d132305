"""referee(1) is generated from the parser: the committed page must be what the parser gives today."""

from __future__ import annotations

import subprocess

from referee import manpage
from referee.assets import path


def test_the_committed_man_page_matches_the_parser() -> None:
    assert path("man/referee.1").read_text() == manpage.render(), (
        "the man page is stale: python -m referee.manpage src/referee/data/man/referee.1"
    )


def test_every_command_has_a_section_and_the_lab_none() -> None:
    page = manpage.render()
    for command in ("policy check", "fastagi", "orchestrator", "audit ingest", "transfers show", "assets"):
        assert f'.SS "referee {command}"' in page
    assert '.SS "referee lab' not in page


def test_groff_renders_it_without_warnings() -> None:
    done = subprocess.run(
        ["groff", "-man", "-ww", "-z"], input=manpage.render(), capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_roff_escapes_what_would_be_requests() -> None:
    assert manpage.roff(".policy -x \\n") == "\\&.policy \\-x \\en"
