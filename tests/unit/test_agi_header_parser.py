"""The FastAGI request header, parsed sans-I/O as it arrives (referee.agi.protocol.HeaderParser).

The server feeds it whatever each read brought: the header must come out the same however the bytes
are cut, with what followed its blank line handed back for the route.
"""

from __future__ import annotations

import pytest

from referee.agi.protocol import BadRequest, HeaderLimits, HeaderParser

HEADER = (
    b"agi_network: yes\r\n"
    b"agi_network_script: transfer-guard?target=1003\r\n"
    b"agi_calleridname: Jos\xe9 M\xfcller\n"
    b"agi_extension:  1003 \n"
    b"agi_arg_1:\n"
    b"\n"
)
WANT = {
    "agi_network": "yes",
    "agi_network_script": "transfer-guard?target=1003",
    "agi_calleridname": "Jos\ufffd M\ufffdller",  # not UTF-8: decoded leniently, never refused
    "agi_extension": "1003",
    "agi_arg_1": "",
}


def feed(parser: HeaderParser, *chunks: bytes) -> bytes | None:
    rest = None
    for chunk in chunks:
        assert rest is None, "bytes fed after the header was complete"
        rest = parser.feed(chunk)
    return rest


def test_one_segment_gives_the_headers_and_the_bytes_after_the_blank_line() -> None:
    parser = HeaderParser(HeaderLimits())
    assert feed(parser, HEADER + b"HANGUP\n200 res") == b"HANGUP\n200 res"
    assert parser.headers == WANT


@pytest.mark.parametrize("cut", range(1, len(HEADER)))
def test_cut_anywhere_in_two_gives_the_same_header(cut: int) -> None:
    parser = HeaderParser(HeaderLimits())
    assert parser.feed(HEADER[:cut]) is None
    assert parser.feed(HEADER[cut:] + b"X") == b"X"
    assert parser.headers == WANT


def test_byte_by_byte_gives_the_same_header() -> None:
    parser = HeaderParser(HeaderLimits())
    results = [parser.feed(HEADER[i : i + 1]) for i in range(len(HEADER))]
    assert results[:-1] == [None] * (len(HEADER) - 1)
    assert results[-1] == b""
    assert parser.headers == WANT


@pytest.mark.parametrize(
    ("chunks", "why"),
    [
        ([b"\n"], "empty header"),
        ([b"agi_network", b" yes\n"], "not an AGI header line"),
        ([b"GET / HTTP/1.1\r\n"], "not an AGI header line"),
        ([b"agi_x: " + b"y" * 50, b"y" * 60], "header line too long"),  # unfinished, over the line bound
        ([b"agi_x: " + b"y" * 200 + b"\n"], "header line too long"),
        ([b"agi_a: 1\nagi_b: 2\nagi_c: 3\n", b"agi_d: 4\n"], "too many header lines"),
        ([b"agi_a: " + b"1" * 90 + b"\n", b"agi_b: " + b"2" * 90 + b"\n"], "header too large"),
    ],
)
def test_bad_headers_are_refused_wherever_the_cut(chunks: list[bytes], why: str) -> None:
    parser = HeaderParser(HeaderLimits(max_bytes=150, max_lines=3), max_line=100)
    with pytest.raises(BadRequest, match=why):
        feed(parser, *chunks)


@pytest.mark.parametrize(
    ("sent", "where"),
    [(b"", "before the header"), (b"agi_network: yes\n", "mid-header"), (b"agi_netw", "mid-header")],
)
def test_a_close_before_the_blank_line_says_where(sent: bytes, where: str) -> None:
    parser = HeaderParser(HeaderLimits())
    assert parser.feed(sent) is None
    assert str(parser.closed()) == f"connection closed {where}"
