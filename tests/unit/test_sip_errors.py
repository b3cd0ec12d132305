"""Malformed input raises SipSyntaxError, with a reason, and nothing else; work stays bounded.

Work is measured by counting, never by timing: the Python lines sip.py executes for a parse are
counted with a trace function, and must grow at most linearly with the input, and not at all
once the input is past MAX_VALUE_LENGTH (it is refused before any parsing).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from referee import sip
from referee.sip import (
    MAX_VALUE_LENGTH,
    SipSyntaxError,
    parse_header_line,
    parse_name_addr,
    parse_refer_to,
    parse_referred_by,
    parse_replaces,
    parse_sipfrag,
    parse_uri,
)

Parser = Callable[[str], object]
PARSERS: dict[str, Parser] = {
    "uri": parse_uri,
    "name_addr": parse_name_addr,
    "refer_to": parse_refer_to,
    "referred_by": parse_referred_by,
    "replaces": parse_replaces,
    "sipfrag": parse_sipfrag,
    "header_line": parse_header_line,
}

BAD = [
    # URIs
    ("uri", "alice@atlanta.example.com", "no scheme"),
    ("uri", ":alice@h", "empty scheme"),
    ("uri", "1sip:alice@h", "scheme starts with a digit"),
    ("uri", "s_p:alice@h", "bad scheme character"),
    ("uri", "http:", "empty opaque URI"),
    ("uri", "sip:a%ZZ@h", "bad escape %ZZ"),
    ("uri", "sip:a%4@h", "truncated escape %4"),
    ("uri", "sip:a@h;x=%", "lone %"),
    ("uri", "sip:a%FF@h", "not UTF-8 once unescaped"),
    ("uri", "sip:a%C3@h", "truncated UTF-8 sequence"),
    ("uri", "sip:a%ED%A0%80@h", "UTF-8 encoded surrogate"),
    ("uri", "sip:a\x00b@h", "NUL"),
    ("uri", "sip:a\x07@h", "control character"),
    ("uri", "sip:a\x7f@h", "DEL"),
    ("uri", "sip:a b@h", "space"),
    ("uri", "sip:a@h\r\n", "CRLF"),
    ("uri", 'sip:"a"@h', "quote"),
    ("uri", "sip:<a>@h", "angle bracket"),
    ("uri", "sip:@h", "empty user"),
    ("uri", "sip:alice@", "empty host"),
    ("uri", "sip:alice@:5060", "empty host with port"),
    ("uri", "sip:h:70000", "port out of range"),
    ("uri", "sip:h:0", "port zero"),
    ("uri", "sip:h:", "empty port"),
    ("uri", "sip:h:50a", "non-digit port"),
    ("uri", "sip:h:000005060", "six-digit port"),
    ("uri", "sip:[::1", "unterminated IPv6 reference"),
    ("uri", "sip:[1::2::3]", "bad IPv6"),
    ("uri", "sip:[12345::]", "bad IPv6 group"),
    ("uri", "sip:[fe80::1%eth0]", "IPv6 zone suffix"),
    ("uri", "sip:u@[fe80::1%25eth0]:5060", "escaped IPv6 zone suffix"),
    ("uri", "sip:[]", "empty IPv6 reference"),
    ("uri", "sip:[::1]x", "junk after IPv6 reference"),
    ("uri", "sip:::1", "IPv6 without brackets"),
    ("uri", "sip:a@256.1.1.1", "bad IPv4"),
    ("uri", "sip:a@1.2.3", "short IPv4"),
    ("uri", "sip:a@-bad.example.com", "label starts with '-'"),
    ("uri", "sip:a@host..com", "empty label"),
    ("uri", "sip:a@exa_mple.com", "underscore in host"),
    ("uri", "sip:a@example.1com", "top label starts with a digit"),
    ("uri", "sip:a@h;", "empty URI parameter"),
    ("uri", "sip:a@h;=x", "URI parameter without name"),
    ("uri", "sip:a@h?", "empty header part"),
    ("uri", "sip:a@h?a=b&&c=d", "empty embedded header"),
    ("uri", "sip:a@h?b@d=x", "bad embedded header name"),
    ("uri", "sip:a@h?=x", "embedded header without name"),
    ("uri", "tel:+1-212-555-0100?x=y", "tel with headers"),
    ("uri", "tel:", "tel without number"),
    ("uri", "tel:;phone-context=+1", "tel with only parameters"),
    ("uri", "sip:" + "a" * MAX_VALUE_LENGTH, "longer than MAX_VALUE_LENGTH"),
    # name-addr, Refer-To, Referred-By
    ("name_addr", "", "empty"),
    ("name_addr", " \t\r\n ", "only whitespace"),
    ("name_addr", "<sip:alice@atlanta.example.com", "unterminated <"),
    ("name_addr", '"Bob <sip:b@h>', "unterminated quoted display name"),
    ("name_addr", '"Bob\\', "display name ends in a backslash"),
    ("name_addr", '"Bob" sip:b@h', "quoted display name without <>"),
    ("name_addr", "B,ob <sip:b@h>", "comma in an unquoted display name"),
    ("name_addr", "B@b <sip:b@h>", "'@' in an unquoted display name"),
    ("name_addr", "<sip:b@h>;", "empty header parameter"),
    ("name_addr", "<sip:b@h>;tag=", "header parameter without value"),
    ("name_addr", '<sip:b@h>;tag="1', "unterminated quoted parameter value"),
    ("name_addr", "<sip:b@h> junk", "junk after the address"),
    ("name_addr", "<sip:b@h>>", "stray >"),
    ("name_addr", "<>", "empty URI in <>"),
    ("name_addr", "sip:b@h?Replaces=x", "headers outside <>"),
    ("name_addr", "<sip:b@h;x=%G0>", "bad escape inside <>"),
    ("refer_to", "<sip:a@h>, <sip:b@h>", "two Refer-To values"),
    ("refer_to", "sip:a@h, sip:b@h", "two bare Refer-To values"),
    ("refer_to", '"A" <sip:a@h>;x=1,"B" <sip:b@h>', "two values with parameters"),
    ("refer_to", "(whatever URI)", "RFC 3515's placeholder"),
    ("referred_by", "<sip:referrer@referrer.example>;cid=", "cid without value"),
    ("referred_by", '<sip:referrer@referrer.example>;cid="x', "unterminated cid"),
    # Replaces
    ("replaces", "", "empty"),
    ("replaces", ";to-tag=1;from-tag=2", "empty Call-ID"),
    ("replaces", "abc@;to-tag=1;from-tag=2", "empty Call-ID host half"),
    ("replaces", "a b@h;to-tag=1;from-tag=2", "space in Call-ID"),
    ("replaces", "a@b@c;to-tag=1;from-tag=2", "two '@' in Call-ID"),
    ("replaces", "abc@h;from-tag=2", "missing to-tag"),
    ("replaces", "abc@h;to-tag=1", "missing from-tag"),
    ("replaces", "abc@h", "no tags"),
    ("replaces", "abc@h;to-tag=1;from-tag=2;from-tag=3", "duplicated from-tag"),
    ("replaces", "abc@h;to-tag=1;TO-TAG=1;from-tag=2", "duplicated to-tag, other case"),
    ("replaces", "abc@h;to-tag=;from-tag=2", "empty to-tag"),
    ("replaces", "abc@h;to-tag;from-tag=2", "to-tag without '='"),
    ("replaces", "abc@h;to-tag=a b;from-tag=2", "space in to-tag"),
    ("replaces", "abc@h;to-tag=1;from-tag=2;early-only=yes", "early-only with a value"),
    ("replaces", "abc@h;to-tag=1;from-tag=2;", "empty parameter"),
    ("replaces", "abc@h;to-tag=1;from-tag=2;x=a b", "bad generic parameter value"),
    ("replaces", "abc@h;to-tag=1;from-tag=2;x=", "empty generic parameter value"),
    ("replaces", "abc@h;to-tag=1;from-tag=2;x=" + '"', "lone quote as a value"),
    # sipfrag
    ("sipfrag", "", "empty body"),
    ("sipfrag", "hello", "no status line"),
    ("sipfrag", "Via: SIP/2.0/UDP h\r\n", "header without status line"),
    ("sipfrag", "INVITE sip:a@h SIP/2.0", "request line"),
    ("sipfrag", "HTTP/1.1 200 OK", "not SIP"),
    ("sipfrag", "SIP/2 200 OK", "version without minor"),
    ("sipfrag", "SIP/2.x 200 OK", "non-digit version"),
    ("sipfrag", "SIP/2.0 99 Low", "two-digit code"),
    ("sipfrag", "SIP/2.0 2000 OK", "four-digit code"),
    ("sipfrag", "SIP/2.0 700 Bad", "code above 6xx"),
    ("sipfrag", "SIP/2.0 099 Low", "code below 1xx"),
    ("sipfrag", "SIP/2.0  200 OK", "two spaces before the code"),
    ("sipfrag", "SIP/2.0 200 O\x01K", "control character in reason"),
    ("sipfrag", "SIP/2.0 200 OK" + " " * (4 * MAX_VALUE_LENGTH), "body too long"),
    # header lines
    ("header_line", "no colon here", "no colon"),
    ("header_line", ": value", "empty name"),
    ("header_line", "Refer To: sip:a@h", "space in name"),
    ("header_line", "Refer-To;x: sip:a@h", "';' in name"),
]


@pytest.mark.parametrize(("parser", "text"), [(p, t) for p, t, _ in BAD], ids=[why for _, _, why in BAD])
def test_malformed_input_raises_sip_syntax_error(parser: str, text: str) -> None:
    with pytest.raises(SipSyntaxError) as info:
        PARSERS[parser](text)
    assert isinstance(info.value.reason, str)
    assert info.value.reason.strip()
    assert str(info.value) == info.value.reason
    assert "\n" not in info.value.reason  # fit for a SIP reason phrase


def test_bytes_sipfrag_errors_too() -> None:
    with pytest.raises(SipSyntaxError):
        parse_sipfrag(b"\xff\xfe junk")


# --- nothing but SipSyntaxError, whatever the input ---------------------------------------------

grammar_noise = st.text(st.sampled_from(list("sip:tel@;=?&%<>\"\\ \t\r\n,.[]0123456789aAfF-_+~*#/$'()!`")))
arbitrary_text = st.one_of(
    st.text(),
    grammar_noise,
    st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.binary().map(lambda b: b.decode("latin-1")),
)
prefixes = st.sampled_from(
    ["", "sip:", "sips:a@", "tel:", "<sip:", '"', "SIP/2.0 ", "abc@h;to-tag=1;", "r: "]
)


def _parse_or_syntax_error(parse: Parser, text: Any) -> None:
    try:
        parse(text)
    except SipSyntaxError as error:
        assert error.reason


@pytest.mark.parametrize("parser", PARSERS)
@given(prefix=prefixes, text=arbitrary_text)
@example(prefix="sip:", text="[")
@example(prefix="sip:", text="[\udcff]")
@example(prefix="sip:", text="a@[::1]:")
@example(prefix="<sip:", text="a@h>;x=\udc80")
@example(prefix="", text="sip:h?%3D")
@example(prefix="", text="\ud800")
def test_arbitrary_text_parses_or_raises_sip_syntax_error(parser: str, prefix: str, text: str) -> None:
    _parse_or_syntax_error(PARSERS[parser], prefix + text)


@given(st.binary())
@example(b"SIP/2.0 200 \xff\xfe")
@example(b"\xef\xbb\xbfSIP/2.0 200 OK")
def test_arbitrary_bytes_sipfrag(body: bytes) -> None:
    _parse_or_syntax_error(parse_sipfrag, body)
    _parse_or_syntax_error(parse_sipfrag, b"SIP/2.0 200 " + body)


# --- pathological inputs: refused past the limit, linear work up to it -------------------------


def _cut(text: str, size: int) -> str:
    assert len(text) >= size
    return text[:size]


def _repeat(head: str, unit: str, tail: str = "") -> Callable[[int], str]:
    def build(size: int) -> str:
        body = size - len(head) - len(tail)
        return head + _cut(unit * (body // len(unit) + 1), body) + tail

    return build


SHAPES: dict[str, Callable[[int], str]] = {
    "open angles": _repeat("", "<"),
    "close angles": _repeat("<sip:h>", ">"),
    "host labels": _repeat("sip:", "a."),
    "long label": _repeat("sip:", "a"),
    "semicolons": _repeat("", ";"),
    "uri params": _repeat("sip:h", ";a"),
    "uri params with values": _repeat("sip:h", ";a=b"),
    "header params": _repeat("<sip:h>", ";a"),
    "spaced header params": _repeat("<sip:h>", " ; a = b "),
    "long quoted display": _repeat('"', "x", '" <sip:h>'),
    "escaped quotes": _repeat('"', '\\"', '" <sip:h>'),
    "unterminated quote": _repeat('"', "\\x"),
    "long quoted param": _repeat('<sip:h>;p="', "x", '"'),
    "ampersands": _repeat("sip:h?", "&"),
    "many headers": _repeat("<sip:h?", "a=b&", "a=b>"),
    "percent signs": _repeat("sip:", "%"),
    "escapes": _repeat("sip:", "%41", "@h"),
    "multibyte escapes": _repeat("sip:", "%C3%A9", "@h"),
    "bad escape at end": _repeat("sip:", "a", "%4@h"),
    "commas": _repeat("", ","),
    "commas in quotes": _repeat('"', ",", '" <sip:h>'),
    "brackets": _repeat("sip:", "["),
    "ipv6 colons": _repeat("sip:[", ":", "]"),
    "digits port": _repeat("sip:h:", "9"),
    "at signs": _repeat("sip:", "@"),
    "replaces params": _repeat("abc@h", ";x"),
    "replaces tags": _repeat("abc@h;from-tag=1", ";to-tag=1"),
    "long call-id": _repeat("", "a", ";to-tag=1;from-tag=2"),
    "whitespace": _repeat("", " \t"),
    "folded lines": _repeat("<sip:h>", "\r\n ;a"),
    "long reason": _repeat("SIP/2.0 200 ", "x"),
}


class LineCounter:
    """Counts the lines of sip.py executed while it is active (a trace function, no clock)."""

    def __init__(self) -> None:
        self.lines = 0
        self._file = sip.__file__

    def _local(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "line":
            self.lines += 1
        return self._local

    def _global(self, frame: FrameType, event: str, arg: object) -> Any:
        return self._local if frame.f_code.co_filename == self._file else None

    def run(self, parse: Parser, text: str) -> int:
        previous = sys.gettrace()
        self.lines = 0
        sys.settrace(self._global)
        try:
            _parse_or_syntax_error(parse, text)
        finally:
            sys.settrace(previous)
        return self.lines


def _lines(parse: Parser, text: str) -> int:
    return LineCounter().run(parse, text)


# Parsers that take one header value; parse_sipfrag takes a whole body (4 * MAX_VALUE_LENGTH).
VALUE_PARSERS = ["uri", "name_addr", "refer_to", "referred_by", "replaces", "header_line"]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("parser", PARSERS)
def test_max_length_input_of_every_shape_finishes(parser: str, shape: str) -> None:
    limit = 4 * MAX_VALUE_LENGTH if parser == "sipfrag" else MAX_VALUE_LENGTH
    text = SHAPES[shape](limit)
    assert len(text) == limit
    _parse_or_syntax_error(PARSERS[parser], text)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("parser", PARSERS)
def test_work_grows_at_most_linearly(parser: str, shape: str) -> None:
    limit = 4 * MAX_VALUE_LENGTH if parser == "sipfrag" else MAX_VALUE_LENGTH
    parse = PARSERS[parser]
    half, full = _lines(parse, SHAPES[shape](limit // 2)), _lines(parse, SHAPES[shape](limit))
    # Doubling the input may at most double the work (plus a constant for the fixed parts)...
    assert full <= 2 * half + 200, (half, full)
    # ...and the work per character stays small.
    assert full <= 40 * limit + 200, full


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("parser", VALUE_PARSERS)
def test_oversize_values_are_refused_before_parsing(parser: str, shape: str) -> None:
    parse = PARSERS[parser]
    small = _lines(parse, SHAPES[shape](MAX_VALUE_LENGTH + 1))
    huge = _lines(parse, SHAPES[shape](25 * MAX_VALUE_LENGTH))
    assert huge == small  # the work does not depend on how far past the limit the input goes
    assert small <= 20
    with pytest.raises(SipSyntaxError, match=str(MAX_VALUE_LENGTH)):
        parse(SHAPES[shape](MAX_VALUE_LENGTH + 1))


@pytest.mark.parametrize("parser", VALUE_PARSERS)
def test_a_hundred_thousand_open_angles(parser: str) -> None:
    with pytest.raises(SipSyntaxError, match="longer than"):
        PARSERS[parser]("<" * 100_000)


def test_oversize_sipfrag_is_refused() -> None:
    with pytest.raises(SipSyntaxError, match="too long"):
        parse_sipfrag("SIP/2.0 200 OK\r\n" + "x" * (4 * MAX_VALUE_LENGTH))
    with pytest.raises(SipSyntaxError, match="too long"):
        parse_sipfrag(b"SIP/2.0 200 OK\r\n" + b"x" * (4 * MAX_VALUE_LENGTH))


@pytest.mark.parametrize("shape", ["commas", "commas in quotes", "open angles"])
def test_oversize_refer_to_with_a_comma_is_refused_before_the_comma_scan(shape: str) -> None:
    # parse_refer_to once looked for list commas across the whole value before the length check.
    small = _lines(parse_refer_to, SHAPES[shape](MAX_VALUE_LENGTH + 1) + ",")
    huge = _lines(parse_refer_to, SHAPES[shape](25 * MAX_VALUE_LENGTH) + ",")
    assert huge == small <= 20
