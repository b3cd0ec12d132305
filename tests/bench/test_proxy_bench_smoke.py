"""Smoke test of `make bench-proxy`: each benchmark once, briefly, through the real Kamailio and SIPp
(127.0.1.70-.79). The benchmark raises when SIPp fails otherwise than on calls whose UDP message another
overtook; no figure is asserted."""

from __future__ import annotations

import call_mix
import proxy_configs
import proxy_refer_ratio
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def runs_not_rates(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 20-call run has every call in flight at once, where overtaken messages fail a larger share than the
    2% a benchmark run tolerates (3 of 20 in one run of eight): the smoke proves the runs work, not their rates."""
    monkeypatch.setattr(proxy_configs, "TOLERATED_FAILURES", 0.5)


def test_call_mix_runs_every_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert call_mix.main(["call_mix.py", "20", "1"]) == 0  # 20 calls: 4 REGISTER refreshes, 2 REFERs
    out = capsys.readouterr().out
    for config in call_mix.CONFIGS:
        assert f"{config:<28} run 1, calls:" in out
    assert "B stock+referee / A stock" in out
    assert "C referee native / A stock" in out and "D referee KEMI / A stock" in out
    assert "E referee native, in memory / A stock" in out


def test_refer_only_runs_every_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert proxy_refer_ratio.main(["proxy_refer_ratio.py", "50", "1"]) == 0
    out = capsys.readouterr().out
    for config in (
        "pass-through KEMI",
        "referee KEMI",
        "pass-through native",
        "referee native",
        "stock",
        "stock+referee",
    ):
        assert f"{config:<24} run 1, REFERs:" in out
    assert "referee KEMI / pass-through KEMI" in out
    assert "referee native / pass-through native" in out
    assert "stock+referee / stock" in out
