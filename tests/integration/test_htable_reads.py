"""A Kamailio htable value read under its slot's lock is never torn (referee.kemi.shared_table).

Two rtimer processes of a real Kamailio race on one key (htable_race/race.py): one flips it between
a short and a long value, the other reads it, first with a plain ``sht_get``, then with
``shared_table.read``. Plain reads return freed or half-rewritten memory now and then (Kamailio's
``ht_cell_pkg_copy`` hands out a pointer into the shared cell); the locked ones must never.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import harness
import pytest

RACE = Path(__file__).with_name("htable_race")


def test_locked_reads_never_see_a_torn_value(tmp_path: Path) -> None:
    if not harness.have_tools():
        pytest.fail("kamailio and sipp are needed (make deps installs them)")
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text((RACE / "kamailio.cfg").read_text().replace("REFEREE_RACE_SCRIPT", str(RACE / "race.py")))
    kamailio = harness.Kamailio(tmp_path, cfg, address="127.0.1.70", ping_from="127.0.1.79")
    kamailio.start()
    try:
        reads = tmp_path / "reads.json"
        deadline = time.monotonic() + 20
        while not reads.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reads.exists(), f"the reader wrote nothing:\n{kamailio.log()}"
        result = json.loads(reads.read_text())
    finally:
        kamailio.stop()
    print(f"plain sht_get: {result['unlocked']}; shared_table.read: {result['locked']}")
    assert "the writer set the key" in kamailio.log()  # the writer ran, and stopped by itself
    assert result["locked"]["reads"] > 1000  # it raced the writer for its whole time
    assert result["locked"]["bad"] == 0, result["locked"]["examples"]
