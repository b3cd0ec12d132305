"""The guard in one round trip: inputs in the request, the whole answer in one SET VARIABLE.

Asterisk's side is emulated from its source (Asterisk 22): ``URIENCODE`` is ``ast_uri_encode`` with
``ast_uri_http`` (letters, digits and ``-_.!~*'()`` kept, every other byte ``%XX``), ``URIDECODE`` is
``ast_uri_decode`` (``%XX`` to a byte, ``+`` kept), ``CUT`` splits at the delimiter. The dialplan's
split (asterisk/extensions_referee_transfer.conf, checked against these names in test_agi_dialplan.py)
must give the variables the older many-round-trip session sets, for any input.
"""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from referee.agi.daemon import TRANSFER_GUARD, transfer_guard
from referee.agi.fastagi import FastAgiServer
from referee.agi.guard import (
    MAX_RESULT,
    OUTPUT_VARIABLES,
    QUERY_VARIABLES,
    RESULT_VARIABLE,
    GuardSession,
    decode_result,
    encode_result,
    request_query,
)
from referee.agi.policy_source import PolicySource
from referee.agi.process import AgiError, StdioAgi, run_guard
from referee.policy import Decision, Policy, load_policy
from referee.testing.fake_asterisk import agi_env, call, play, split_args

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "policy.toml"
SCRIPT = ROOT / "ansible" / "roles" / "referee" / "files" / "referee_transfer_guard.py"
HOST = "127.0.2.20"
BOB = {"SIPREFERREDBYHDR": "<sip:1002@lab.test>"}
_KEPT = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()")


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(EXAMPLE)


def uriencode(value: str) -> str:
    return "".join(chr(b) if b in _KEPT else f"%{b:02X}" for b in value.encode())


def uridecode(value: str) -> str:
    raw, i = bytearray(), 0
    data = value.encode()
    while i < len(data):
        if data[i : i + 1] == b"%" and len(data) >= i + 3:
            try:
                raw.append(int(data[i + 1 : i + 3], 16))
                i += 3
                continue
            except ValueError:
                pass
        raw.append(data[i])
        i += 1
    return raw.decode(errors="replace")


def dialplan_query(target: str, variables: dict[str, str]) -> str:
    """The dialplan's ``LOCAL(query)``: every input, URIENCODEd, unset ones empty."""
    pairs = [("target", target)] + [(key, variables.get(var, "")) for key, var in QUERY_VARIABLES.items()]
    return "&".join(f"{key}={uriencode(value)}" for key, value in pairs)


def dialplan_split(result: str) -> dict[str, str]:
    """``Set(REFEREE_X=${URIDECODE(${CUT(REFEREE_RESULT,|,N)})})``; REFEREE_ALLOWED by ``IF``."""
    fields = result.split("|")
    out = {name: uridecode(fields[n]) if n < len(fields) else "" for n, name in enumerate(OUTPUT_VARIABLES)}
    last = len(OUTPUT_VARIABLES) - 1
    out["REFEREE_ALLOWED"] = "1" if last < len(fields) and fields[last] == "1" else "0"
    return out


def many_round_trips(policy: Policy, target: str, variables: dict[str, str]) -> dict[str, str]:
    session = GuardSession(agi_env(target))
    while (name := session.wanted()) is not None:
        session.give(name, variables.get(name))
    return dict(session.answer(policy))


def one_round_trip(policy: Policy, target: str, variables: dict[str, str]) -> list[tuple[str, str]]:
    env = agi_env("s", script=f"{TRANSFER_GUARD}?{dialplan_query(target, variables)}")
    session = GuardSession(env)
    assert session.wanted() is None  # nothing to ask
    return session.answer(policy)


@pytest.mark.parametrize(
    ("target", "variables"),
    [
        ("1003", BOB),
        ("09001234567", BOB),
        ("020-7946-0000", {"BLINDTRANSFER": "PJSIP/1002-0000001a"}),
        ('10"03', BOB),
        ("1003", {}),
        ("1003", {"REFEREE_DOMAIN": "elsewhere.example", **BOB}),
        (
            "external_replaces",
            {**BOB, "SIPREFERTOHDR": "<sip:2001@lab.test?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>"},
        ),
        ("external_replaces", {**BOB, "SIPREFERTOHDR": "<sip:x@[::1"}),
    ],
)
def test_one_round_trip_answers_what_the_round_trips_answered(
    policy: Policy, target: str, variables: dict[str, str]
) -> None:
    answer = one_round_trip(policy, target, variables)
    assert [name for name, _ in answer] == [RESULT_VARIABLE]
    assert dialplan_split(answer[0][1]) == many_round_trips(policy, target, variables)
    assert decode_result(answer[0][1]) == dialplan_split(answer[0][1])


_ANY = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80)


@settings(max_examples=300, deadline=None)
@given(target=_ANY, referred_by=_ANY, refer_to=_ANY, transferer=_ANY)
def test_any_input_survives_the_request_and_the_answer(
    policy: Policy, target: str, referred_by: str, refer_to: str, transferer: str
) -> None:
    variables = {"SIPREFERREDBYHDR": referred_by, "SIPREFERTOHDR": refer_to, "TRANSFERERNAME": transferer}
    query = dialplan_query(target, variables)
    # Nothing AGI() or the header line would split on, nothing res_agi's argument parser would eat.
    assert not set(query) & set(',|"\\?/\n\r[]{}$ ')
    parsed = request_query({"agi_network_script": f"{TRANSFER_GUARD}?{query}"})
    assert parsed is not None and parsed["target"] == target and parsed["referred_by"] == referred_by
    answer = one_round_trip(policy, target.strip(), variables)
    result = answer[0][1]
    assert not set(result) & set(',"\\()$[]{} \n')
    # The command line res_agi reads is one line, one quoted argument per word.
    assert split_args(f'SET VARIABLE {RESULT_VARIABLE} "{result}"')[3] == result
    assert dialplan_split(result) == many_round_trips(policy, target.strip(), variables)


def test_the_process_agi_takes_the_query_as_its_first_argument(policy: Policy) -> None:
    env = agi_env("s", script="", agi_arg_1="?" + dialplan_query("09001234567", BOB))
    session = GuardSession(env)
    assert session.wanted() is None
    assert dialplan_split(session.answer(policy)[0][1])["REFEREE_RULE"] == "prefixes:deny:+449"


def test_a_request_without_a_query_is_the_older_dialplans(policy: Policy) -> None:
    assert request_query(agi_env("1003")) is None
    assert request_query(agi_env("s", script="", agi_arg_1="1003")) is None
    session = GuardSession(agi_env("1003"))
    assert session.wanted() == "REFEREE_DOMAIN"


def test_an_answer_cut_short_allows_nothing(policy: Policy) -> None:
    result = one_round_trip(policy, "1003", BOB)[0][1]
    assert dialplan_split(result)["REFEREE_ALLOWED"] == "1"
    for cut in range(len(result)):
        assert dialplan_split(result[:cut])["REFEREE_ALLOWED"] == "0"
        assert decode_result(result[:cut])["REFEREE_ALLOWED"] == "0"


class LongWinded:
    """A policy whose allowed answer is longer than res_agi's command line."""

    version = "v1"
    default_tenant = SimpleNamespace(domain="lab.test")

    def decide(self, refer_to: str, referrer: str = "") -> Decision:
        return Decision(True, 202, "Accepted " + "very " * 400, "r", (), tenant="lab.test")


def test_an_answer_too_long_for_res_agi_is_a_refusal() -> None:
    session = GuardSession(agi_env("s", script=f"{TRANSFER_GUARD}?{dialplan_query('1003', BOB)}"))
    result = session.answer(LongWinded())  # type: ignore[arg-type]
    assert len(result[0][1]) <= MAX_RESULT
    out = dialplan_split(result[0][1])
    assert (out["REFEREE_ALLOWED"], out["REFEREE_STATUS"], out["REFEREE_RULE"]) == ("0", "500", "error")
    assert out["REFEREE_POLICY_VERSION"] == "v1"
    assert encode_result([("A", "|%,")]) == "%7C%25%2C"


@pytest.mark.usefixtures("either_event_loop")
def test_fastagi_answers_in_one_command() -> None:
    async def main() -> None:
        source = PolicySource(str(EXAMPLE))
        source.load()
        server = FastAgiServer({TRANSFER_GUARD: transfer_guard(source)})
        _, port = await server.start(HOST, 0)
        try:
            script = f"{TRANSFER_GUARD}?{dialplan_query('1003', BOB)}"
            channel = await call(HOST, port, agi_env("s", script=script))
        finally:
            await server.close()
        assert [words[:3] for words in channel.commands] == [["SET", "VARIABLE", RESULT_VARIABLE]]
        out = dialplan_split(channel.variables[RESULT_VARIABLE])
        assert out["REFEREE_ALLOWED"] == "1"
        assert out["REFEREE_TARGET"] == "sip:1003@127.0.0.20:5060"

    asyncio.run(main())


def test_the_process_agi_answers_in_one_command() -> None:
    async def main() -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(SCRIPT), cwd="/", env={"REFEREE_POLICY": str(EXAMPLE), "PATH": "/usr/bin"},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        try:
            env = agi_env("s", script="", agi_arg_1="?" + dialplan_query("09001234567", BOB))
            channel = await play(proc.stdout, proc.stdin, env)
            proc.stdin.close()
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert [words[:3] for words in channel.commands] == [["SET", "VARIABLE", RESULT_VARIABLE]]
        out = dialplan_split(channel.variables[RESULT_VARIABLE])
        assert (out["REFEREE_ALLOWED"], out["REFEREE_STATUS"]) == ("0", "403")

    asyncio.run(main())


def agi_pipes(env: str, answers: str) -> tuple[StdioAgi, io.StringIO]:
    out = io.StringIO()
    return StdioAgi(io.StringIO(env + "\n" + answers), out), out


def test_the_stdlib_loop_reads_values_skips_hangup_and_fails_on_errors(policy: Policy) -> None:
    agi, out = agi_pipes(
        "agi_request: referee_transfer_guard.py\nagi_extension: 1003\nagi_calleridname: a: b\n",
        "HANGUP\n200 result=0\n200 result=1 (<sip:1002@lab.test> (x))\n",
    )
    assert agi.env["agi_calleridname"] == "a: b"
    assert agi.get_variable("REFEREE_DOMAIN") is None
    assert agi.get_variable("SIPREFERREDBYHDR") == "<sip:1002@lab.test> (x)"
    assert out.getvalue() == 'GET VARIABLE "REFEREE_DOMAIN"\nGET VARIABLE "SIPREFERREDBYHDR"\n'
    with pytest.raises(AgiError, match="pipe closed"):
        agi.get_variable("TRANSFERERNAME")
    agi, _ = agi_pipes("agi_extension: 1003\n", "510 Invalid or unknown command\n")
    with pytest.raises(AgiError, match="510"):
        run_guard(agi, policy)
    with pytest.raises(AgiError, match="ended early"):
        StdioAgi(io.StringIO("agi_extension: 1003\n"), io.StringIO())
