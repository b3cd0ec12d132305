"""A short run of the REFER fuzz against the real proxy; `make fuzz-proxy` sends 10,000."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))

import refer_proxy


def test_mutated_refers_are_answered_and_the_proxy_still_decides(tmp_path: Path) -> None:
    result = refer_proxy.fuzz(600, tmp_path)
    assert result.findings == [], result.findings[:5]
    assert result.sent == 600
    assert result.parseable == result.answered > 250
    # The mutations reach the policy (403), its syntax checks (400/416) and past it (404: not registered).
    assert {400, 403, 404} <= set(result.statuses)
