"""Where a Refer-To's parameters land: URI parameters inside <>, header parameters after it.

The policy's URI-parameter allowlist (issue 13) relies on this split, on decoded names, and on
``uri_param_text`` writing a parameter back escaped.
"""

from __future__ import annotations

import pytest

from referee.sip import Uri, parse_refer_to, parse_uri, uri_param_text

# One of each class the policy tells apart: RFC 3261 19.1.1's, a Via parameter, a made-up one, a flag.
CLASSES = [
    ("maddr", "198.51.100.7"),
    ("ttl", "1"),
    ("transport", "ws"),
    ("lr", None),
    ("user", "phone"),
    ("method", "INVITE"),
    ("received", "198.51.100.7"),
    ("x-made-up", "1"),
]


def _text(name: str, value: str | None) -> str:
    return name if value is None else f"{name}={value}"


@pytest.mark.parametrize(("name", "value"), CLASSES)
def test_inside_brackets_a_parameter_belongs_to_the_uri(name: str, value: str | None) -> None:
    addr = parse_refer_to(f"<sip:1003@lab.test;{_text(name, value)}>")
    assert addr.uri.params == ((name, value),)
    assert addr.params == ()
    assert addr.uri.param(name) == ("" if value is None else value)


@pytest.mark.parametrize(("name", "value"), CLASSES)
def test_after_a_bare_uri_a_parameter_belongs_to_the_header(name: str, value: str | None) -> None:
    # RFC 3261 20.10: without <>, a ';' ends the URI. Many UAs read it as a URI parameter anyway.
    addr = parse_refer_to(f"sip:1003@lab.test;{_text(name, value)}")
    assert addr.uri.params == ()
    assert addr.params == ((name, value),)


def test_header_parameters_after_the_bracket_are_the_headers() -> None:
    addr = parse_refer_to("<sip:1003@lab.test;transport=tcp>;maddr=198.51.100.7;lr")
    assert addr.uri.params == (("transport", "tcp"),)
    assert addr.params == (("maddr", "198.51.100.7"), ("lr", None))


@pytest.mark.parametrize("spelling", ["MADDR", "mAddr", "m%61ddr", "%6D%61%64%64%72"])
def test_parameter_names_are_decoded_and_matched_without_case(spelling: str) -> None:
    uri = parse_uri(f"sip:1003@lab.test;{spelling}=198.51.100.7")
    assert uri.param("maddr") == "198.51.100.7"
    assert uri.params[0][0].lower() == "maddr"


def test_repeated_parameters_are_all_kept_in_order() -> None:
    uri = parse_uri("sip:1003@lab.test;method=INVITE;method=SUBSCRIBE")
    assert uri.params == (("method", "INVITE"), ("method", "SUBSCRIBE"))
    assert uri.param("method") == "INVITE"  # the first one: the one a check reads


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("lr", None, ";lr"),
        ("maddr", "198.51.100.7", ";maddr=198.51.100.7"),
        ("x", "a;b=c?d", ";x=a%3Bb%3Dc%3Fd"),
        ("x", "\r\nVia: evil", ";x=%0D%0AVia:%20evil"),
        ("a b", "", ";a%20b="),
    ],
)
def test_uri_param_text_is_escaped_as_the_uri_writes_it(name: str, value: str | None, text: str) -> None:
    assert uri_param_text(name, value) == text
    assert str(Uri("sip", host="h", params=((name, value),))) == f"sip:h{text}"
    assert parse_uri(f"sip:h{text}").params == ((name, value),)
