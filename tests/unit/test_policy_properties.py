"""Properties of the policy's URI-parameter allowlist (issue 13), over generated Refer-To values.

Whatever parameters a Refer-To carries, in <> or after it, in any case or escaping: an allowed
decision's Refer-To carries only parameters the policy lists, each name once, no header
parameter, and reads back as itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from referee.policy import Decision, Policy, load_policy, parse_policy
from referee.sip import NameAddr, Uri, parse_refer_to

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy.toml"
TEXT = EXAMPLE.read_text()
POLICIES = {
    "strip": load_policy(EXAMPLE),
    "reject": parse_policy(TEXT.replace('on_uri_parameter = "strip"', 'on_uri_parameter = "reject"')),
    "foreign-allowed": parse_policy(TEXT.replace('foreign_domains = "reject"', 'foreign_domains = "allow"')),
}
REFERRERS = ["sip:1002@lab.test", "sip:1001@lab.test"]  # bob, and the operator who may dial abroad

_names = st.one_of(
    st.sampled_from(["maddr", "MADDR", "mAdDr", "ttl", "transport", "TRANSPORT", "lr", "user", "User"]),
    st.sampled_from(["method", "received", "branch", "comp", "gr", "x-made-up"]),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=6),
)
_values = st.one_of(
    st.none(),
    st.sampled_from(["udp", "tcp", "TCP", "ws", "tls", "", "198.51.100.7", "phone", "ip", "INVITE", "1"]),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=6),
)
_params = st.lists(st.tuples(_names, _values), max_size=5).map(tuple)
_header_params = st.lists(
    st.tuples(
        st.sampled_from(["maddr", "transport", "lr", "x", "user"]), st.none() | st.sampled_from(["1", "ws"])
    ),
    max_size=3,
).map(tuple)
_users = st.sampled_from(
    ["1003", "2001", "02079460000", "+442079460000", "0033123456789", "carol", "09001234567"]
)
_hosts = st.sampled_from(["lab.test", "LAB.test", "127.0.0.10", "partner.example"])


@st.composite
def refer_tos(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["sip", "sips", "tel"]))
    user = draw(_users)
    if scheme == "tel":
        uri = Uri("tel", user=user, params=draw(_params))
    else:
        uri = Uri(scheme, user=user, host=draw(_hosts), params=draw(_params))
    if draw(st.booleans()):
        return str(NameAddr(uri, draw(st.none() | st.just("Carol")), draw(_header_params)))
    # a bare addr-spec: whatever follows the URI's first ';' is header parameters
    return str(uri)


def allowed_only(policy: Policy, decision: Decision) -> None:
    assert decision.refer_to is not None and decision.tenant is not None
    addr = parse_refer_to(decision.refer_to)
    assert addr.params == ()
    assert str(addr) == decision.refer_to
    transports = policy.tenants[decision.tenant].allowed_transports
    names = [name.lower() for name, _ in addr.uri.params]
    assert len(names) == len(set(names)), decision.refer_to
    for name, value in addr.uri.params:
        lower = name.lower()
        assert lower != "maddr"
        if lower == "transport":
            assert value is not None and value.lower() in transports, decision.refer_to
        else:
            assert lower in policy.settings.allowed_uri_parameters, decision.refer_to


@settings(max_examples=400)
@given(refer_to=refer_tos(), referrer=st.sampled_from(REFERRERS))
@example(refer_to="<sip:1003@lab.test;maddr=198.51.100.7;ttl=1>", referrer=REFERRERS[0])
@example(refer_to="sip:1003@lab.test;maddr=198.51.100.7", referrer=REFERRERS[0])
@example(refer_to="<sip:1003@lab.test;method=INVITE;method=SUBSCRIBE>", referrer=REFERRERS[0])
@example(refer_to="<sip:bob@partner.example;transport=ws;m%61ddr=1>", referrer=REFERRERS[0])
@pytest.mark.parametrize("name", list(POLICIES))
def test_an_allowed_refer_to_carries_only_allowed_parameters(name: str, refer_to: str, referrer: str) -> None:
    policy = POLICIES[name]
    decision = policy.decide(refer_to, referrer=referrer)
    if decision.allowed:
        allowed_only(policy, decision)
    stripped = [step for step in decision.trace if step.rule == "params" and step.outcome == "strip"]
    if name == "reject":
        # refusing mode never strips: what it lets through it let through whole
        assert stripped == []


@settings(max_examples=200)
@given(refer_to=refer_tos())
def test_strip_and_reject_agree_on_what_a_clean_refer_to_becomes(refer_to: str) -> None:
    lenient = POLICIES["strip"].decide(refer_to, referrer=REFERRERS[0])
    strict = POLICIES["reject"].decide(refer_to, referrer=REFERRERS[0])
    if strict.allowed:
        assert lenient.allowed and lenient.refer_to == strict.refer_to
    elif strict.rule == "params":
        assert lenient.rule != "params"  # stripping never refuses
        assert any(step.rule == "params" and step.outcome == "strip" for step in lenient.trace)
    else:
        assert (lenient.allowed, lenient.status, lenient.rule) == (False, strict.status, strict.rule)
