"""A bad policy file is refused with the key at fault and the problem, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from referee.policy import PolicyError, load_policy, parse_policy

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy.toml"
MINIMAL = """
[[tenants]]
domain = "lab.test"
pbx = "sip:127.0.0.20:5060"
"""


def test_example_policy_loads() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.id == "lab"
    assert policy.default_tenant.domain == "lab.test"
    assert [e.id for e in policy.default_tenant.extensions] == ["pbx1-extensions", "pbx2-extensions"]


def test_minimal_policy_takes_safe_defaults() -> None:
    policy = parse_policy(MINIMAL)
    assert policy.settings.allowed_schemes == {"sip", "sips"}
    assert policy.settings.allowed_methods == {"INVITE"}
    assert "call-id" in policy.settings.forbidden_headers
    assert policy.settings.require_replaces_party
    # URI parameters: the target's kind and method only; no transport; unlisted ones stripped
    assert policy.settings.allowed_uri_parameters == {"user", "method"}
    assert policy.settings.on_uri_parameter == "strip"
    assert policy.default_tenant.allowed_transports == frozenset()
    # no prefix list: numbers are denied, not waved through
    assert not policy.decide("<sip:+442079460000@lab.test>", referrer="sip:1@lab.test").allowed


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[policy]\nmax_depth = -1\n" + MINIMAL, "policy.max_depth", "at least 0"),
        ('[policy]\nmax_depth = "3"\n' + MINIMAL, "policy.max_depth", "an integer"),
        ("[policy]\nmax_depth = true\n" + MINIMAL, "policy.max_depth", "an integer"),
        ('[policy]\ntel = "maybe"\n' + MINIMAL, "policy.tel", "convert, reject"),
        ("[policy]\nmax_dpeth = 3\n" + MINIMAL, "policy.max_dpeth", "unknown key"),
        ('[policy]\nallowed_schemes = "sip"\n' + MINIMAL, "policy.allowed_schemes", "an array"),
        ("[policy]\nallowed_schemes = [1]\n" + MINIMAL, "policy.allowed_schemes[0]", "non-empty string"),
        ('[policy]\nforbidden_headers = ["Replaces"]\n' + MINIMAL, "policy.forbidden_headers", "Replaces"),
        ('[policy]\ndefault_tenant = "nope.test"\n' + MINIMAL, "policy.default_tenant", "nope.test"),
        ("[policy]\n", "tenants", "at least one"),
        ('[[tenants]]\npbx = "sip:127.0.0.20"\n', "tenants[0].domain", "is required"),
        ('[[tenants]]\ndomain = "a.test"\npbx = "http://x"\n', "tenants[0].pbx", "sip: or sips:"),
        ('[[tenants]]\ndomain = "a.test"\npbx = "sip:"\n', "tenants[0].pbx", "bad SIP URI"),
        (MINIMAL + 'country_code = "+44"\n', "tenants[0].country_code", "digits"),
        (
            MINIMAL + '[[tenants.extensions]]\npattern = "1[0-9"\n',
            "tenants[0].extensions[0].pattern",
            "regular",
        ),
        (MINIMAL + '[[tenants]]\ndomain = "LAB.test"\npbx = "sip:h"\n', "tenants[1].aliases", "lab.test"),
        ('[prefixes]\ndeny = [{prefix = "900"}]\n' + MINIMAL, "prefixes.deny[0].prefix", "E.164"),
        (
            '[prefixes]\ndeny = [{prefix = "+9", why = "x"}]\n' + MINIMAL,
            "prefixes.deny[0].why",
            "unknown key",
        ),
        ('[prefixes]\nnumbers_default = "yes"\n' + MINIMAL, "prefixes.numbers_default", "allow, deny"),
        (
            MINIMAL + '[[overrides]]\nid = "x"\nreferrer = "nonsense"\n',
            "overrides[0].referrer",
            "bad SIP URI",
        ),
        (MINIMAL + '[[overrides]]\nreferrer = "sip:1@lab.test"\n', "overrides[0].id", "is required"),
        ("surprise = 1\n" + MINIMAL, "surprise", "unknown key"),
        (
            '[policy]\nallowed_uri_parameters = ["user", "MADDR"]\n' + MINIMAL,
            "policy.allowed_uri_parameters",
            "maddr is never allowed",
        ),
        (
            '[policy]\nallowed_uri_parameters = ["transport"]\n' + MINIMAL,
            "policy.allowed_uri_parameters",
            "allowed_transports",
        ),
        ('[policy]\nallowed_uri_parameters = ["a b"]\n' + MINIMAL, "policy.allowed_uri_parameters", "name"),
        ('[policy]\non_uri_parameter = "drop"\n' + MINIMAL, "policy.on_uri_parameter", "strip, reject"),
        (MINIMAL + 'allowed_transports = ["udp", "w s"]\n', "tenants[0].allowed_transports[1]", "transport"),
        (MINIMAL + 'allowed_transports = "udp"\n', "tenants[0].allowed_transports", "an array"),
        (MINIMAL + "allowed_transport = []\n", "tenants[0].allowed_transport", "unknown key"),
        ("[policy\n", "", "not valid TOML"),
    ],
)
def test_bad_policy_names_key_and_problem(text: str, key: str, problem: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    assert caught.value.key == key
    assert problem in str(caught.value)
    assert str(caught.value).startswith(f"{key}: " if key else "")


def test_unreadable_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'[policy]\nid = "caf\xe9"\n')
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(latin1)


def test_extension_patterns_are_compiled_once_at_load() -> None:
    policy = load_policy(EXAMPLE)
    pattern = policy.default_tenant.extensions[0].pattern
    assert pattern.fullmatch("1003") and not pattern.fullmatch("10031")


def test_send_as_lets_an_authenticated_referrer_present_another_from_user() -> None:
    policy = parse_policy(
        MINIMAL
        + '[[overrides]]\nid = "desk"\nreferrer = "sip:1001@lab.test"\nsend_as = ["1000"]\n'
        + '[[overrides]]\nid = "console"\nreferrer = "sip:1005@LAB.test"\nsend_as = ["*"]\n'
    )
    assert policy.may_send_as("sip:1001@lab.test", "1000")
    assert not policy.may_send_as("sip:1001@lab.test", "1002")
    assert not policy.may_send_as("sip:1002@lab.test", "1000")  # no override: nobody else
    assert policy.may_send_as("sip:1005@lab.test", "anything")
    assert not policy.may_send_as("not a uri", "1000")


def test_send_as_must_list_strings() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(MINIMAL + '[[overrides]]\nid = "d"\nreferrer = "sip:1@lab.test"\nsend_as = [""]\n')
    assert caught.value.key == "overrides[0].send_as[0]"
