"""The grammar of a SIP transfer: URIs, Refer-To, Replaces, Referred-By and sipfrag.

Pure and stdlib-only: Kamailio's embedded python3 imports this module directly.

Every parser raises :class:`SipSyntaxError` (and only that) on malformed input. Work is
linear in the input length, and inputs longer than :data:`MAX_VALUE_LENGTH` are refused
before any parsing starts.

Values are stored decoded (``%40`` becomes ``@``); ``str()`` re-escapes whatever the
grammar does not allow literally, so ``parse_x(str(v)) == v`` for every value. The values
are named tuples: immutable, and cheap to build on the decision path.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Final, NamedTuple
from urllib.parse import unquote

__all__ = [
    "MAX_VALUE_LENGTH",
    "NameAddr",
    "Params",
    "Replaces",
    "SipSyntaxError",
    "StatusLine",
    "Uri",
    "parse_header_line",
    "parse_name_addr",
    "parse_refer_to",
    "parse_referred_by",
    "parse_replaces",
    "parse_sipfrag",
    "parse_uri",
    "uri_param_text",
]

#: Longest header value or URI accepted, in characters. A REFER with more is refused.
MAX_VALUE_LENGTH: Final = 4096

Params = tuple[tuple[str, str | None], ...]


class SipSyntaxError(Exception):
    """Malformed SIP input. ``reason`` says what is wrong, in words fit for a SIP reason phrase."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- character classes (RFC 3261 section 25.1) -------------------------------------------

_ALNUM: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_UNRESERVED: Final = _ALNUM | frozenset("-_.!~*'()")
# '?' is legal in a user part but would be read as the start of the headers: always escaped.
_USER_SAFE: Final = _UNRESERVED | frozenset("&=+$,;/")
_PASSWORD_SAFE: Final = _UNRESERVED | frozenset("&=+$,")
_PARAM_SAFE: Final = _UNRESERVED | frozenset("[]/:&+$")
_HEADER_SAFE: Final = _UNRESERVED | frozenset("[]/?:+$")
_TOKEN: Final = _ALNUM | frozenset("-.!%*_+`'~")
# RFC 3261 "word", the characters of a Call-ID half.
_WORD: Final = _TOKEN | frozenset('()<>:\\"/[]?{}')
_HOSTNAME: Final = _ALNUM | frozenset("-.")
_TEL_SAFE: Final = _PARAM_SAFE | frozenset("#*")  # '#' and '*' are dialable on tel: URIs
_SCHEME: Final = _ALNUM | frozenset("+-.")
_DIGITS: Final = frozenset("0123456789")
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_LWS: Final = " \t\r\n"
_LWS_OR_COMMA: Final = frozenset(_LWS + ",")


def _class(chars: frozenset[str]) -> str:
    return "".join(re.escape(ch) for ch in sorted(chars))


# Character-class checks run once per value on the decision path: regexes (compiled here,
# at import) are an order of magnitude faster than per-character Python loops, and
# single-class patterns cannot backtrack.
_RUN_OF = {chars: re.compile(f"[{_class(chars)}]+") for chars in (_TOKEN, _WORD, _HOSTNAME, _DIGITS, _SCHEME)}
_NOT_IN = {
    chars: re.compile(f"[^{_class(chars)}]")
    for chars in (_USER_SAFE, _PASSWORD_SAFE, _PARAM_SAFE, _HEADER_SAFE, _TEL_SAFE)
}
# Labels are bounded (63) and the lookarounds are fixed-width: linear time.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TOP_LABEL = r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME: Final = re.compile(rf"(?:{_LABEL}\.)*{_TOP_LABEL}\.?")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4: Final = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_NUMERIC_HOST: Final = re.compile(r"[0-9.]+")
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_URI_FORBIDDEN: Final = re.compile(r'[\x00-\x20"<>\x7f]')


def _made_of(text: str, chars: frozenset[str]) -> bool:
    """True if ``text`` is non-empty and every character is in ``chars`` (one of _RUN_OF's)."""
    return _RUN_OF[chars].fullmatch(text) is not None


def _check_length(text: str, what: str) -> None:
    if len(text) > MAX_VALUE_LENGTH:
        raise SipSyntaxError(f"{what} longer than {MAX_VALUE_LENGTH} characters")


def _unescape(text: str, what: str) -> str:
    """Percent-decode ``text`` (UTF-8), refusing bad escapes."""
    if not text.isascii():
        # A lone surrogate (bytes decoded with surrogateescape) has no UTF-8 form: str() could
        # not write the value back in a form that parses.
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise SipSyntaxError(f"{what} is not valid UTF-8") from None
    if "%" not in text:
        return text
    # An embedded Replaces escapes "@", ";" and "=", nothing else: three replaces. Sound when no "%" is
    # left: each one removed began one of these escapes, and no replacement ("@", ";", "=") can make
    # a new one. Otherwise the general decoding below takes the original text.
    usual = text.replace("%40", "@").replace("%3B", ";").replace("%3D", "=")
    if "%" not in usual:
        return usual
    return _unescape_escapes(text, what)


def _unescape_escapes(text: str, what: str) -> str:
    """Percent-decode ``text``, which holds a "%" (UTF-8), refusing bad escapes."""
    if _BAD_ESCAPE.search(text):
        raise SipSyntaxError(f"bad percent-escape in {what}")
    # Escapes of ASCII characters (%40, %3B: an embedded Replaces) decode one by one, about twice
    # as fast as unquote; an escaped UTF-8 sequence goes to unquote, which decodes it whole.
    parts = text.split("%")
    try:
        return parts[0] + "".join([_ASCII_ESCAPES[part[:2]] + part[2:] for part in parts[1:]])
    except KeyError:  # an escaped byte above 0x7f: part of a UTF-8 sequence
        pass
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise SipSyntaxError(f"{what} is not valid UTF-8 once unescaped") from None


def _ascii_escapes() -> dict[str, str]:
    """Every two-digit hex escape of an ASCII character, in any case mix ("3b", "3B"), to the character."""
    table = {}
    for code in range(128):
        hex_digits = f"{code:02x}"
        high, low = hex_digits[0], hex_digits[1]
        for h in {high, high.upper()}:
            for lo in {low, low.upper()}:
                table[h + lo] = chr(code)
    return table


_ASCII_ESCAPES: Final = _ascii_escapes()


def _escape(text: str, safe: frozenset[str]) -> str:
    return _NOT_IN[safe].sub(_percent, text)


# User parts and header names repeat (extensions, "Replaces"): their escaped forms are remembered.
@lru_cache(maxsize=4096)
def _escape_user(text: str) -> str:
    return _escape(text, _USER_SAFE)


@lru_cache(maxsize=64)
def _escape_header_name(text: str) -> str:
    return _escape(text, _HEADER_SAFE)


# An embedded Replaces value (call-id@host;to-tag=..;from-tag=..) needs "@", ";" and "=" escaped and
# nothing else: three replaces, where the general escape calls back once per character.
_HEADER_SAFE_AND_REPLACES_PUNCTUATION: Final = re.compile(f"[{_class(_HEADER_SAFE | frozenset('@;='))}]*")


def _escape_header_value(text: str) -> str:
    if _HEADER_SAFE_AND_REPLACES_PUNCTUATION.fullmatch(text):
        return text.replace("@", "%40").replace(";", "%3B").replace("=", "%3D")
    return _escape(text, _HEADER_SAFE)


def _percent(match: re.Match[str]) -> str:
    return _percent_char(match.group())


@lru_cache(maxsize=512)
def _percent_char(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))


def _all_digits(text: str) -> bool:
    return _made_of(text, _DIGITS)


_TOKEN_RUN: Final = _RUN_OF[_TOKEN].fullmatch  # _made_of(text, _TOKEN) without its two lookups


def _is_token(text: str) -> bool:
    return _TOKEN_RUN(text) is not None


def _param(params: Params, name: str) -> str | None:
    name = name.lower()
    for key, value in params:
        if key.lower() == name:
            return "" if value is None else value
    return None


# --- URIs --------------------------------------------------------------------------------


class Uri(NamedTuple):
    """A SIP, SIPS or tel URI, or any other absolute URI kept as opaque text.

    ``host`` keeps an IPv6 reference in its brackets. ``params`` and ``headers`` keep their
    order and their decoded values; a parameter without ``=`` has the value ``None``.
    """

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    opaque: str | None = None  # everything after "scheme:" for schemes we do not parse

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    def param(self, name: str) -> str | None:
        """Value of a URI parameter (case-insensitive name); ``""`` for a flag, ``None`` if absent."""
        return _param(self.params, name)

    def header(self, name: str) -> str | None:
        """Value of the first embedded header ``name`` (case-insensitive), or ``None``."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def hostport(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def replace(self, **changes: object) -> Uri:
        return self._replace(**changes)  # type: ignore[arg-type]

    def __str__(self) -> str:
        # One string built in place (no list of parts): this runs for every allowed REFER.
        scheme, user, password, host, port, params, headers, opaque = self
        if opaque is not None:
            return f"{scheme}:{opaque}"
        if scheme == "tel":
            text = "tel:" + _escape(user or "", _TEL_SAFE)
        else:
            hostport = host if port is None else f"{host}:{port}"
            if user is None:
                text = f"{scheme}:{hostport}"
            elif password is None:
                text = f"{scheme}:{_escape_user(user)}@{hostport}"
            else:
                text = f"{scheme}:{_escape_user(user)}:{_escape(password, _PASSWORD_SAFE)}@{hostport}"
        if params:
            text += _params_text(params)
        if len(headers) == 1:  # an embedded Replaces
            text += f"?{_escape_header_name(headers[0][0])}={_escape_header_value(headers[0][1])}"
        elif headers:
            text += "?" + "&".join(
                [f"{_escape_header_name(k)}={_escape_header_value(v)}" for k, v in headers]
            )
        return text


# Parameters repeat (user=phone, transport=tcp, a screened maddr): their escaped forms are remembered.
@lru_cache(maxsize=1024)
def uri_param_text(name: str, value: str | None) -> str:
    """``;name=value`` as a URI writes it, escaped: safe to show in a trace or a log line."""
    if value is None:
        return ";" + _escape(name, _PARAM_SAFE)
    return f";{_escape(name, _PARAM_SAFE)}={_escape(value, _PARAM_SAFE)}"


# Parameter lists repeat too (;user=phone, ;transport=tcp): one cache look-up for the lot.
@lru_cache(maxsize=1024)
def _params_text(params: Params) -> str:
    return "".join([uri_param_text(key, value) for key, value in params])


# Hosts repeat (the tenants' domains, the PBXs' addresses): a checked one is remembered. Only valid
# hosts are (a refused one raises, and lru_cache keeps no exception).
@lru_cache(maxsize=1024)
def _parse_host(text: str) -> str:
    """Check a host: a host name whose top label starts with a letter, IPv4, or [IPv6]."""
    if _HOST_NAME.fullmatch(text) or _IPV4.fullmatch(text):
        return text
    if not text:
        raise SipSyntaxError("URI has no host")
    if text[0] == "[":
        if text[-1] != "]":
            raise SipSyntaxError("unterminated IPv6 reference in host")
        # Python accepts a zone suffix (fe80::1%eth0); SIP's IPv6reference does not.
        if "%" in text:
            raise SipSyntaxError("bad IPv6 address in host")
        try:
            ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            raise SipSyntaxError("bad IPv6 address in host") from None
        return text
    if not _made_of(text, _HOSTNAME):
        raise SipSyntaxError("bad character in host")
    if _NUMERIC_HOST.fullmatch(text):
        raise SipSyntaxError("bad IPv4 address in host")
    raise SipSyntaxError("bad host name")


def _split_hostport(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipSyntaxError("unterminated IPv6 reference in host")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and rest[0] != ":":
            raise SipSyntaxError("junk after IPv6 reference")
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text_ = text.partition(":")
        port_text = port_text_ if sep else None
    port = None if port_text is None else _parse_port(port_text)
    return _parse_host(host), port


def _parse_port(text: str) -> int:
    if len(text) > 5 or not _all_digits(text):
        raise SipSyntaxError("bad port")
    port = int(text)
    if not 0 < port < 65536:
        raise SipSyntaxError("port out of range")
    return port


def _parse_params(text: str, what: str) -> Params:
    """``;a=1;b`` after the host (``text`` starts after the first ';')."""
    params = []
    escaped = not text.isascii() or "%" in text  # else every name and value reads as written
    for item in text.split(";"):
        name, sep, value = item.partition("=")
        if not name:
            raise SipSyntaxError(f"empty {what} parameter name")
        if escaped:
            params.append((_unescape(name, what), _unescape(value, what) if sep else None))
        else:
            params.append((name, value if sep else None))
    return tuple(params)


def _parse_headers(text: str) -> tuple[tuple[str, str], ...]:
    if "&" not in text:  # one header: an embedded Replaces
        return (_parse_header(text),)
    return tuple([_parse_header(item) for item in text.split("&")])


def _parse_header(item: str) -> tuple[str, str]:
    if not item:
        raise SipSyntaxError("empty embedded header")
    name, eq, value = item.partition("=")
    if eq:
        name, value = _unescape(name, "embedded header"), _unescape(value, "embedded header")
    else:
        # RFC 3515's own example escapes the '=' (`&Call-ID%3D55432%40...`): read it decoded.
        name, _, value = _unescape(item, "embedded header").partition("=")
    if not name or not _is_token(name):
        raise SipSyntaxError("bad embedded header name")
    return (name, value)


# The usual SIP URI in one match: a lower-case scheme, no password, a host name or IPv4 address,
# parameters without "@". Its parts then go through the same checks, in the same order, as in
# _parse_uri_general, which takes every other URI (tests/unit/test_sip_fast_path.py compares them).
_NOT_IN_URI = r'\x00-\x20"<>\x7f'
_USUAL_SIP_URI: Final = re.compile(
    rf"(sips?):(?:([{_class(_USER_SAFE)}%]+)@)?([A-Za-z0-9.-]+)(?::([^;?@{_NOT_IN_URI}]*))?"
    rf"(;[^?@{_NOT_IN_URI}]*)?(?:\?([^{_NOT_IN_URI}]*))?"
)


def parse_uri(text: str) -> Uri:
    """Parse a sip:, sips: or tel: URI; any other absolute URI becomes an opaque :class:`Uri`."""
    _check_length(text, "URI")
    return _parse_uri(text)


def _parse_uri(text: str) -> Uri:
    """:func:`parse_uri` on a ``text`` whose length is checked (it is part of a checked value)."""
    usual = _USUAL_SIP_URI.fullmatch(text)
    if usual is None:
        return _parse_uri_general(text)
    scheme, user_text, host, port_text, param_text, header_text = usual.groups()
    headers = _parse_headers(header_text) if header_text is not None else ()
    # The regex let only ASCII into the user part: without a "%", there is nothing to decode.
    user = user_text if user_text is None or "%" not in user_text else _unescape(user_text, "user part")
    port = None if port_text is None else _parse_port(port_text)
    host = _parse_host(host)
    params = _parse_params(param_text[1:], "URI") if param_text is not None else ()
    return tuple.__new__(Uri, (scheme, user, None, host, port, params, headers, None))


def _parse_uri_general(text: str) -> Uri:
    scheme, sep, rest = text.partition(":")
    if not sep or not scheme or not scheme[0].isascii() or not scheme[0].isalpha():
        raise SipSyntaxError("URI has no scheme")
    if not _made_of(scheme, _SCHEME):
        raise SipSyntaxError("bad URI scheme")
    scheme = scheme.lower()
    if _URI_FORBIDDEN.search(rest):
        raise SipSyntaxError("whitespace, quote or control character inside URI")
    if scheme == "tel":
        return _parse_tel(rest)
    if scheme not in ("sip", "sips"):
        if not rest:
            raise SipSyntaxError("empty URI")
        return Uri(scheme=scheme, opaque=rest)

    before, qmark, header_text = rest.partition("?")
    headers = _parse_headers(header_text) if qmark else ()
    user = password = None
    at = before.rfind("@")
    if at >= 0:
        userinfo, before = before[:at], before[at + 1 :]
        user_text, colon, password_text = userinfo.partition(":")
        if not user_text:
            raise SipSyntaxError("empty user part before '@'")
        user = _unescape(user_text, "user part")
        password = _unescape(password_text, "password") if colon else None
    hostport, semi, param_text = before.partition(";")
    host, port = _split_hostport(hostport)
    params = _parse_params(param_text, "URI") if semi else ()
    return Uri(scheme, user, password, host, port, params, headers)


def _parse_tel(rest: str) -> Uri:
    number, semi, param_text = rest.partition(";")
    if not number:
        raise SipSyntaxError("tel URI has no number")
    if "?" in rest:
        raise SipSyntaxError("tel URI cannot carry headers")
    params = _parse_params(param_text, "tel URI") if semi else ()
    return Uri("tel", user=_unescape(number, "tel number"), params=params)


# --- name-addr and header values ----------------------------------------------------------


class NameAddr(NamedTuple):
    """A ``name-addr`` or ``addr-spec`` with header parameters (Refer-To, Referred-By, ...)."""

    uri: Uri
    display_name: str | None = None
    params: Params = ()

    def param(self, name: str) -> str | None:
        """Value of a header parameter (case-insensitive name); ``""`` for a flag, ``None`` if absent."""
        return _param(self.params, name)

    def replace(self, **changes: object) -> NameAddr:
        return self._replace(**changes)  # type: ignore[arg-type]

    def __str__(self) -> str:
        text = f"<{self.uri}>"
        if self.display_name is None and not self.params:  # the usual Refer-To
            return text
        if self.display_name is not None:
            quoted = self.display_name.replace("\\", "\\\\").replace('"', '\\"')
            text = f'"{quoted}" {text}'
        for key, value in self.params:
            text += f";{key}"
            if value is not None:
                text += "=" + (value if _is_token(value) else _quote(value))
        return text


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read a quoted-string starting at ``text[start] == '"'``; return (value, index after it)."""
    out = []
    i, n = start + 1, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= n:
                break
            out.append(text[i + 1])
            i += 2
        elif ch == '"':
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise SipSyntaxError("unterminated quoted string")


def _parse_header_params(text: str) -> Params:
    """Header parameters after a name-addr: ``;name[=token|quoted-string]`` ..."""
    params: list[tuple[str, str | None]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _LWS:
            i += 1
        if i >= n:
            return tuple(params)
        if text[i] != ";":
            raise SipSyntaxError("junk after the address")
        i += 1
        while i < n and text[i] in _LWS:
            i += 1
        start = i
        while i < n and text[i] in _TOKEN:
            i += 1
        name = text[start:i]
        if not name:
            raise SipSyntaxError("empty header parameter name")
        while i < n and text[i] in _LWS:
            i += 1
        if i < n and text[i] == "=":
            i += 1
            while i < n and text[i] in _LWS:
                i += 1
            if i < n and text[i] == '"':
                value, i = _read_quoted(text, i)
            else:
                start = i
                # tokens, hosts and IPv6 references
                while i < n and (text[i] in _TOKEN or text[i] in "[]:"):
                    i += 1
                value = text[start:i]
                if not value:
                    raise SipSyntaxError(f"empty value for header parameter {name}")
            params.append((name, value))
        else:
            params.append((name, None))


def parse_name_addr(value: str) -> NameAddr:
    """Parse ``"Name" <uri>;p=v``, ``Name <uri>``, ``<uri>`` or a bare ``uri;p=v``."""
    _check_length(value, "header value")
    return _parse_name_addr(value)


def _parse_name_addr(value: str) -> NameAddr:
    """:func:`parse_name_addr` on a ``value`` whose length is checked."""
    text = value.strip(_LWS)
    if not text:
        raise SipSyntaxError("empty address")
    if text[0] == "<" and text.find(">") == len(text) - 1:  # "<uri>" alone, the usual Refer-To
        return tuple.__new__(NameAddr, (_parse_uri(text[1:-1]), None, ()))
    display: str | None = None
    if text[0] == '"':
        display, i = _read_quoted(text, 0)
        rest = text[i:].lstrip(_LWS)
        if not rest.startswith("<"):
            raise SipSyntaxError("quoted display name not followed by <URI>")
        text = rest
    lt = text.find("<")
    if lt >= 0:
        if lt > 0:
            words = text[:lt].split()
            if not all(_is_token(word) for word in words):
                raise SipSyntaxError("bad character in display name")
            display = " ".join(words)
        gt = text.find(">", lt)
        if gt < 0:
            raise SipSyntaxError("'<' without '>'")
        uri = _parse_uri(text[lt + 1 : gt])
        return NameAddr(uri, display, _parse_header_params(text[gt + 1 :]))
    # addr-spec form: a ';' ends the URI and starts header parameters (RFC 3261 20.10),
    # and the URI may carry no headers.
    uri_text, semi, rest = text.partition(";")
    if "?" in uri_text and uri_text.split(":", 1)[0].lower() in ("sip", "sips"):
        raise SipSyntaxError("URI with headers must be enclosed in <>")
    if not _LWS_OR_COMMA.isdisjoint(uri_text):  # one pass in C, not a generator per character
        raise SipSyntaxError("bad character in address")
    return NameAddr(_parse_uri(uri_text), None, _parse_header_params(semi + rest))


def parse_refer_to(value: str) -> NameAddr:
    """Parse a Refer-To header value (RFC 3515), the part after ``Refer-To:`` or ``r:``."""
    _check_length(value, "header value")  # before the comma scan, which reads the whole value
    if "," in value and "," in _outside_brackets_and_quotes(value):
        raise SipSyntaxError("more than one Refer-To value")
    return _parse_name_addr(value)


def parse_referred_by(value: str) -> NameAddr:
    """Parse a Referred-By header value (RFC 3892); its ``cid`` is ``result.param('cid')``."""
    return parse_name_addr(value)


def _outside_brackets_and_quotes(value: str) -> str:
    """``value`` with everything between <> and "" removed, to look for list commas."""
    out = []
    depth, quoted, escaped = 0, False, False
    for ch in value:
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif depth == 0:
            out.append(ch)
    return "".join(out)


_COMPACT_NAMES: Final = {
    "r": "Refer-To",
    "b": "Referred-By",
    "i": "Call-ID",
    "f": "From",
    "t": "To",
    "m": "Contact",
    "o": "Event",
    "c": "Content-Type",
    "l": "Content-Length",
    "v": "Via",
}
_CANONICAL_NAMES: Final = {
    name.lower(): name
    for name in (*_COMPACT_NAMES.values(), "Replaces", "Refer-Sub", "Subscription-State", "CSeq")
}


def parse_header_line(line: str) -> tuple[str, str]:
    """Split ``Name: value`` into (canonical name, value); compact forms (``r:``) are expanded."""
    _check_length(line, "header line")
    name, colon, value = line.partition(":")
    name = name.strip(_LWS)
    if not colon or not _is_token(name):
        raise SipSyntaxError("not a header line")
    lower = name.lower()
    canonical = _COMPACT_NAMES.get(lower) or _CANONICAL_NAMES.get(lower, name)
    return canonical, value.strip(_LWS)


# --- Replaces (RFC 3891) -----------------------------------------------------------------


class Replaces(NamedTuple):
    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False
    extra: Params = ()  # generic parameters, kept in order

    def __str__(self) -> str:
        text = f"{self.call_id};to-tag={self.to_tag};from-tag={self.from_tag}"
        if self.early_only:
            text += ";early-only"
        for key, value in self.extra:
            text += f";{key}" if value is None else f";{key}={value}"
        return text


def _check_call_id(call_id: str) -> None:
    left, at, right = call_id.partition("@")
    if not _made_of(left, _WORD):
        raise SipSyntaxError("bad Call-ID in Replaces")
    if at and not _made_of(right, _WORD):
        raise SipSyntaxError("bad Call-ID in Replaces")


# The usual Replaces in one match: no whitespace, lower-case names, the tags in either order, no other
# parameter. Anything else takes the general parser (tests/unit/test_sip_fast_path.py compares them).
_CALL_ID_HALF = f"[{_class(_WORD)}]+"
_TAG = f"[{_class(_TOKEN)}]+"
_USUAL_REPLACES: Final = re.compile(
    rf"({_CALL_ID_HALF}(?:@{_CALL_ID_HALF})?)"
    rf"(?:;to-tag=(?P<to>{_TAG});from-tag=(?P<from>{_TAG})|;from-tag=(?P<from2>{_TAG});to-tag=(?P<to2>{_TAG}))"
    r"(;early-only)?"
)


def parse_replaces(value: str) -> Replaces:
    """Parse a Replaces value: ``call-id;to-tag=..;from-tag=..[;early-only]``."""
    _check_length(value, "Replaces")
    usual = _USUAL_REPLACES.fullmatch(value)
    if usual is not None:
        call_id, to_tag, from_tag, from2, to2, early = usual.groups()
        return tuple.__new__(Replaces, (call_id, to_tag or to2, from_tag or from2, early is not None, ()))
    return _parse_replaces_general(value)


def _parse_replaces_general(value: str) -> Replaces:
    call_id, *items = (part.strip(_LWS) for part in value.strip(_LWS).split(";"))
    _check_call_id(call_id)
    tags: dict[str, str] = {}
    early = False
    extra: list[tuple[str, str | None]] = []
    for item in items:
        name, sep, val = item.partition("=")
        name, val = name.strip(_LWS), val.strip(_LWS)
        lower = name.lower()
        if not _is_token(name):
            raise SipSyntaxError("bad parameter in Replaces")
        if lower in ("to-tag", "from-tag"):
            if lower in tags:
                raise SipSyntaxError(f"Replaces has more than one {lower}")
            if not sep or not _is_token(val):
                raise SipSyntaxError(f"bad {lower} in Replaces")
            tags[lower] = val
        elif lower == "early-only":
            if sep:
                raise SipSyntaxError("early-only takes no value")
            early = True
        else:
            if sep and not (_is_token(val) or (len(val) > 1 and val[0] == val[-1] == '"')):
                raise SipSyntaxError("bad parameter in Replaces")
            extra.append((name, val if sep else None))
    for needed in ("to-tag", "from-tag"):
        if needed not in tags:
            raise SipSyntaxError(f"Replaces has no {needed}")
    return Replaces(call_id, tags["to-tag"], tags["from-tag"], early, tuple(extra))


# --- message/sipfrag ---------------------------------------------------------------------


class StatusLine(NamedTuple):
    code: int
    reason: str
    version: str = "SIP/2.0"

    @property
    def final(self) -> bool:
        return self.code >= 200

    @property
    def success(self) -> bool:
        return 200 <= self.code < 300

    def __str__(self) -> str:
        return f"{self.version} {self.code} {self.reason}"


def parse_sipfrag(body: str | bytes) -> StatusLine:
    """Read the status line that opens a message/sipfrag body (RFC 3420), e.g. ``SIP/2.0 200 OK``."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if len(body) > 4 * MAX_VALUE_LENGTH:
        raise SipSyntaxError("sipfrag body too long")
    line = body.lstrip(_LWS).split("\n", 1)[0].rstrip("\r")
    version, _, rest = line.partition(" ")
    code_text, _, reason = rest.partition(" ")
    name, slash, number = version.partition("/")
    major, dot, minor = number.partition(".")
    if (
        name.upper() != "SIP"
        or not slash
        or not dot
        or not _all_digits(major)
        or not _all_digits(minor)
        or len(code_text) != 3
        or not _all_digits(code_text)
        or not "1" <= code_text[0] <= "6"
    ):
        raise SipSyntaxError("sipfrag does not start with a SIP status line")
    if any(ord(ch) < 32 and ch != "\t" for ch in reason):
        raise SipSyntaxError("control character in sipfrag reason phrase")
    return StatusLine(int(code_text), reason.strip(), f"SIP/{major}.{minor}")
