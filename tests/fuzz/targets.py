"""Fuzz targets for the grammar and the policy, shared by `make fuzz` (atheris, coverage-guided) and the smoke
test in `make test` (a fixed mutation run).

One input is bytes, read as a REFER would hand them over (UTF-8, undecodable bytes replaced). What must hold:
- every parser returns a value or raises SipSyntaxError, nothing else, and what it returns survives
  ``parse(str(value)) == value``;
- the policy decides without raising, and a Refer-To it allows is still allowed once parsed and formatted
  again (``str(parse_refer_to(value))``): the policy cannot be talked round by spelling.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from referee import sip
from referee.policy import Dialog, Policy, load_policy

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "examples" / "policy.toml"
REFERRER = "sip:1002@lab.test"
# bob's dialog, so that an attended Refer-To naming it gets as far as the target rules.
DIALOGS = (Dialog("a84b4c76e66710@pc33.lab.test", "1928301774", "a6c85cf"),)

PARSERS: tuple[Callable[[str], Any], ...] = (
    sip.parse_uri,
    sip.parse_refer_to,
    sip.parse_referred_by,
    sip.parse_replaces,
    sip.parse_sipfrag,
)


class Finding(AssertionError):
    """An input that breaks a property: the message names the property and the input."""


@functools.cache
def example_policy() -> Policy:
    return load_policy(POLICY)


def grammar(text: str) -> None:
    for parse in PARSERS:
        try:
            value = parse(text)
        except sip.SipSyntaxError:
            continue
        except Exception as exc:
            raise Finding(f"{parse.__name__}({text!r}) raised {exc!r}") from exc
        try:
            again = parse(str(value))
        except sip.SipSyntaxError as exc:
            raise Finding(f"{parse.__name__}: str() of {text!r} is {str(value)!r}, refused: {exc}") from exc
        if again != value:
            raise Finding(f"{parse.__name__}: {text!r} -> {value!r} -> {again!r}")
    try:
        sip.parse_header_line(text)
    except sip.SipSyntaxError:
        pass
    except Exception as exc:
        raise Finding(f"parse_header_line({text!r}) raised {exc!r}") from exc


def policy(text: str) -> None:
    policy = example_policy()
    try:
        decision = policy.decide(text, referrer=REFERRER, dialogs=DIALOGS)
    except Exception as exc:
        raise Finding(f"decide({text!r}) raised {exc!r}") from exc
    if not decision.allowed:
        return
    formatted = str(sip.parse_refer_to(text))  # allowed, so it parses
    again = policy.decide(formatted, referrer=REFERRER, dialogs=DIALOGS)
    if not again.allowed:
        raise Finding(
            f"{text!r} is allowed ({decision.rule}) but its formatted form {formatted!r} is refused "
            f"{again.status} {again.reason} ({again.rule})"
        )
    if again.refer_to != decision.refer_to:
        raise Finding(
            f"{text!r} and {formatted!r} are rewritten differently: {decision.refer_to!r}, {again.refer_to!r}"
        )


def one_input(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    grammar(text)
    policy(text)
