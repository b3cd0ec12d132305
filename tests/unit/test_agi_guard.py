"""The transfer guard adapter: channel variables in, the policy's decision, channel variables out."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from asterisk.agi import AGI  # pyst2
from hypothesis import given
from hypothesis import strategies as st

from referee.agi.guard import OUTPUT_VARIABLES, GuardSession
from referee.agi.quoting import agi_quote
from referee.policy import Policy, load_policy
from referee.testing.fake_asterisk import agi_env, split_args

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy.toml"
# Two tenants with the same extensions on different PBXs; the second is the default.
TWO_TENANTS = Path(__file__).parent / "data" / "agi" / "two_tenants.toml"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(EXAMPLE)


def run(
    policy: Policy | None, exten: str, variables: dict[str, str], domain: str | None = None, **env: str
) -> tuple[dict[str, str], list[str]]:
    """Drive a session as the AGI transports do; the answer and the variables asked for."""
    session = GuardSession(agi_env(exten, **env), domain)
    asked: list[str] = []
    for _ in range(20):
        name = session.wanted()
        if name is None:
            break
        asked.append(name)
        session.give(name, variables.get(name))
    answer = session.decide(policy)
    assert [name for name, _ in answer] == list(OUTPUT_VARIABLES)
    return dict(answer), asked


def test_blind_transfer_to_an_extension_is_allowed_and_rewritten(policy: Policy) -> None:
    out, asked = run(policy, "1003", {"SIPREFERREDBYHDR": "<sip:1002@lab.test>"})
    assert out["REFEREE_ALLOWED"] == "1"
    assert out["REFEREE_STATUS"] == "202"
    assert out["REFEREE_RULE"] == "pbx1-extensions"
    assert out["REFEREE_TARGET"] == "sip:1003@127.0.0.20:5060"
    assert out["REFEREE_TARGET_USER"] == "1003"
    assert out["REFEREE_TENANT"] == "lab.test"
    # Referred-By named the referrer: the channel variables further down are not asked for.
    assert asked == ["REFEREE_DOMAIN", "SIPREFERREDBYHDR"]


def test_premium_number_is_refused_with_the_rule(policy: Policy) -> None:
    out, _ = run(policy, "09001234567", {"SIPREFERREDBYHDR": '"Bob" <sip:1002@lab.test>;cid=x'})
    assert out["REFEREE_ALLOWED"] == "0"
    assert out["REFEREE_STATUS"] == "403"
    assert out["REFEREE_RULE"] == "prefixes:deny:+449"
    assert "premium-rate" in out["REFEREE_REASON"]
    assert out["REFEREE_TARGET"] == ""


def test_national_number_becomes_e164_for_the_dial(policy: Policy) -> None:
    out, _ = run(policy, "02079460000", {"SIPREFERREDBYHDR": "<sip:1002@lab.test>"})
    assert out["REFEREE_ALLOWED"] == "1"
    assert out["REFEREE_TARGET_USER"] == "+442079460000"


@pytest.mark.parametrize(
    ("variable", "channel"),
    [
        ("TRANSFERERNAME", "PJSIP/1001-0000001a"),
        ("BLINDTRANSFER", "PJSIP/1001-0000001a"),
        ("ATTENDEDTRANSFER", "PJSIP/1001-0000001a"),
        ("BLINDTRANSFER", "Local/1001@from-phones-0000000c;2"),
    ],
)
def test_referrer_from_the_transferer_channel(policy: Policy, variable: str, channel: str) -> None:
    # 1001 is the operator console: its override allows international numbers.
    out, _ = run(policy, "0012125550100", {variable: channel}, callerid="1002")
    assert out["REFEREE_ALLOWED"] == "1", out
    assert out["REFEREE_RULE"] == "override:operator-console:allow:+"


def test_referrer_falls_back_to_the_caller_id(policy: Policy) -> None:
    out, asked = run(policy, "0012125550100", {}, callerid="1002")
    assert out["REFEREE_ALLOWED"] == "0"
    assert out["REFEREE_RULE"] == "prefixes:deny:+"
    assert asked == [
        "REFEREE_DOMAIN",
        "SIPREFERREDBYHDR",
        "TRANSFERERNAME",
        "BLINDTRANSFER",
        "ATTENDEDTRANSFER",
    ]
    out, _ = run(policy, "0012125550100", {}, callerid="1001")
    assert out["REFEREE_ALLOWED"] == "1"


def test_no_referrer_at_all_is_refused_by_the_policy(policy: Policy) -> None:
    out, _ = run(policy, "1003", {}, callerid="unknown")
    assert out["REFEREE_ALLOWED"] == "0"
    assert out["REFEREE_STATUS"] == "400"
    assert out["REFEREE_RULE"] == "referrer"


def test_tenant_domain_from_the_channel(policy: Policy) -> None:
    out, _ = run(policy, "1003", {"REFEREE_DOMAIN": "other.example", "BLINDTRANSFER": "PJSIP/1002-00000001"})
    assert out["REFEREE_ALLOWED"] == "0"
    assert "other.example is not served here" in out["REFEREE_REASON"]


@pytest.fixture(scope="module")
def two_tenants() -> Policy:
    return load_policy(TWO_TENANTS)


TRANSFERER = {"BLINDTRANSFER": "PJSIP/1002-00000001"}


@pytest.mark.parametrize(
    ("channel_domain", "configured", "tenant", "pbx"),
    [
        (None, None, "b.example", "127.0.0.2"),  # nothing configured: the policy's default tenant
        (None, "a.example", "a.example", "127.0.0.1"),  # --domain / $REFEREE_DOMAIN beats the policy
        ("b.example", "a.example", "b.example", "127.0.0.2"),  # the channel's REFEREE_DOMAIN beats both
    ],
)
def test_the_tenant_domain_is_the_channels_else_the_configured_else_the_policys(
    two_tenants: Policy, channel_domain: str | None, configured: str | None, tenant: str, pbx: str
) -> None:
    variables = TRANSFERER if channel_domain is None else dict(TRANSFERER, REFEREE_DOMAIN=channel_domain)
    out, _ = run(two_tenants, "1003", variables, domain=configured)
    assert out["REFEREE_ALLOWED"] == "1", out
    assert out["REFEREE_TENANT"] == tenant
    assert out["REFEREE_RULE"] == f"{tenant[0]}-extensions"
    assert out["REFEREE_TARGET"] == f"sip:1003@{pbx}:5060"


def test_a_configured_domain_the_policy_does_not_serve_fails_closed(two_tenants: Policy) -> None:
    out, _ = run(two_tenants, "1003", TRANSFERER, domain="c.example")
    assert out["REFEREE_ALLOWED"] == "0"
    assert out["REFEREE_STATUS"] == "403"
    assert "c.example is not served here" in out["REFEREE_REASON"]


def test_no_domain_is_built_in() -> None:
    # A guard asked before any policy is loaded names no tenant: it refuses, whatever the channel says.
    session = GuardSession(agi_env("1003"))
    assert session.domain == ""
    assert dict(session.decide(None))["REFEREE_STATUS"] == "503"


@pytest.mark.parametrize(
    "exten", ["1003>", "1003@evil.example", "1003?Replaces=x", 'a"b', "", "1003\nEXEC Dial"]
)
def test_hostile_extensions_cannot_reshape_the_refer_to(policy: Policy, exten: str) -> None:
    out, _ = run(policy, exten, {"SIPREFERREDBYHDR": "<sip:1002@lab.test>"})
    assert out["REFEREE_ALLOWED"] == "0"
    assert out["REFEREE_STATUS"] in {"400", "404"}


def test_external_replaces_checks_the_target_without_the_replaces(policy: Policy) -> None:
    refer_to = "sip:2001@lab.test?Replaces=abc%40host%3Bto-tag%3D1%3Bfrom-tag%3D2"
    out, asked = run(
        policy, "external_replaces", {"SIPREFERTOHDR": refer_to, "SIPREFERREDBYHDR": "<sip:1002@lab.test>"}
    )
    assert "SIPREFERTOHDR" in asked
    # The dialog is on another PBX: only the target is checked here (the proxy checks the party).
    assert out["REFEREE_ALLOWED"] == "1", out
    assert out["REFEREE_RULE"] == "pbx2-extensions"
    assert out["REFEREE_TARGET"] == "sip:2001@127.0.0.21:5060"


def test_external_replaces_target_loses_maddr_and_unlisted_transport(policy: Policy) -> None:
    # The guard wraps a bare SIPREFERTOHDR in <>: its parameters are the URI's, and the policy screens them.
    refer_to = (
        "sip:2001@lab.test;maddr=198.51.100.7;transport=ws;user=phone?Replaces=a%3Bto-tag%3D1%3Bfrom-tag%3D2"
    )
    out, _ = run(
        policy, "external_replaces", {"SIPREFERTOHDR": refer_to, "SIPREFERREDBYHDR": "<sip:1002@lab.test>"}
    )
    assert out["REFEREE_ALLOWED"] == "1", out
    assert out["REFEREE_TARGET"] == "sip:2001@127.0.0.21:5060;user=phone"


def test_external_replaces_to_a_foreign_domain_is_refused(policy: Policy) -> None:
    refer_to = "<sip:carol@evil.example?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>"
    out, _ = run(
        policy, "external_replaces", {"SIPREFERTOHDR": refer_to, "SIPREFERREDBYHDR": "<sip:1002@lab.test>"}
    )
    assert out["REFEREE_ALLOWED"] == "0"
    assert out["REFEREE_STATUS"] == "403"
    assert out["REFEREE_RULE"] == "target"


@pytest.mark.parametrize(
    ("header", "status"), [("", "400"), ("<sip:2001@lab.test", "400"), ("http://x/", "416")]
)
def test_external_replaces_with_a_bad_refer_to(policy: Policy, header: str, status: str) -> None:
    out, _ = run(
        policy, "external_replaces", {"SIPREFERTOHDR": header, "SIPREFERREDBYHDR": "<sip:1002@lab.test>"}
    )
    assert out["REFEREE_ALLOWED"] == "0"
    assert out["REFEREE_STATUS"] == status


def test_no_policy_fails_closed() -> None:
    out, _ = run(None, "1003", {"SIPREFERREDBYHDR": "<sip:1002@lab.test>"})
    assert out["REFEREE_ALLOWED"] == "0"
    assert out["REFEREE_STATUS"] == "503"


class _BrokenPolicy(Policy):
    def __init__(self) -> None:  # no compiled rules: a default tenant and decide() are all it has
        self.default_tenant = load_policy(EXAMPLE).default_tenant

    def decide(self, refer_to: str, **kwargs: object) -> object:  # type: ignore[override]
        raise RuntimeError("boom")


def test_a_policy_failure_fails_closed_with_500_and_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="referee.agi.guard"):
        out, _ = run(_BrokenPolicy(), "1003", {"SIPREFERREDBYHDR": "<sip:1002@lab.test>"})
    assert out["REFEREE_ALLOWED"] == "0"
    assert out["REFEREE_STATUS"] == "500"
    assert out["REFEREE_RULE"] == "error"
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)


def test_allowed_is_the_last_variable_set(policy: Policy) -> None:
    session = GuardSession(agi_env("1003"))
    session.give("SIPREFERREDBYHDR", "<sip:1002@lab.test>")
    assert session.decide(policy)[-1] == ("REFEREE_ALLOWED", "1")


@given(st.text(max_size=600))
def test_agi_quote_is_one_argument_asterisk_reads_back(value: str) -> None:
    line = f"SET VARIABLE {agi_quote('REFEREE_REASON')} {agi_quote(value)}"
    assert "\n" not in line and "\r" not in line
    words = split_args(line)
    expected = "".join(ch if ch >= " " and ch != "\x7f" else " " for ch in value[:512])
    assert words == ["SET", "VARIABLE", "REFEREE_REASON", expected]


def test_pyst2_quote_does_not_escape_which_is_why_agi_quote_exists() -> None:
    # pyst2 0.5.1 quotes without escaping: a '"' ends the argument, a newline ends the command.
    quoted = AGI._quote(None, 'x" EXEC Dial "PJSIP/evil\nEXEC Dial PJSIP/evil')
    assert "\n" in quoted
    assert split_args(f"SET VARIABLE R {quoted}".splitlines()[0]) != [
        "SET",
        "VARIABLE",
        "R",
        quoted.strip('"'),
    ]
    assert "\n" not in agi_quote('x" EXEC Dial "PJSIP/evil\nEXEC Dial PJSIP/evil')


def test_the_target_may_come_as_the_first_agi_argument(policy: Policy) -> None:
    # Gosub(referee-guard,s,1(${EXTEN})): agi_extension is "s", the target is ARG1.
    out, _ = run(policy, "s", {"SIPREFERREDBYHDR": "<sip:1002@lab.test>"}, agi_arg_1="09001234567")
    assert out["REFEREE_RULE"] == "prefixes:deny:+449"
    out, asked = run(policy, "s", {"SIPREFERREDBYHDR": "<sip:1002@lab.test>"}, agi_arg_1="external_replaces")
    assert "SIPREFERTOHDR" in asked
    assert out["REFEREE_STATUS"] == "400"  # no SIPREFERTOHDR on this channel
