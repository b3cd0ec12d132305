"""`make demo`, policy part: the example policy applied to a table of REFERs.

Run: python -m referee.demo [POLICY]

Without POLICY it uses the example policy shipped in the package (``referee/data/policy.toml``,
the checkout's ``examples/policy.toml``), so it runs from an installed referee too.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from referee.policy import Dialog, Policy, PolicyError, load_policy, parse_policy

EXAMPLE = resources.files("referee") / "data" / "policy.toml"
BOB = "sip:1002@lab.test"
BOB_CAROL = Dialog("consult-1@127.0.0.32", "bob-tag", "carol-tag")
REPLACES = "Replaces=consult-1%40127.0.0.32%3Bto-tag%3Dcarol-tag%3Bfrom-tag%3Dbob-tag"

# (what it shows, referrer, Refer-To value)
CASES: tuple[tuple[str, str, str], ...] = (
    ("blind transfer to an extension", BOB, "<sip:1003@lab.test>"),
    ("extension on the other PBX", BOB, "<sip:2001@lab.test>"),
    ("attended transfer, bob is in the dialog", BOB, f"<sip:1003@lab.test?{REPLACES}>"),
    ("attended transfer, alice is not (hijack)", "sip:1001@lab.test", f"<sip:1003@lab.test?{REPLACES}>"),
    ("national number to E.164", BOB, "<sip:020-7946-0000@lab.test>"),
    ("tel: URI converted", BOB, "<tel:+44-20-7946-0000>"),
    ("premium-rate number", BOB, "<sip:09001234567@lab.test>"),
    ("international number", BOB, "<sip:0033123456789@lab.test>"),
    ("international, operator override", "sip:1001@lab.test", "<sip:0033123456789@lab.test>"),
    ("embedded Call-ID (RFC 3515 example)", BOB, "<sip:1003@lab.test?Call-ID%3D55432%40alicepc.example.com>"),
    ("method=SUBSCRIBE", BOB, "<sip:1003@lab.test;method=SUBSCRIBE>"),
    ("http: target", BOB, "http://www.ietf.org"),
    ("foreign domain", BOB, "<sip:1003@evil.example>"),
    ("unknown extension", BOB, "<sip:carol@lab.test>"),
    ("malformed Refer-To", BOB, "<sip:1003@lab.test"),
)


def example_policy() -> Policy:
    """The example policy shipped with the package."""
    return parse_policy(EXAMPLE.read_text(encoding="utf-8"), source="the example policy")


def main(argv: list[str]) -> int:
    source = argv[0] if argv else "the example policy"
    try:
        policy = load_policy(Path(argv[0])) if argv else example_policy()
    except PolicyError as err:
        print(f"referee demo: policy {source}: {err}", file=sys.stderr)
        return 3
    print(f"{policy.summary()}  ({source})\n")
    for title, referrer, refer_to in CASES:
        decision = policy.decide(refer_to, referrer=referrer, dialogs=(BOB_CAROL,) if referrer == BOB else ())
        if decision.allowed:
            verdict = f"ALLOW  -> {decision.refer_to}"
        else:
            verdict = f"REJECT {decision.status} {decision.reason}"
        print(f"  {title:<42} {referrer:<18} {refer_to}\n  {'':<42} {verdict}   [{decision.rule}]\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
