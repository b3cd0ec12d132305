"""The transfers page in a real browser: Debian's chromium, driven headless by selenium through Debian's
chromedriver (``make deps`` installs both, the dev extra selenium).

The server is the real daemon, ``referee orchestrator``, started here on 127.0.4.1 and stopped by its PID,
on an audit database filled from the lab's recorded runs (tests/unit/data/; see recorded_store.py), with
the lab's policy for the playground. Its PBX is an address nobody answers on: the page needs none.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from recorded_store import HOSTILE_FROM, HOSTILE_REFER_TO, filled_store, proxy_lines
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
REFEREE = str(Path(sys.executable).with_name("referee"))
TOKEN = "t0k3n-for-the-browser-test"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT = 30.0  # a bound for a loaded machine: every wait is for a condition, never for a time


class Daemon:
    def __init__(self, tmp_path: Path) -> None:
        self.events = tmp_path / "events.jsonl"
        self.events.write_text("")
        (tmp_path / "api.token").write_text(TOKEN + "\n")
        command = [
            REFEREE, "orchestrator",
            "--pbx", "pbx1=ami://referee:secret@127.0.4.2:9",
            "--db", str(tmp_path / "audit.db"),
            "--events", str(self.events),
            "--api", "127.0.4.1:0",
            "--token-file", str(tmp_path / "api.token"),
            "--policy", str(ROOT / "examples" / "policy.toml"),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("REFEREE_")}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the daemon prints it once it listens (or dies: "")
        assert "API on http://" in line, self.process.stderr.read() if self.process.stderr else line
        self.url = line.split("API on ", 1)[1].split(",", 1)[0]

    def stop(self) -> int:
        os.kill(self.process.pid, signal.SIGTERM)
        return self.process.wait(WAIT)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    filled_store(str(tmp_path / "audit.db")).close()
    running = Daemon(tmp_path)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.stop()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    for program in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(program), (
            f"{program} is missing: `make deps` installs chromium and chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1680,1050"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: WebDriver, condition: object, what: str) -> object:
    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(condition, message=what)  # type: ignore[arg-type]


def rows(driver: WebDriver) -> list[list[str]]:
    """The list's cells, read at once (the page draws the list again when it changes)."""
    script = (
        "return [...document.querySelectorAll('#transfers tbody tr')]"
        ".map(r => [...r.cells].map(c => c.textContent))"
    )
    return list(driver.execute_script(script))


def ladder_texts(driver: WebDriver) -> list[str]:
    """The ladder's labels, whole: a label cut to fit carries its whole text in a tooltip (its title)."""
    script = (
        "return [...document.querySelectorAll('#ladder svg text')]"
        ".map(t => (t.querySelector('title') || t).textContent)"
    )
    return list(driver.execute_script(script))


def open_ladder(driver: WebDriver, transfer_id: int) -> list[str]:
    driver.find_element(By.CSS_SELECTOR, f'#transfers tbody tr[data-id="{transfer_id}"]').click()
    until(
        driver,
        lambda d: f"transfer {transfer_id}:" in " ".join(ladder_texts(d)),
        f"the ladder of {transfer_id}",
    )
    return ladder_texts(driver)


def log_in(driver: WebDriver, token: str) -> None:
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()


def test_the_page_lists_the_transfers_draws_their_ladders_and_checks_the_policy(
    daemon: Daemon, browser: WebDriver, tmp_path: Path
) -> None:
    browser.get(daemon.url + "/ui")
    assert browser.find_element(By.ID, "login").is_displayed()
    assert not browser.find_element(By.ID, "main").is_displayed()

    log_in(browser, "not-the-token-at-all")
    until(
        browser, lambda d: "refused the token" in d.find_element(By.ID, "login-error").text, "a refused token"
    )
    assert browser.execute_script("return sessionStorage.length") == 0
    log_in(browser, TOKEN)
    until(browser, lambda d: len(rows(d)) == 3, "the three recorded transfers")

    listed = rows(browser)
    assert [row[:4] for row in listed] == [
        ["3", "failed", "blind", "refer"],
        ["2", "completed", "attended", "refer"],
        ["1", "completed", "blind", "refer"],
    ]
    assert listed[2][4:6] == ["sip:1002@lab.test", "<sip:1003@127.0.0.20:5060>"]
    assert listed[2][8] == "pbx: BlindTransfer Success + target bridged"  # what the outcome rests on
    assert listed[0][4:6] == [HOSTILE_FROM, HOSTILE_REFER_TO]  # shown as text...
    assert browser.execute_script("return window.pwned") is None  # ...and never run

    shown = open_ladder(browser, 1)
    assert "REFER <sip:1003@lab.test>" in shown and "ALLOW rule pbx1-extensions" in shown
    assert "NOTIFY (200 OK)" in shown
    assert "BlindTransfer" in " ".join(shown)
    hostile = open_ladder(browser, 3)
    assert f"REFER {HOSTILE_REFER_TO}" in hostile and "403 Transfer target not served here" in hostile
    assert browser.execute_script("return window.pwned") is None
    assert browser.execute_script("return document.scripts.length") == 1  # ui.js, nothing the ladder brought
    assert HOSTILE_FROM in browser.find_element(By.ID, "parties").text

    browser.find_element(By.ID, "referrer").send_keys("sip:1002@lab.test")
    browser.find_element(By.ID, "refer-to").send_keys("<sip:09001234567@lab.test>")
    browser.find_element(By.CSS_SELECTOR, "#check button").click()
    until(browser, lambda d: "REJECT" in d.find_element(By.ID, "verdict").text, "the playground's verdict")
    verdict = browser.find_element(By.ID, "verdict").text
    assert "REJECT 403 Transfer to +449001234567 denied: premium-rate (09)" in verdict
    assert "rule prefixes:deny:+449" in verdict
    trace = browser.find_element(By.ID, "trace").text
    assert "number rewrite 09001234567 -> +449001234567" in trace
    assert "prefixes:deny:+449 reject" in trace

    # live: a transfer the proxy logs now shows up without reloading the page
    with daemon.events.open("a") as events:
        for line in proxy_lines("recorded_blind_refer"):
            events.write(json.dumps({**json.loads(line), "call_id": "live-call@127.0.0.32"}) + "\n")
    until(browser, lambda d: len(rows(d)) == 4, "the transfer the proxy just logged")
    assert rows(browser)[0][:2] == ["4", "completed"]

    open_ladder(browser, 1)
    screenshot = Path(os.environ.get("REFEREE_UI_SCREENSHOT", str(tmp_path / "transfers.png")))
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000

    browser.find_element(By.ID, "logout").click()
    assert browser.find_element(By.ID, "login").is_displayed()
    assert browser.execute_script("return sessionStorage.length") == 0
    assert daemon.stop() == 0
