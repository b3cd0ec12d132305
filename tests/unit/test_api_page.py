"""The page (``/ui``), the ladder (``/transfers/{id}/ladder``) and the policy playground's endpoint
(``POST /policy/check``) over HTTP, on an audit store filled from the recorded lab runs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from http_raw import exchange, request
from recorded_store import filled_store

from referee.api.app import Api
from referee.api.http import HttpServer
from referee.api.page import ASSETS
from referee.orchestrator.api_service import OrchestratorService
from referee.orchestrator.operations import Orchestrator
from referee.policy import load_policy
from referee.policy.check import PolicyCheck

HOST = "127.0.3.9"
TOKEN = "t0k3n-for-the-page-tests"
POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.toml"
REFEREE = str(Path(sys.executable).with_name("referee"))

Http = Callable[..., Awaitable[tuple[int, dict[str, str], Any]]]


def with_page(tmp_path: Path, test: Callable[[Http], Awaitable[None]], *, policy: bool = True) -> None:
    store = filled_store(str(tmp_path / "audit.db"))
    checker = PolicyCheck(load_policy(POLICY)) if policy else None

    async def main() -> None:
        server = HttpServer(Api(OrchestratorService(Orchestrator(store), store), TOKEN, checker))
        _, port = await server.start(HOST, 0)

        async def http(method: str, path: str, body: Any = None, *, token: str | None = TOKEN) -> Any:
            return await exchange(HOST, port, request(method, path, token=token, body=body))

        try:
            await test(http)
        finally:
            await server.close()

    asyncio.run(asyncio.wait_for(main(), 30))  # a guard against hanging, not a timed assertion
    store.close()


def test_the_page_and_its_files_need_no_token_and_run_only_their_own_script(tmp_path: Path) -> None:
    async def check(http: Http) -> None:
        status, headers, body = await http("GET", "/ui", token=None)
        assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
        assert b'<script src="/ui/ui.js" defer></script>' in body and b'id="login"' in body
        policy = headers["content-security-policy"]
        assert "script-src 'self';" in policy and "unsafe-inline" not in policy
        assert headers["x-content-type-options"] == "nosniff"
        assert ASSETS == ["ui.css", "ui.js"]
        status, headers, body = await http("GET", "/ui/ui.js", token=None)
        assert (status, headers["content-type"]) == (200, "text/javascript; charset=utf-8")
        assert b"sessionStorage" in body and b"innerHTML" not in body  # the API's data only as text
        status, headers, _ = await http("GET", "/ui/ui.css", token=None)
        assert (status, headers["content-type"]) == (200, "text/css; charset=utf-8")
        for path in ("/ui/index.html", "/ui/nope.js", "/ui/../openapi.json", "/ui/ui.js/x"):
            status, _, body = await http("GET", path, token=None)
            assert status == 404 and "no such file" in body["error"], path
        status, headers, body = await http("POST", "/ui", {}, token=None)
        assert (status, headers["allow"]) == (405, "GET")

    with_page(tmp_path, check)


def test_the_ladder_is_an_svg_of_the_record(tmp_path: Path) -> None:
    async def check(http: Http) -> None:
        status, _, body = await http("GET", "/transfers/1/ladder", token=None)
        assert status == 401
        status, headers, body = await http("GET", "/transfers/1/ladder")
        assert (status, headers["content-type"]) == (200, "image/svg+xml; charset=utf-8")
        assert "script-src" not in headers["content-security-policy"]  # default-src 'none': no script
        root = ET.fromstring(body)
        shown = ["".join(node.itertext()) for node in root.iter("{http://www.w3.org/2000/svg}text")]
        assert "REFER <sip:1003@lab.test>" in shown and "NOTIFY (200 OK)" in shown
        status, _, body = await http("GET", "/transfers/99/ladder")
        assert (status, body["error"]) == (404, "no transfer 99")
        status, headers, _ = await http("POST", "/transfers/1/ladder")
        assert (status, headers["allow"]) == (405, "GET")

    with_page(tmp_path, check)


PREMIUM = {"referrer": "sip:1002@lab.test", "refer_to": "<sip:09001234567@lab.test>"}


def test_the_policy_check_is_what_the_command_line_says(tmp_path: Path) -> None:
    async def check(http: Http) -> None:
        status, _, body = await http("POST", "/policy/check", PREMIUM, token=None)
        assert status == 401
        status, _, body = await http("POST", "/policy/check", PREMIUM)
        assert status == 200
        assert (body["allowed"], body["status"], body["rule"]) == (False, 403, "prefixes:deny:+449")
        assert body["trace"][-1] == {
            "rule": "prefixes:deny:+449",
            "outcome": "reject",
            "detail": "403 Transfer to +449001234567 denied: premium-rate (09)",
        }
        command = [REFEREE, "policy", "check", "--policy", str(POLICY), "--referrer", PREMIUM["referrer"]]
        cli = subprocess.run(
            [*command, "--json", PREMIUM["refer_to"]],
            capture_output=True,
            text=True,
            check=False,
        )
        assert cli.returncode == 1 and json.loads(cli.stdout) == body
        status, _, body = await http(
            "POST", "/policy/check", {**PREMIUM, "refer_to": "<sip:1003@lab.test>", "depth": 1, "dialogs": []}
        )
        assert (status, body["allowed"], body["refer_to"]) == (200, True, "<sip:1003@127.0.0.20:5060>")

    with_page(tmp_path, check)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (None, 422, "must be a JSON object"),
        ([PREMIUM], 422, "must be a JSON object"),
        ({"refer_to": "<sip:1003@lab.test>"}, 422, "referrer must be a non-empty string"),
        ({**PREMIUM, "refer_to": ""}, 422, "refer_to must be a non-empty string"),
        ({**PREMIUM, "referrer": 7}, 422, "referrer must be a non-empty string"),
        ({**PREMIUM, "explain": True}, 422, "unknown field(s): explain"),
        ({**PREMIUM, "depth": -1}, 422, "depth must be a whole number from 0 to 1000"),
        ({**PREMIUM, "depth": True}, 422, "depth must be a whole number"),
        ({**PREMIUM, "depth": 1.5}, 422, "depth must be a whole number"),
        ({**PREMIUM, "dialogs": "a;b;c"}, 422, "dialogs must be a list"),
        ({**PREMIUM, "dialogs": [1]}, 422, "dialogs must be strings"),
        ({**PREMIUM, "dialogs": ["a;b"]}, 422, "dialog must be CALL-ID;TAG;TAG, got 'a;b'"),
        ({**PREMIUM, "dialogs": ["a;b;c"] * 17}, 422, "at most 16"),
        (b"{nope", 400, "not valid JSON"),
    ],
)
def test_a_bad_policy_check_gets_a_4xx_with_a_message(
    tmp_path: Path, body: Any, status: int, message: str
) -> None:
    async def check(http: Http) -> None:
        got, _, answer = await http("POST", "/policy/check", body)
        assert got == status, answer
        assert message in answer["error"]

    with_page(tmp_path, check)


def test_without_a_policy_the_check_says_so(tmp_path: Path) -> None:
    async def check(http: Http) -> None:
        status, _, body = await http("POST", "/policy/check", PREMIUM)
        assert status == 503
        assert body["error"] == "no policy is configured: start referee orchestrator with --policy FILE"
        status, _, body = await http("POST", "/policy/check", PREMIUM, token=None)
        assert status == 401  # the token first: nobody learns anything about the daemon without it

    with_page(tmp_path, check, policy=False)
