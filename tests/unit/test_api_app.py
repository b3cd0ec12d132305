"""The operator API over HTTP, against an orchestrator on a fake AMI: routes, token, errors, OpenAPI."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from http_raw import exchange, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from orchestrator_fixture import Rig, make_rig

from referee.api.app import Api
from referee.api.http import HttpServer
from referee.api.openapi import document
from referee.orchestrator.api_service import OrchestratorService
from referee.policy import load_policy
from referee.policy.check import PolicyCheck

HOST = "127.0.3.2"
TOKEN = "t0k3n-for-the-api-tests"


class Client:
    def __init__(self, rig: Rig, port: int) -> None:
        self.rig = rig
        self.port = port

    async def __call__(
        self, method: str, path: str, body: Any = None, *, token: str | None = TOKEN, **kw: Any
    ) -> tuple[int, dict[str, str], Any]:
        return await exchange(HOST, self.port, request(method, path, token=token, body=body, **kw))


def with_api(tmp_path: Path, test: Any) -> None:
    async def main() -> None:
        rig = await make_rig(tmp_path, host="127.0.3.5")
        policy = PolicyCheck(load_policy(Path(__file__).resolve().parents[2] / "examples" / "policy.toml"))
        server = HttpServer(Api(OrchestratorService(rig.orchestrator, rig.store), TOKEN, policy))
        _, port = await server.start(HOST, 0)
        rig.link.start()
        await rig.link.wait_resynced()
        try:
            await test(Client(rig, port))
        finally:
            await server.close()
            rig.link.close()
            await rig.ami.close()

    asyncio.run(asyncio.wait_for(main(), 30))


BLIND = {"flow": "blind", "pbx": "pbx1", "channel": "PJSIP/1002", "exten": "1003"}


def test_openapi_document_is_served_without_a_token(tmp_path: Path) -> None:
    async def check(http: Client) -> None:
        status, _, body = await http("GET", "/openapi.json", token=None)
        assert status == 200 and body == document()
        assert set(body["paths"]) == {
            "/openapi.json",
            "/health",
            "/ready",
            "/metrics",
            "/transfers",
            "/transfers/{id}",
            "/transfers/{id}/complete",
            "/transfers/{id}/cancel",
            "/transfers/{id}/ladder",
            "/policy/check",
            "/ui",
            "/ui/{asset}",
        }
        assert body["components"]["schemas"]["NewTransfer"]["required"] == ["flow", "pbx", "channel", "exten"]
        assert body["components"]["schemas"]["PolicyCheck"]["required"] == ["refer_to", "referrer"]
        # every operation documented is answered (no "no such resource", no 405), its security as documented
        for path, operations in body["paths"].items():
            asset = operations.get("get", {}).get("parameters", [{}])[0].get("schema", {}).get("enum")
            concrete = path.replace("{id}", "1").replace("{asset}", asset[0] if asset else "")
            for method, operation in operations.items():
                status, _, answer = await http(method.upper(), concrete)
                assert status != 405 and "no such" not in str(answer), (method, path, answer)
                status, _, answer = await http(method.upper(), concrete, token=None)
                assert (status == 401) == (operation.get("security") != []), (method, path, status)

    with_api(tmp_path, check)


@pytest.mark.parametrize("token", [None, "", "wrong-token-wrong-token"])
def test_every_other_path_needs_the_token(tmp_path: Path, token: str | None) -> None:
    async def check(http: Client) -> None:
        for method, path in [
            ("GET", "/transfers"),
            ("POST", "/transfers"),
            ("GET", "/transfers/1"),
            ("POST", "/transfers/1/cancel"),
        ]:
            status, headers, body = await http(method, path, BLIND if method == "POST" else None, token=token)
            assert status == 401 and body["error"] and headers["www-authenticate"].startswith("Bearer")
        assert http.rig.ami.named("BlindTransfer") == []

    with_api(tmp_path, check)


def test_blind_transfer_through_the_api(tmp_path: Path) -> None:
    async def check(http: Client) -> None:
        status, headers, body = await http("POST", "/transfers", BLIND)
        assert status == 201
        assert headers["location"] == f"/transfers/{body['id']}"
        assert (body["state"], body["flow"], body["parties"]["initiator"]) == (
            "starting",
            "blind",
            "PJSIP/1002-00000001",
        )
        status, _, again = await http("POST", "/transfers", {**BLIND, "exten": "1004"})
        assert status == 409
        assert again["error"] == f"PJSIP/1002 already has transfer {body['id']} running (starting)"
        await http.rig.push("blind_ami.txt")
        status, _, shown = await http("GET", f"/transfers/{body['id']}")
        assert status == 200
        assert (shown["state"], shown["live"]["state"], shown["call_id"]) == (
            "completed",
            "completed",
            "bob-dialog@127.0.0.32",
        )
        assert "BlindTransfer" in [e["kind"] for e in shown["entries"]]
        status, _, listed = await http("GET", "/transfers?state=completed&limit=5")
        assert status == 200 and [t["id"] for t in listed["transfers"]] == [body["id"]]
        status, _, done = await http("POST", f"/transfers/{body['id']}/complete")
        assert status == 409 and "already completed" in done["error"]
        status, _, health = await http("GET", "/health", token=None)
        assert (status, health) == (200, {"status": "alive"})
        status, _, ready = await http("GET", "/ready", token=None)
        assert status == 200 and ready["ready"] is True
        assert ready["pbxs"]["pbx1"]["ready"] and ready["pbxs"]["pbx1"]["connected"]

    with_api(tmp_path, check)


def test_attended_transfer_complete_and_cancel_through_the_api(tmp_path: Path) -> None:
    async def check(http: Client) -> None:
        status, _, body = await http(
            "POST", "/transfers", {**BLIND, "flow": "attended", "context": "referee-transfer"}
        )
        assert status == 201
        await http.rig.push("atxfer_answered.txt")
        status, _, bad = await http("POST", f"/transfers/{body['id']}/complete", {"now": True})
        assert status == 422 and "takes no body" in bad["error"]
        status, _, asked = await http("POST", f"/transfers/{body['id']}/complete")
        assert status == 202 and asked["state"] == "answered"
        await http.rig.push("atxfer_complete.txt")
        status, _, shown = await http("GET", f"/transfers/{body['id']}")
        assert shown["state"] == "completed"
        status, _, late = await http("POST", f"/transfers/{body['id']}/cancel")
        assert status == 409 and late["transfer"]["state"] == "completed"

    with_api(tmp_path, check)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("GET", "/nope", None, 404, "no such resource"),
        ("GET", "/transfers/999", None, 404, "no transfer 999"),
        ("POST", "/transfers/999/cancel", None, 404, "no transfer 999"),
        ("POST", "/transfers/999/frobnicate", None, 404, "no such resource"),
        ("DELETE", "/transfers", None, 405, "DELETE is not allowed"),
        ("PUT", "/transfers/1", None, 405, "PUT is not allowed"),
        ("GET", "/transfers/1/cancel", None, 405, "GET is not allowed"),
        ("GET", "/transfers?limit=0", None, 400, "limit must be"),
        ("GET", "/transfers?limit=abc", None, 400, "limit must be"),
        ("GET", "/transfers?state=ringing", None, 400, "state must be one of"),
        ("POST", "/transfers", None, 422, "must be a JSON object"),
        ("POST", "/transfers", [1, 2], 422, "must be a JSON object"),
        ("POST", "/transfers", {"flow": "blind"}, 422, "missing field(s): pbx, channel, exten"),
        ("POST", "/transfers", {**BLIND, "priority": 1}, 422, "unknown field(s): priority"),
        ("POST", "/transfers", {**BLIND, "exten": 1003}, 422, "exten must be a non-empty string"),
        ("POST", "/transfers", {**BLIND, "flow": "threeway"}, 422, "flow must be 'blind' or 'attended'"),
        ("POST", "/transfers", {**BLIND, "exten": "1003;x"}, 400, "is not a dialplan extension"),
        ("POST", "/transfers", {**BLIND, "pbx": "pbx7"}, 404, "unknown PBX 'pbx7'"),
        ("POST", "/transfers", {**BLIND, "channel": "PJSIP/1009"}, 404, "no channel 'PJSIP/1009'"),
        ("POST", "/transfers", b"{not json", 400, "not valid JSON"),
    ],
)
def test_bad_requests_get_4xx_with_a_message(
    tmp_path: Path, method: str, path: str, body: Any, status: int, message: str
) -> None:
    async def check(http: Client) -> None:
        got, _, answer = await http(method, path, body)
        assert got == status, answer
        assert message in answer["error"]
        assert http.rig.ami.named("BlindTransfer") == []

    with_api(tmp_path, check)


def test_the_pbx_saying_no_is_a_502_with_the_failed_transfer(tmp_path: Path) -> None:
    async def check(http: Client) -> None:
        http.rig.ami.answers["BlindTransfer"] = (
            "Response: Error\nActionID: {ActionID}\nMessage: Transfer failed\n\n"
        )
        status, _, body = await http("POST", "/transfers", BLIND)
        assert status == 502
        assert body["error"] == "PBX refused BlindTransfer: Transfer failed"
        assert body["transfer"]["state"] == "failed"

    with_api(tmp_path, check)


fuzz_requests = st.tuples(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "X"]),
    st.one_of(
        st.sampled_from(
            [
                "/",
                "/transfers",
                "/transfers/",
                "/transfers/1",
                "/transfers/1/complete",
                "/transfers/1/cancel",
                "/transfers/1/ladder",
                "/health",
                "/openapi.json",
                "/policy/check",
                "/ui",
                "/ui/ui.js",
            ]
        ),
        st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40).map(lambda s: "/" + s),
    ),
    st.one_of(
        st.none(),
        st.binary(max_size=200),
        st.dictionaries(
            st.sampled_from(
                [
                    "flow",
                    "pbx",
                    "channel",
                    "exten",
                    "context",
                    "x",
                    "refer_to",
                    "referrer",
                    "dialogs",
                    "depth",
                ]
            ),
            st.one_of(
                st.text(max_size=20),
                st.integers(),
                st.none(),
                st.booleans(),
                st.lists(st.integers(), max_size=2),
            ),
            max_size=6,
        ),
    ),
)


def test_no_request_gets_a_500(tmp_path: Path) -> None:
    async def check(http: Client) -> None:
        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(fuzz_requests)
        def one(case: tuple[str, str, Any]) -> None:
            method, path, body = case
            status, _, answer = asyncio.run_coroutine_threadsafe(http(method, path, body), loop).result()
            assert status != 500 and status < 600
            if status >= 400:
                assert isinstance(answer["error"], str) and answer["error"]

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, one)

    with_api(tmp_path, check)


def test_a_frozen_pbx_is_not_ready_and_comes_back(tmp_path: Path) -> None:
    """A PBX that keeps its TCP connection but answers nothing (SIGSTOP) is connected, not ready."""

    async def main() -> None:
        rig = await make_rig(tmp_path, host="127.0.3.6")
        rig.link.heartbeat = 0.05
        server = HttpServer(Api(OrchestratorService(rig.orchestrator, rig.store, ready_within=0.5), TOKEN))
        _, port = await server.start(HOST, 0)
        http = Client(rig, port)
        rig.link.start()
        await rig.link.wait_resynced()
        try:
            status, _, ready = await http("GET", "/ready", token=None)
            assert (status, ready["ready"]) == (200, True)
            rig.ami.answers["Ping"] = lambda action: ""  # frozen: nothing comes back
            while (answer := await http("GET", "/ready", token=None))[0] == 200:
                await asyncio.sleep(0.05)
            status, headers, ready = answer
            assert (status, headers["retry-after"]) == (503, "2")
            pbx = ready["pbxs"]["pbx1"]
            assert (ready["ready"], pbx["ready"], pbx["connected"]) == (False, False, True)
            assert pbx["silent_seconds"] >= 0.5
            del rig.ami.answers["Ping"]  # it wakes up
            while (await http("GET", "/ready", token=None))[0] == 503:
                await asyncio.sleep(0.05)
            assert (await http("GET", "/health", token=None))[:1] == (200,)
        finally:
            await server.close()
            rig.link.close()
            await rig.ami.close()

    asyncio.run(asyncio.wait_for(main(), 30))  # a guard against hanging, not a timed assertion
