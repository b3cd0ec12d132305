"""Round trips of referee.sip: ``parse(str(x)) == x``, and ``str(parse(s))`` is a fixed point.

The strategies build values the way the module documents them: fields hold *decoded* text
(``str()`` re-escapes), header-parameter names are tokens and their values are tokens or
anything that can be quoted, Replaces tags are tokens and its Call-ID is RFC 3261 ``word``s.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from referee.sip import (
    MAX_VALUE_LENGTH,
    NameAddr,
    Replaces,
    SipSyntaxError,
    StatusLine,
    Uri,
    parse_name_addr,
    parse_refer_to,
    parse_referred_by,
    parse_replaces,
    parse_sipfrag,
    parse_uri,
)

ROUND_TRIPS = settings(max_examples=300)

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
TOKEN_CHARS = ALNUM + "-.!%*_+`'~"
WORD_CHARS = TOKEN_CHARS + '()<>:\\"/[]?{}'

# Any code point but a lone surrogate: these need escaping, quoting, or both.
any_char = st.characters(exclude_categories=("Cs",))
# Weighted towards what the grammar treats specially.
tricky_char = st.sampled_from(list(";?&=@:%<>\"\\ ,/[]#*+$'()\t\r\n\x00\x7fé€😀"))
any_text = st.text(st.one_of(any_char, tricky_char), max_size=12)
nonempty_text = st.text(st.one_of(any_char, tricky_char), min_size=1, max_size=12)
tokens = st.text(st.sampled_from(TOKEN_CHARS), min_size=1, max_size=10)

# --- hosts -------------------------------------------------------------------------------

_label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
_top_label = st.from_regex(r"[A-Za-z]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
hostnames = st.builds(
    lambda labels, top, dot: ".".join([*labels, top]) + dot,
    st.lists(_label, max_size=3),
    _top_label,
    st.sampled_from(["", "."]),
)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6_refs = st.ip_addresses(v=6).flatmap(lambda a: st.sampled_from([f"[{a}]", f"[{a.exploded}]"]))
hosts = st.one_of(hostnames, ipv4, ipv6_refs)
ports = st.none() | st.integers(1, 65535)

# --- URIs --------------------------------------------------------------------------------

uri_params = st.lists(st.tuples(nonempty_text, st.none() | any_text), max_size=3).map(tuple)
uri_headers = st.lists(st.tuples(tokens, any_text), max_size=3).map(tuple)


@st.composite
def sip_uris(draw: st.DrawFn) -> Uri:
    user = draw(st.none() | nonempty_text)
    password = draw(st.none() | any_text) if user is not None else None
    return Uri(
        scheme=draw(st.sampled_from(["sip", "sips"])),
        user=user,
        password=password,
        host=draw(hosts),
        port=draw(ports),
        params=draw(uri_params),
        headers=draw(uri_headers),
    )


tel_uris = st.builds(lambda number, params: Uri("tel", user=number, params=params), nonempty_text, uri_params)
_opaque_chars = "".join(chr(c) for c in range(33, 127) if chr(c) not in '<>"')
opaque_uris = st.builds(
    lambda scheme, rest: Uri(scheme, opaque=rest),
    st.from_regex(r"[a-z][a-z0-9+.-]{0,6}", fullmatch=True).filter(lambda s: s not in ("sip", "sips", "tel")),
    st.text(st.sampled_from(_opaque_chars), min_size=1, max_size=20),
)
uris = st.one_of(sip_uris(), tel_uris, opaque_uris)

# --- name-addr, Replaces, status lines -----------------------------------------------------

header_param_values = st.none() | tokens | any_text
name_addrs = st.builds(
    NameAddr,
    uri=uris,
    display_name=st.none() | any_text | st.sampled_from(['"', "\\", '\\"', 'a "quoted" \\ name', "Bob, Jr."]),
    params=st.lists(st.tuples(tokens, header_param_values), max_size=3).map(tuple),
)

words = st.text(st.sampled_from(WORD_CHARS), min_size=1, max_size=12)
call_ids = st.one_of(words, st.builds(lambda a, b: f"{a}@{b}", words, words))
_reserved = {"to-tag", "from-tag", "early-only"}
replaces_extra = st.lists(
    st.tuples(
        tokens.filter(lambda n: n.lower() not in _reserved),
        st.none() | tokens | st.text(any_char.filter(lambda c: c != ";"), max_size=8).map(lambda t: f'"{t}"'),
    ),
    max_size=3,
).map(tuple)
replaces_values = st.builds(Replaces, call_ids, tokens, tokens, st.booleans(), replaces_extra)

# The reason phrase is read up to the end of the line, without control characters, and stripped.
reasons = st.text(st.characters(exclude_categories=("Cs", "Cc")) | st.just("\t"), max_size=20).map(str.strip)
status_lines = st.builds(
    StatusLine,
    st.integers(100, 699),
    reasons,
    st.builds(lambda a, b: f"SIP/{a}.{b}", st.integers(0, 99), st.integers(0, 99)),
)


# --- parse(str(x)) == x ------------------------------------------------------------------


def _fits(text: str) -> str:
    assume(len(text) <= MAX_VALUE_LENGTH)
    return text


@ROUND_TRIPS
@given(uris)
@example(Uri("sip", user="a;b?c@d", password="p:w@", host="h", params=(("k=1", "v;w?"),)))
@example(Uri("sip", host="[::1]", port=5061, headers=(("Replaces", "id@h;to-tag=1;from-tag=2"),)))
@example(Uri("tel", user="+1 (212) 555-0100#*", params=(("phone-context", "+1"),)))
@example(Uri("sip", user="%", password="", host="a.b.", params=(("lr", None), ("x", ""))))
def test_uri_round_trip(uri: Uri) -> None:
    assert parse_uri(_fits(str(uri))) == uri


@ROUND_TRIPS
@given(name_addrs)
@example(NameAddr(Uri("sip", user="bob", host="h"), 'say "hi" \\o/', (("cid", "a b;c"), ("lr", None))))
@example(NameAddr(Uri("sip", host="h"), "", (("p", ""), ("q", "[::1]:5060"))))
def test_name_addr_round_trip(value: NameAddr) -> None:
    text = _fits(str(value))
    assert parse_name_addr(text) == value
    assert parse_refer_to(text) == value
    assert parse_referred_by(text) == value


@ROUND_TRIPS
@given(replaces_values)
@example(Replaces('a"b\\c@<d>', "1", "2", True, (("x", '"q=1"'), ("y", None))))
def test_replaces_round_trip(value: Replaces) -> None:
    assert parse_replaces(_fits(str(value))) == value


@ROUND_TRIPS
@given(status_lines)
@example(StatusLine(200, ""))
@example(StatusLine(603, "Declined\tby user", "SIP/2.0"))
def test_status_line_round_trip(value: StatusLine) -> None:
    assert parse_sipfrag(str(value)) == value
    assert parse_sipfrag(str(value).encode() + b"\r\nContent-Length: 0\r\n") == value


def test_replaces_embedded_in_a_refer_to_round_trips() -> None:
    replaces = Replaces("12345@192.168.118.3", "12345", "5FFE-3994")
    target = NameAddr(
        Uri("sip", user="dave", host="denver.example.org", headers=(("Replaces", str(replaces)),))
    )
    parsed = parse_refer_to(str(target))
    assert parsed == target
    header = parsed.uri.header("replaces")
    assert header is not None
    assert parse_replaces(header) == replaces


# --- str(parse(s)) is a fixed point ---------------------------------------------------------

# Raw text is put together from pieces that matter to the grammar, escapes good and bad,
# optional whitespace and odd spellings included, so that a fair share of it parses.
_raw_piece = st.sampled_from(
    [
        "a", "Z", "9", "-", ".", "_", "!", "~", "'", "(", ")", "$", "+", "/", "&", "=", ",", "é",
        "%40", "%3D", "%3b", "%C3%A9", "%25", "%20", "[", "]", ":", "#", "*", "%", "%4", "%ZZ", "@",
    ]
)  # fmt: skip
_raw_segment = st.lists(_raw_piece, max_size=5).map("".join)
_raw_param = st.builds(
    lambda name, value: f";{name}" + ("" if value is None else f"={value}"),
    _raw_segment,
    st.none() | _raw_segment,
)
raw_uris = st.builds(
    lambda scheme, userinfo, host, port, params, headers: f"{scheme}:{userinfo}{host}{port}{params}{headers}",
    st.sampled_from(["sip", "sips", "SIP", "Sips", "tel", "http", "urn"]),
    st.one_of(
        st.just(""),
        st.builds(lambda u: f"{u}@", _raw_segment),
        st.builds(lambda u, p: f"{u}:{p}@", _raw_segment, _raw_segment),
    ),
    st.one_of(hosts, st.sampled_from(["", "h", "[::1", "1.2.3.256", "a..b", "-a", "[fe80::1]"])),
    st.sampled_from(["", ":5060", ":00080", ":0", ":65536", ":", ":x"]),
    st.lists(_raw_param, max_size=3).map("".join),
    st.one_of(
        st.just(""),
        st.lists(st.builds(lambda n, v: f"{n}={v}", _raw_segment, _raw_segment), min_size=1, max_size=3).map(
            lambda items: "?" + "&".join(items)
        ),
        st.sampled_from(["?Call-ID%3D1%40x", "?", "?a=b&&c=d", "?Replaces=a%3Bto-tag%3D1%3Bfrom-tag%3D2"]),
    ),
)
_lws = st.sampled_from(["", " ", "  ", "\t", "\r\n "])
_raw_quoted = st.lists(
    st.sampled_from(["a", " ", ",", ";", "<", ">", "\\\\", '\\"', "é", "\t"]), max_size=6
).map(lambda parts: '"' + "".join(parts) + '"')
_raw_header_param = st.builds(
    lambda ws1, name, ws2, value: f"{ws1};{ws2}{name}" + ("" if value is None else f"{ws2}={ws2}{value}"),
    _lws,
    tokens,
    _lws,
    st.none() | tokens | _raw_quoted | st.sampled_from(["[::1]:5060", "", "a,b", "@"]),
)
raw_name_addrs = st.builds(
    lambda ws1, display, uri, bracket, params, ws2: (
        f"{ws1}{display}<{uri}>{params}{ws2}" if bracket else f"{ws1}{uri}{params}{ws2}"
    ),
    _lws,
    st.one_of(
        st.just(""),
        _raw_quoted.map(lambda q: q + " "),
        st.sampled_from(["Bob ", "Bob  Smith", "B,ob ", "Bob"]),
    ),
    raw_uris,
    st.booleans(),
    st.lists(_raw_header_param, max_size=3).map("".join),
    _lws,
)


@st.composite
def raw_replaces(draw: st.DrawFn) -> str:
    params = [
        f"{draw(st.sampled_from(['to-tag', 'TO-TAG']))}{draw(_lws)}={draw(_lws)}{draw(tokens)}",
        f"{draw(st.sampled_from(['from-tag', 'From-Tag']))}={draw(tokens)}",
    ]
    params = [p for p in params if draw(st.integers(0, 9))]  # now and then one is missing
    params += draw(
        st.lists(
            st.sampled_from(
                ["early-only", "Early-Only", "early-only=1", "to-tag=", "x", 'x="a b"', "x=y", '"', ""]
            ),
            max_size=3,
        )
    )
    params = draw(st.permutations(params))
    call_id = draw(st.one_of(call_ids, st.sampled_from(["", "a b", "@", "x@"])))
    ws = draw(_lws)
    return call_id + "".join(f"{ws};{ws}{p}" for p in params) + ws


raw_sipfrags = st.builds(
    lambda ws, version, code, reason, rest: f"{ws}{version} {code} {reason}{rest}",
    st.sampled_from(["", "\r\n", " \t"]),
    st.sampled_from(["SIP/2.0", "sip/2.0", "SIP/02.10", "SIP/2", "HTTP/1.1", "SIP/2.x"]),
    st.integers(0, 1000),
    any_text,
    st.sampled_from(["", "\r\n", "\nVia: x\r\n", "\r\n\r\nbody"]),
)

Parser = Callable[[str], object]


def _assert_fixed_point(parse: Parser, text: str) -> None:
    try:
        first = parse(text)
    except SipSyntaxError:
        return
    again = str(first)
    assert parse(again) == first
    assert str(parse(again)) == again


@settings(max_examples=300)
@given(st.one_of(raw_uris, uris.map(str)))
@example("sip:Alice@[::1]:00080;LR;x=%3b?a%3Db")
@example("SIP:a%40b@host;=")
@example("sip:h?Call-ID%3D1%40x")
def test_uri_fixed_point(text: str) -> None:
    _assert_fixed_point(parse_uri, text)


@settings(max_examples=300)
@given(st.one_of(raw_name_addrs, name_addrs.map(str)))
@example("  Bob   Smith <sip:b@h> ;  tag = 1 ; x ")
@example('"a\\"b" <sip:h>;p="q\\\\"')
@example("sip:a@h;tag=1")
@pytest.mark.parametrize("parse", [parse_name_addr, parse_refer_to, parse_referred_by])
def test_name_addr_fixed_point(parse: Parser, text: str) -> None:
    _assert_fixed_point(parse, text)


@settings(max_examples=300)
@given(st.one_of(raw_replaces(), replaces_values.map(str)))
@example(" abc@h ; TO-TAG = 1 ; From-Tag=2 ; early-only ; x ")
def test_replaces_fixed_point(text: str) -> None:
    _assert_fixed_point(parse_replaces, text)


@settings(max_examples=300)
@given(raw_sipfrags)
@example("\r\n  sip/2.0 180   Ringing  \r\nTo: x")
def test_sipfrag_fixed_point(text: str) -> None:
    _assert_fixed_point(parse_sipfrag, text)


# --- regressions ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["sip:\udcff@h", "sip:u@h;x=\udcff", "tel:1\udcff", "sip:\udcff%41@h"])
def test_lone_surrogate_is_refused(text: str) -> None:
    # Once accepted, str() escaped it to bytes (%ED%B3%BF) that parse_uri refused: no fixed point.
    with pytest.raises(SipSyntaxError, match="UTF-8"):
        parse_uri(text)
