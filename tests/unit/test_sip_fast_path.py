"""The decision path's fast parsers agree with the general ones, value for value and error for error.

``parse_uri`` and ``parse_replaces`` match the usual shapes with one regex and hand everything else to
``_parse_uri_general`` / ``_parse_replaces_general`` (the parsers they were before); escaping and
unescaping take shortcuts for ASCII (an embedded Replaces decodes with three replaces), parameters
without escapes are not decoded, one embedded header is read and written without a list. Each shortcut
is compared here with the general code (the code it replaced, where that is gone) on inputs built from
the characters that matter to the grammar.
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


ESCAPE_PIECES = ["a", "%40", "%3B", "%3b", "%3D", "%3d", "%25", "%", "%%", "%4", "40", "3B", "@", ";", "="]


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from([*ESCAPE_PIECES, "é", "%e2%82%ac", "%C3", "%7F"]), max_size=8))
@example(["%%", "40"])
@example(["%3", "%40", "B"])
def test_three_replaces_decode_as_the_general_unescape(pieces: list[str]) -> None:
    text = "".join(pieces)
    general = text if "%" not in text else outcome(lambda t: sip._unescape_escapes(t, "x"), text)
    assert outcome(lambda t: sip._unescape(t, "x"), text) == general, text


def general_params(text: str, what: str) -> object:
    """The parameter reader before escape-free texts skipped decoding."""
    params = []
    for item in text.split(";"):
        name, sep, value = item.partition("=")
        if not name:
            raise SipSyntaxError(f"empty {what} parameter name")
        params.append((sip._unescape(name, what), sip._unescape(value, what) if sep else None))
    return tuple(params)


def general_headers(text: str) -> object:
    """The embedded-header reader before one header went without a list."""
    headers = []
    for item in text.split("&"):
        if not item:
            raise SipSyntaxError("empty embedded header")
        if "=" in item:
            name, _, value = item.partition("=")
            name, value = sip._unescape(name, "embedded header"), sip._unescape(value, "embedded header")
        else:
            name, _, value = sip._unescape(item, "embedded header").partition("=")
        if not name or not sip._is_token(name):
            raise SipSyntaxError("bad embedded header name")
        headers.append((name, value))
    return tuple(headers)


PARAM_CHARS = "ab;=&%34BDé \x00-_.!~*'()"


@settings(max_examples=2000, deadline=None)
@given(st.text(PARAM_CHARS + "\udcff", max_size=30))
@example("user=phone;lr;transport=tcp")
@example("Replaces=c1%40h%3Bto-tag%3Da%3Bfrom-tag%3Db")
@example("a=1&&b=2")
def test_parameters_and_headers_read_as_the_general_readers(text: str) -> None:
    assert outcome(lambda t: sip._parse_params(t, "URI"), text) == outcome(
        lambda t: general_params(t, "URI"), text
    )
    assert outcome(sip._parse_headers, text) == outcome(general_headers, text)


def general_uri_text(uri: sip.Uri) -> str:
    """The URI writer before it built one string in place."""
    if uri.opaque is not None:
        return f"{uri.scheme}:{uri.opaque}"
    parts = [uri.scheme, ":"]
    if uri.scheme == "tel":
        parts.append(sip._escape(uri.user or "", sip._TEL_SAFE))
    else:
        if uri.user is not None:
            parts.append(sip._escape_user(uri.user))
            if uri.password is not None:
                parts += [":", sip._escape(uri.password, sip._PASSWORD_SAFE)]
            parts.append("@")
        parts.append(uri.hostport)
    parts += [sip.uri_param_text(key, value) for key, value in uri.params]
    if uri.headers:
        parts.append("?")
        parts.append(
            "&".join(f"{sip._escape_header_name(k)}={sip._escape_header_value(v)}" for k, v in uri.headers)
        )
    return "".join(parts)


_texts = st.text(REPLACES_CHARS + "é&#%", max_size=8)
_uris = st.builds(
    sip.Uri,
    scheme=st.sampled_from(["sip", "sips", "tel", "urn"]),
    user=st.none() | _texts,
    password=st.none() | _texts,
    host=st.sampled_from(["lab.test", "127.0.0.1", "[::1]"]),
    port=st.none() | st.integers(1, 65535),
    params=st.lists(st.tuples(_texts, st.none() | _texts), max_size=3).map(tuple),
    headers=st.lists(st.tuples(_texts, _texts), max_size=3).map(tuple),
    opaque=st.none() | st.none() | _texts,
)


@settings(max_examples=2000, deadline=None)
@given(_uris, st.none() | _texts, st.lists(st.tuples(_texts, st.none() | _texts), max_size=2).map(tuple))
def test_uris_and_addresses_write_as_the_general_writer(
    uri: sip.Uri, display: str | None, params: sip.Params
) -> None:
    assert str(uri) == general_uri_text(uri)
    addr = sip.NameAddr(uri, display, params)
    text = f"<{general_uri_text(uri)}>"
    if display is not None:
        text = f'"{display.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}" {text}'
    for key, value in params:
        text += f";{key}" + (
            "" if value is None else "=" + (value if sip._is_token(value) else sip._quote(value))
        )
    assert str(addr) == text
