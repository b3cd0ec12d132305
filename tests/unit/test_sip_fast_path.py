"""The decision path's fast parsers agree with the general ones, value for value and error for error.

``parse_uri`` and ``parse_replaces`` match the usual shapes with one regex and hand everything else to
``_parse_uri_general`` / ``_parse_replaces_general`` (the parsers they were before); escaping and
unescaping take shortcuts for ASCII. Each shortcut is compared here with the general code on inputs
built from the characters that matter to the grammar.
"""

from __future__ import annotations

from urllib.parse import unquote

from hypothesis import example, given, settings
from hypothesis import strategies as st

from referee import sip
from referee.sip import SipSyntaxError

URI_CHARS = "sipSIPtel:@;=?&%.-_+/,$[]<>\" \t19aAfF3B4x!~*'()#é\x00"
REPLACES_CHARS = "abc12@;=-_.%!~*'\"()<>:/[]?{} \ttofrmgaylnTOFR"


def outcome(parse: object, text: str) -> object:
    try:
        return parse(text)  # type: ignore[operator]
    except SipSyntaxError as err:
        return ("error", err.reason)


@settings(max_examples=3000, deadline=None)
@given(st.text(URI_CHARS, max_size=40))
@example("sip:0:@A")
@example("sip:1003@lab.test?Replaces=c1%40h%3Bto-tag%3Da%3Bfrom-tag%3Db")
@example("sip:a;b@host:5060;user=phone?X=1&Y=%e2%82%ac")
@example("sip:host:99999")
@example("sip:1.2.3:0")
@example("sip:a@b@c")
def test_parse_uri_agrees_with_the_general_parser(text: str) -> None:
    for candidate in (text, "sip:" + text, "sip:" + text.replace(" ", "")):
        assert outcome(sip.parse_uri, candidate) == outcome(sip._parse_uri_general, candidate), candidate


@settings(max_examples=3000, deadline=None)
@given(st.text(REPLACES_CHARS, max_size=40), st.sampled_from(["", ";early-only", ";x=1", ";early-only;y"]))
@example("c1@h;to-tag=a;from-tag=b", "")
@example("c1@h;from-tag=b;to-tag=a", ";early-only")
@example("c1@h@x;to-tag=a;from-tag=b", "")
@example("c1;to-tag=a;from-tag=a", "")
def test_parse_replaces_agrees_with_the_general_parser(text: str, tail: str) -> None:
    for candidate in (text + tail, "c1@h;to-tag=" + text + ";from-tag=b" + tail, text.replace(" ", "")):
        assert outcome(sip.parse_replaces, candidate) == outcome(sip._parse_replaces_general, candidate)


@settings(max_examples=2000, deadline=None)
@given(st.text(REPLACES_CHARS + "é€\x7f&#", max_size=40))
def test_escapes_agree_with_the_general_escape(text: str) -> None:
    assert sip._escape_header_value(text) == sip._escape(text, sip._HEADER_SAFE)
    assert sip._escape_user(text) == sip._escape(text, sip._USER_SAFE)
    assert sip._escape_header_name(text) == sip._escape(text, sip._HEADER_SAFE)


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(
        st.sampled_from(["a", "%40", "%3b", "%3B", "%e2%82%ac", "%C3%A9", "%7F", "%00", "%ff", "x%"]),
        max_size=8,
    )
)
def test_unescape_agrees_with_unquote(pieces: list[str]) -> None:
    text = "".join(pieces)
    try:
        expected: object = unquote(text, errors="strict") if not sip._BAD_ESCAPE.search(text) else "bad"
    except UnicodeDecodeError:
        expected = "utf-8"
    got = outcome(lambda t: sip._unescape(t, "x"), text)
    if expected == "bad":
        assert got == ("error", "bad percent-escape in x")
    elif expected == "utf-8":
        assert got == ("error", "x is not valid UTF-8 once unescaped")
    else:
        assert got == expected
