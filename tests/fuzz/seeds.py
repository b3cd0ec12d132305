"""Seed inputs: one of each shape the grammar and the policy know, and mutations of them."""

from __future__ import annotations

import random

SEEDS: tuple[str, ...] = (
    "<sip:1003@lab.test>",
    "sip:1003@lab.test",
    '"Carol" <sip:1003@lab.test;user=phone>;x=y',
    "<sip:09001234567@lab.test>",
    "<sip:02079460000@lab.test;user=phone>",
    "<sip:+442079460000@lab.test>",
    "<tel:+442079460000>",
    "<sips:1003@lab.test:5061;transport=tls>",
    "<sip:1003@127.0.0.20:5060;maddr=198.51.100.7;ttl=1;lr>",
    "<sip:1003@[2001:db8::1]:5060>",
    "<sip:1003@lab.test;method=INVITE>",
    "<sip:1003@lab.test;method=BYE>",
    "<sip:1003@lab.test?Replaces=a84b4c76e66710%40pc33.lab.test%3Bto-tag%3D1928301774%3Bfrom-tag%3Da6c85cf>",
    "<sip:1003@lab.test?Replaces=a84b4c76e66710%40pc33.lab.test%3Bto-tag%3D1928301774%3Bfrom-tag%3Da6c85cf"
    "%3Bearly-only&From=sip:evil@x>",
    "<sip:1003@lab.test?Call-ID=x&Via=SIP/2.0/UDP%20h&Route=%3Csip:h%3E>",
    "<sip:alice:secret@lab.test>",
    "<sip:%31003@lab.test>",
    "<http://example.com/>",
    "<sip:1003@other.test>",
    "a84b4c76e66710@pc33.lab.test;to-tag=1928301774;from-tag=a6c85cf",
    "SIP/2.0 200 OK",
    "SIP/2.0 603 Declined\r\n",
    "Refer-To: <sip:1003@lab.test>",
    "r: <sip:1003@lab.test>",
    'b: <sip:1002@lab.test>;cid="x@y"',
)

SPECIAL = [
    *list(";?&=@:%<>\"\\ ,/[]#*+$'()\t\r\n\x00\x7féλ€😀"),
    "%3B",
    "%40",
    "%3D",
    "%25",
    "%00",
    "sip:",
    "?",
]


def mutate(rng: random.Random, text: str) -> str:
    """One random edit: insert, delete, duplicate or replace a span, splice in another seed, or escape."""
    choice = rng.randrange(6)
    at = rng.randrange(len(text) + 1)
    if choice == 0:
        return text[:at] + rng.choice(SPECIAL) + text[at:]
    if choice == 1:
        return text[:at] + text[at + rng.randrange(1, 8) :]
    if choice == 2:
        end = min(len(text), at + rng.randrange(1, 16))
        return text[:end] + text[at:end] + text[end:]
    if choice == 3 and text:
        at = min(at, len(text) - 1)
        return text[:at] + chr(rng.randrange(0x20, 0x7F)) + text[at + 1 :]
    if choice == 4:
        other = rng.choice(SEEDS)
        cut = rng.randrange(len(other) + 1)
        return text[:at] + other[cut:]
    if text:
        at = min(at, len(text) - 1)
        return text[:at] + f"%{ord(text[at]) & 0xFF:02X}" + text[at + 1 :]
    return text


def inputs(count: int, seed: int = 3515) -> list[str]:
    """``count`` inputs: every seed, then chains of one to four mutations of them."""
    rng = random.Random(seed)
    out = list(SEEDS)
    while len(out) < count:
        text = rng.choice(SEEDS)
        for _ in range(rng.randrange(1, 5)):
            text = mutate(rng, text)
        out.append(text)
    return out[:count]
