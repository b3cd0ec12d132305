"""The transfers page after a lab run, in a real browser (Debian's chromium through chromedriver).

The page is served by pbx1's orchestrator, the lab's own (its API on 127.0.0.20:8090), over the site's
PostgreSQL audit that the scenarios of test_lab_e2e.py filled (this module runs after it). The browser
helpers are tests/unit/test_ui_browser.py's, which checks the same page over recorded runs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from test_ui_browser import browser, log_in, open_ladder, rows, until

from referee.api.client import call
from referee_lab import hosts, topology

pytestmark = pytest.mark.lab

__all__ = ["browser"]  # the fixture, imported for this module's test


@pytest.fixture
def orchestrator(lab: object) -> Iterator[hosts.OrchestratorHost]:
    pbx1 = next(p for p in topology.load().pbxs if p.name == "pbx1")
    yield hosts.orchestrator_host(pbx1)


def test_the_page_lists_the_lab_runs_transfers_and_draws_their_ladders(
    orchestrator: hosts.OrchestratorHost, browser: WebDriver
) -> None:
    recorded = call(orchestrator.base, orchestrator.token, "GET", "/transfers?limit=200")["transfers"]
    blind_done = [t for t in recorded if t["flow"] == "blind" and t["state"] == "completed"]
    assert blind_done, "the scenarios leave at least one completed blind transfer in the audit"

    browser.get(orchestrator.base + "/ui")
    log_in(browser, orchestrator.token)
    until(browser, lambda d: len(rows(d)) == len(recorded), f"the {len(recorded)} transfers of the lab run")
    listed = {row[0]: row for row in rows(browser)}
    assert set(listed) == {str(t["id"]) for t in recorded}
    for transfer in recorded:
        assert listed[str(transfer["id"])][1:3] == [transfer["state"], transfer["flow"] or "-"]

    shown = " ".join(open_ladder(browser, blind_done[0]["id"]))
    assert "REFER <sip:" in shown and "ALLOW rule" in shown
    assert "NOTIFY (200 OK)" in shown

    browser.find_element(By.ID, "referrer").send_keys("sip:1002@lab.test")
    browser.find_element(By.ID, "refer-to").send_keys("<sip:09001234567@lab.test>")
    browser.find_element(By.CSS_SELECTOR, "#check button").click()
    until(browser, lambda d: "REJECT" in d.find_element(By.ID, "verdict").text, "the playground's verdict")
    assert "rule prefixes:deny:+449" in browser.find_element(By.ID, "verdict").text
