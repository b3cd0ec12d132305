"""The URI-parameter allowlist (issue 13): what survives into the rewritten Refer-To, and what the trace says.

The example policy allows ``user`` and ``method``, and ``transport`` with udp or tcp (lab.test's list).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from referee.policy import Decision, Policy, load_policy, parse_policy
from referee.sip import parse_refer_to

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy.toml"
BOB = "sip:1002@lab.test"
CAROL_ON_PBX1 = "<sip:1003@127.0.0.20:5060>"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(EXAMPLE)


@pytest.fixture(scope="module")
def strict() -> Policy:
    return parse_policy(
        EXAMPLE.read_text().replace('on_uri_parameter = "strip"', 'on_uri_parameter = "reject"')
    )


def stripped(decision: Decision) -> list[str]:
    return [step.detail for step in decision.trace if step.rule == "params" and step.outcome == "strip"]


@pytest.mark.parametrize(
    ("refer_to", "why"),
    [
        ("<sip:1003@lab.test;maddr=198.51.100.7>", "maddr overrides where the request is sent"),
        ("<sip:1003@lab.test;MADDR=198.51.100.7>", "RFC 3261 19.1.1"),
        ("<sip:1003@lab.test;m%61ddr=198.51.100.7>", "maddr overrides"),
        ("<sip:1003@lab.test;ttl=1>", "ttl goes with a multicast maddr"),
        ("<sip:1003@lab.test;lr>", "lr marks a loose-routing proxy"),
        ("<sip:1003@lab.test;transport=ws>", "transport ws is not in lab.test's allowed_transports"),
        ("<sip:1003@lab.test;transport>", "transport (empty) is not in lab.test's allowed_transports"),
        ("<sip:1003@lab.test;received=198.51.100.7>", "received is not in allowed_uri_parameters"),
        ("<sip:1003@lab.test;x-made-up=1>", "x-made-up is not in allowed_uri_parameters"),
        ("sip:1003@lab.test;maddr=198.51.100.7", "RFC 3515 defines none"),
        ("<sip:1003@lab.test>;maddr=198.51.100.7", "RFC 3515 defines none"),
    ],
)
def test_each_unlisted_parameter_is_stripped_and_the_trace_says_why(
    policy: Policy, strict: Policy, refer_to: str, why: str
) -> None:
    decision = policy.decide(refer_to, referrer=BOB)
    assert decision.allowed, decision.reason
    assert decision.refer_to == CAROL_ON_PBX1
    (detail,) = stripped(decision)
    assert why in detail
    # the same REFER under on_uri_parameter = "reject": refused, with the same why in the trace
    refused = strict.decide(refer_to, referrer=BOB)
    assert (refused.allowed, refused.status, refused.rule) == (False, 403, "params")
    assert "parameter" in refused.reason and "not allowed" in refused.reason
    assert why in refused.trace[-1].detail


@pytest.mark.parametrize(
    ("refer_to", "rewritten"),
    [
        ("<sip:1003@lab.test;transport=tcp>", "<sip:1003@127.0.0.20:5060;transport=tcp>"),
        ("<sip:1003@lab.test;transport=UDP>", "<sip:1003@127.0.0.20:5060;transport=UDP>"),
        ("<sip:1003@lab.test;user=ip;method=invite>", "<sip:1003@127.0.0.20:5060;user=ip;method=invite>"),
        ("<sip:1003@lab.test;USER=phone>", "<sip:1003@127.0.0.20:5060;USER=phone>"),
    ],
)
def test_listed_parameters_are_kept(policy: Policy, strict: Policy, refer_to: str, rewritten: str) -> None:
    for each in (policy, strict):
        decision = each.decide(refer_to, referrer=BOB)
        assert decision.allowed, decision.reason
        assert decision.refer_to == rewritten
        assert stripped(decision) == []


def test_issue_examples_keep_only_what_is_allowed(policy: Policy) -> None:
    decision = policy.decide("<sip:1003@lab.test;maddr=198.51.100.7;ttl=1;transport=tcp>", referrer=BOB)
    assert decision.refer_to == "<sip:1003@127.0.0.20:5060;transport=tcp>"
    assert [d.split(":")[0] for d in stripped(decision)] == [
        "URI parameter ;maddr=198.51.100.7",
        "URI parameter ;ttl=1",
    ]
    number = policy.decide("<sip:+442079460000@lab.test;maddr=198.51.100.7>", referrer=BOB)
    assert number.refer_to == "<sip:+442079460000@127.0.0.20:5060;user=phone>"


def test_a_second_parameter_of_a_name_is_stripped_so_the_checked_one_is_the_one_read(
    policy: Policy, strict: Policy
) -> None:
    # The method rule reads the first method=; a UA reading the last must not find SUBSCRIBE there.
    refer_to = "<sip:1003@lab.test;method=INVITE;Method=SUBSCRIBE>"
    decision = policy.decide(refer_to, referrer=BOB)
    assert decision.refer_to == "<sip:1003@127.0.0.20:5060;method=INVITE>"
    assert "second method parameter" in stripped(decision)[0]
    assert strict.decide(refer_to, referrer=BOB).rule == "params"


def test_a_number_target_carries_exactly_one_user_parameter(policy: Policy) -> None:
    decision = policy.decide("<sip:02079460000@lab.test;user=ip>", referrer=BOB)
    assert decision.refer_to == "<sip:+442079460000@127.0.0.20:5060;user=phone>"


def test_the_trace_lists_what_was_kept(policy: Policy) -> None:
    decision = policy.decide("<sip:1003@lab.test;lr;transport=tcp>", referrer=BOB)
    kept = [s.detail for s in decision.trace if s.rule == "params" and s.outcome == "pass"]
    assert kept == ["kept ;transport=tcp"]


def test_no_parameters_no_params_step(policy: Policy) -> None:
    decision = policy.decide("<sip:1003@lab.test>", referrer=BOB)
    assert all(step.rule != "params" for step in decision.trace)


def test_a_reason_phrase_never_carries_a_raw_value(strict: Policy) -> None:
    decision = strict.decide("<sip:1003@lab.test;x%0D%0AVia=1>", referrer=BOB)
    assert decision.status == 403
    assert "\r" not in decision.reason and "\n" not in decision.reason
    assert "x%0D%0AVia" in decision.reason


def test_tenants_list_their_own_transports() -> None:
    text = EXAMPLE.read_text().replace('allowed_transports = ["udp", "tcp"]\n', "")
    default = parse_policy(text)
    assert default.default_tenant.allowed_transports == frozenset()
    decision = default.decide("<sip:1003@lab.test;transport=udp>", referrer=BOB)
    assert decision.refer_to == CAROL_ON_PBX1
    tls = parse_policy(
        text.replace(
            'pbx = "sip:127.0.0.20:5060"\n', 'pbx = "sip:127.0.0.20:5060"\nallowed_transports = ["TLS"]\n', 1
        )
    )
    assert tls.decide("<sip:1003@lab.test;transport=tls>", referrer=BOB).refer_to == (
        "<sip:1003@127.0.0.20:5060;transport=tls>"
    )


def test_allowlist_applies_to_foreign_targets_too() -> None:
    text = EXAMPLE.read_text().replace('foreign_domains = "reject"', 'foreign_domains = "allow"')
    decision = parse_policy(text).decide("<sip:bob@partner.example;maddr=198.51.100.7;user=ip>", referrer=BOB)
    assert decision.allowed and decision.rule == "foreign-domain"
    assert decision.refer_to == "<sip:bob@partner.example;user=ip>"


def test_an_empty_allowlist_strips_everything_but_what_the_policy_adds() -> None:
    text = EXAMPLE.read_text().replace(
        'allowed_uri_parameters = ["user", "method"]', "allowed_uri_parameters = []"
    )
    empty = parse_policy(text)
    assert empty.decide("<sip:1003@lab.test;method=INVITE>", referrer=BOB).refer_to == CAROL_ON_PBX1
    # the method rule still refuses what it refuses: stripping comes after it
    assert empty.decide("<sip:1003@lab.test;method=BYE>", referrer=BOB).rule == "method"
    # a tel: target converted to a number still says user=phone
    tel = empty.decide("<tel:+442079460000>", referrer=BOB)
    assert tel.refer_to == "<sip:+442079460000@127.0.0.20:5060;user=phone>"
    assert parse_refer_to(tel.refer_to).uri.param("user") == "phone"
