"""Decisions of the example policy (examples/policy.toml), the one the lab runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from referee.policy import Dialog, Policy, load_policy, parse_policy
from referee.policy.engine import _dialled
from referee.sip import Replaces, parse_refer_to

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy.toml"
BOB = "sip:1002@lab.test"
BOB_CAROL = Dialog("c1@127.0.0.32", "bobtag", "caroltag")


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(EXAMPLE)


@pytest.mark.parametrize(
    ("refer_to", "rewritten", "rule"),
    [
        ("<sip:1003@lab.test>", "<sip:1003@127.0.0.20:5060>", "pbx1-extensions"),
        ("sip:1003@127.0.0.10", "<sip:1003@127.0.0.20:5060>", "pbx1-extensions"),
        # header parameters are dropped (issue 13): RFC 3515 defines none
        ('"Carol" <sip:1003@lab.test>;x=1', '"Carol" <sip:1003@127.0.0.20:5060>', "pbx1-extensions"),
        ("<sip:2001@lab.test>", "<sip:2001@127.0.0.21:5060>", "pbx2-extensions"),
        ("<sip:1003@lab.test;method=INVITE>", "<sip:1003@127.0.0.20:5060;method=INVITE>", "pbx1-extensions"),
        (
            "<sip:02079460000@lab.test>",
            "<sip:+442079460000@127.0.0.20:5060;user=phone>",
            "prefixes:allow:+44",
        ),
        (
            "<sip:020-7946-0000@lab.test>",
            "<sip:+442079460000@127.0.0.20:5060;user=phone>",
            "prefixes:allow:+44",
        ),
        ("<tel:+44-20-7946-0000>", "<sip:+442079460000@127.0.0.20:5060;user=phone>", "prefixes:allow:+44"),
        (
            "<sip:00442079460000@lab.test>",
            "<sip:+442079460000@127.0.0.20:5060;user=phone>",
            "prefixes:allow:+44",
        ),
    ],
)
def test_allowed_targets_are_rewritten_to_the_pbx(
    policy: Policy, refer_to: str, rewritten: str, rule: str
) -> None:
    decision = policy.decide(refer_to, referrer=BOB)
    assert decision.allowed, decision.reason
    assert (decision.status, decision.refer_to, decision.rule) == (202, rewritten, rule)
    assert decision.tenant == "lab.test"
    # what the proxy puts back must itself be a valid Refer-To
    assert str(parse_refer_to(decision.refer_to)) == rewritten


@pytest.mark.parametrize(
    ("refer_to", "status", "rule", "words"),
    [
        ("<sip:09001234567@lab.test>", 403, "prefixes:deny:+449", "premium-rate"),
        ("<sip:+449001234567@lab.test>", 403, "prefixes:deny:+449", "premium-rate"),
        ("<sip:08701234567@lab.test>", 403, "prefixes:deny:+4487", "revenue-sharing"),
        ("<sip:0033123456789@lab.test>", 403, "prefixes:deny:+", "international"),
        ("http://www.ietf.org", 416, "scheme", "http"),
        ("<mailto:bob@lab.test>", 416, "scheme", "mailto"),
        ("<sip:1003@lab.test;method=SUBSCRIBE>", 403, "method", "SUBSCRIBE"),
        ("<sip:1003@evil.example>", 403, "target", "evil.example"),
        ("<sip:carol@lab.test>", 404, "target", "carol"),
        ("<sip:12345@lab.test>", 404, "target", "12345"),
        ("<sip:1003@lab.test", 400, "syntax", "'<' without '>'"),
        ("", 400, "syntax", "empty"),
        ("<sip:1003@lab.test>, <sip:1004@lab.test>", 400, "syntax", "more than one"),
        ("<sip:1003@lab.test?Replaces=nocolon>", 400, "headers", "to-tag"),
    ],
)
def test_rejections_carry_a_status_a_reason_and_the_rule(
    policy: Policy, refer_to: str, status: int, rule: str, words: str
) -> None:
    decision = policy.decide(refer_to, referrer=BOB)
    assert not decision.allowed
    assert (decision.status, decision.rule) == (status, rule)
    assert words in decision.reason
    assert decision.refer_to is None
    assert decision.trace[-1].outcome == "reject"


def test_forbidden_embedded_headers_are_stripped_and_replaces_kept(policy: Policy) -> None:
    refer_to = (
        "<sip:1003@lab.test?Call-ID=evil%40x&Route=%3Csip:attacker.example%3E"
        "&Replaces=c1%40127.0.0.32%3Bto-tag%3Dcaroltag%3Bfrom-tag%3Dbobtag&Accept-Contact=x>"
    )
    decision = policy.decide(refer_to, referrer=BOB, dialogs=[BOB_CAROL])
    assert decision.allowed
    uri = parse_refer_to(decision.refer_to or "").uri
    assert [name for name, _ in uri.headers] == ["Replaces"]
    assert decision.replaces is not None and decision.replaces.call_id == "c1@127.0.0.32"
    stripped = [step.detail.split()[0] for step in decision.trace if step.outcome == "strip"]
    assert stripped == ["Call-ID", "Route", "Accept-Contact"]


def test_rfc3515_call_id_example_is_stripped_of_its_call_id(policy: Policy) -> None:
    decision = policy.decide(
        "<sip:1003@lab.test?Call-ID%3D55432%40alicepc.atlanta.example.com>", referrer=BOB
    )
    assert decision.allowed
    assert decision.refer_to == "<sip:1003@127.0.0.20:5060>"


def test_forbidden_header_rejects_when_the_policy_says_so(policy: Policy) -> None:
    strict = parse_policy(
        EXAMPLE.read_text().replace('on_forbidden_header = "strip"', 'on_forbidden_header = "reject"')
    )
    decision = strict.decide("<sip:1003@lab.test?Call-ID=x>", referrer=BOB)
    assert (decision.allowed, decision.status, decision.rule) == (False, 403, "headers")
    assert "Call-ID" in decision.reason
    assert policy.decide("<sip:1003@lab.test?Call-ID=x>", referrer=BOB).allowed


def test_replaces_of_a_dialog_the_referrer_is_not_in_is_a_hijack(policy: Policy) -> None:
    refer_to = "<sip:1003@lab.test?Replaces=c1%40127.0.0.32%3Bto-tag%3Dcaroltag%3Bfrom-tag%3Dbobtag>"
    ok = policy.decide(refer_to, referrer=BOB, dialogs=[BOB_CAROL])
    assert ok.allowed
    assert ok.refer_to == refer_to.replace("lab.test", "127.0.0.20:5060")
    for dialogs in ([], [Dialog("other@x", "bobtag", "caroltag")], [Dialog("c1@127.0.0.32", "bobtag", "x")]):
        hijack = policy.decide(refer_to, referrer=BOB, dialogs=dialogs)
        assert (hijack.allowed, hijack.status, hijack.rule) == (False, 403, "replaces")
        assert hijack.replaces is not None  # the adapter can log what was asked for


def test_tags_in_either_order_match_the_dialog(policy: Policy) -> None:
    refer_to = "<sip:1003@lab.test?Replaces=c1%40127.0.0.32%3Bto-tag%3Dbobtag%3Bfrom-tag%3Dcaroltag>"
    assert policy.decide(refer_to, referrer=BOB, dialogs=[BOB_CAROL]).allowed


def test_depth_beyond_the_limit_is_a_loop(policy: Policy) -> None:
    assert policy.decide("<sip:1003@lab.test>", referrer=BOB, depth=3).allowed
    loop = policy.decide("<sip:1003@lab.test>", referrer=BOB, depth=4)
    assert (loop.allowed, loop.status, loop.rule) == (False, 482, "depth")


def test_operator_override_allows_abroad_but_not_premium(policy: Policy) -> None:
    operator = "<sip:1001@lab.test>"
    abroad = policy.decide("<sip:0033123456789@lab.test>", referrer=operator)
    assert abroad.allowed and abroad.rule == "override:operator-console:allow:+"
    premium = policy.decide("<sip:09001234567@lab.test>", referrer=operator)
    assert (premium.allowed, premium.rule) == (False, "prefixes:deny:+449")


def test_bad_referrer_is_a_400(policy: Policy) -> None:
    decision = policy.decide("<sip:1003@lab.test>", referrer="not a uri")
    assert (decision.allowed, decision.status, decision.rule) == (False, 400, "referrer")


def test_trace_explains_each_rule_in_order(policy: Policy) -> None:
    decision = policy.decide("<sip:1003@lab.test>", referrer=BOB)
    rules = [step.rule for step in decision.trace]
    assert rules == ["syntax", "tenant", "scheme", "method", "depth", "pbx1-extensions", "pbx1-extensions"]
    assert decision.trace[-1].outcome == "allow"
    assert decision.to_dict()["trace"][0] == {"rule": "syntax", "outcome": "pass", "detail": "sip: target"}


def test_tel_reject_mode(policy: Policy) -> None:
    no_tel = parse_policy(EXAMPLE.read_text().replace('tel = "convert"', 'tel = "reject"'))
    decision = no_tel.decide("<tel:+442079460000>", referrer=BOB)
    assert (decision.allowed, decision.status) == (False, 416)
    assert policy.decide("<tel:+442079460000>", referrer=BOB).allowed


_tags = st.sampled_from(["a", "b", "c"])


@given(_tags, _tags, _tags, _tags, st.sampled_from(["c1", "c2"]))
def test_a_dialog_matches_a_replaces_naming_its_two_tags_in_either_order(
    local: str, remote: str, to_tag: str, from_tag: str, call_id: str
) -> None:
    tags = {local, remote}
    expected = call_id == "c1" and to_tag in tags and from_tag in tags and to_tag != from_tag
    assert Dialog("c1", local, remote).matches(Replaces(call_id, to_tag, from_tag)) is expected


@given(st.text("0123456789+-.() x٣", max_size=15))
def test_a_dialled_number_loses_its_visual_separators_as_translate_removes_them(user: str) -> None:
    assert _dialled(user) == user.translate(str.maketrans("", "", "-.() "))
