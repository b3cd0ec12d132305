"""Raw AMI text: messages (``Key: Value`` lines, a blank line after each) to dicts and back.

Used for recorded traces (``tests/unit/data/ami/*.txt``) and by the fake AMI server. A trace
file may use LF or CRLF line ends; AMI itself uses CRLF.
"""

from __future__ import annotations

from collections.abc import Mapping

AmiMessage = dict[str, str]

BANNER = "Asterisk Call Manager/11.0.0"  # what Asterisk 22 says (seen on the lab's pbx1)


def parse_messages(text: str) -> list[AmiMessage]:
    """Every message in ``text``; ``#`` comment lines (trace annotations) are skipped."""
    messages: list[AmiMessage] = []
    current: AmiMessage = {}
    for raw_line in text.replace("\r\n", "\n").split("\n"):
        line = raw_line.rstrip()
        if line.startswith(("#", "Asterisk Call Manager/")):
            continue
        if not line:
            if current:
                messages.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue  # AMI ignores lines without a colon too
        current[key.strip()] = value.strip()
    if current:
        messages.append(current)
    return messages


def format_message(message: Mapping[str, str]) -> str:
    return "".join(f"{key}: {value}\r\n" for key, value in message.items()) + "\r\n"


def normalize(message: Mapping[str, object]) -> AmiMessage:
    """A panoramisk message (values may be lists for repeated keys) as a plain dict of strings."""
    out: AmiMessage = {}
    for key, value in message.items():
        if isinstance(value, list | tuple):
            out[str(key)] = str(value[-1]) if value else ""
        else:
            out[str(key)] = "" if value is None else str(value)
    return out
