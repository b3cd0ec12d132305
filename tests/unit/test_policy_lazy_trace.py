"""The rule trace is worked out when read, and is the one the decision took.

``Policy.decide`` walks the rules without noting anything; the Decision's trace walks them again,
traced, the first time it is read. Here the untraced decision is compared, field for field and step
for step, with the traced walk, on the decision examples and on generated Refer-To values; and every
reader (``to_dict``, the CLI's explanation, equality) sees what an eager trace gave.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from referee.cli import format_decision
from referee.policy import Decision, Dialog, Policy, TraceStep, load_policy, parse_policy
from referee.policy.engine import _Deciding
from referee.policy.model import Trace

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy.toml"
TEXT = EXAMPLE.read_text()
POLICIES = [
    load_policy(EXAMPLE),
    parse_policy(TEXT.replace('on_uri_parameter = "strip"', 'on_uri_parameter = "reject"')),
    parse_policy(TEXT.replace('on_forbidden_header = "strip"', 'on_forbidden_header = "reject"')),
    parse_policy(TEXT.replace('foreign_domains = "reject"', 'foreign_domains = "allow"')),
    parse_policy(TEXT.replace("keep_headers = []", 'keep_headers = ["Priority"]')),
]
DIALOG = Dialog("c1@127.0.0.32", "bobtag", "caroltag")
REPLACES = "Replaces=c1%40127.0.0.32%3Bto-tag%3Dcaroltag%3Bfrom-tag%3Dbobtag"
REFER_TOS = [
    "<sip:1003@lab.test>",
    '"Carol" <sip:1003@lab.test>;x=1',
    "sip:1003@lab.test;maddr=198.51.100.7",
    "<sip:1003@lab.test;maddr=198.51.100.7;transport=tcp;transport=udp;user=phone>",
    "<sip:1003@lab.test;method=INVITE>",
    "<sip:1003@lab.test;method=BYE>",
    "<sip:09001234567@lab.test>",
    "<sip:020-7946-0000@lab.test>",
    "<sip:+33123456789@lab.test;user=ip>",
    "<tel:020-7946-0000>",
    "<tel:+1-555-0100>",
    f"<sip:1003@lab.test?{REPLACES}>",
    f"<sip:1003@lab.test?{REPLACES}&{REPLACES}>",
    "<sip:1003@lab.test?Replaces=c9%40elsewhere%3Bto-tag%3Da%3Bfrom-tag%3Db>",
    "<sip:1003@lab.test?Replaces=broken>",
    "<sip:1003@lab.test?From=x&Priority=urgent&X-Other=1>",
    "<sip:1003@partner.example>",
    "<sip:1003@other.example>",
    "<sip:carol@lab.test>",
    "<sip:@lab.test>",
    "http://www.ietf.org",
    "<sip:1003@lab.test>, <sip:1004@lab.test>",
    "",
]
REFERRERS = [
    "sip:1002@lab.test",
    "sip:1001@lab.test",
    "sip:1002@127.0.0.10",
    "not a uri",
    "sip:9@nowhere.test",
]


def traced(policy: Policy, refer_to: str, referrer: str, dialogs: tuple[Dialog, ...], depth: int) -> Decision:
    """The walk with every step noted as it goes: what ``decide`` did before its trace was lazy."""
    return _Deciding(policy, referrer, dialogs, depth, traced=True).run(refer_to)


def same_decision(policy: Policy, refer_to: str, referrer: str, depth: int = 0) -> None:
    dialogs = (DIALOG,)
    lazy = policy.decide(refer_to, referrer=referrer, dialogs=dialogs, depth=depth)
    eager = traced(policy, refer_to, referrer, dialogs, depth)
    assert isinstance(lazy.trace, Trace) and isinstance(eager.trace, tuple)
    assert lazy[:4] == eager[:4] and lazy[5:] == eager[5:], refer_to
    assert tuple(lazy.trace) == eager.trace, refer_to
    assert all(type(step) is TraceStep for step in lazy.trace)
    assert json.dumps(lazy.to_dict()) == json.dumps(eager.to_dict())
    assert json.dumps(lazy.to_dict()["trace"]) == json.dumps([step._asdict() for step in eager.trace])
    assert format_decision(lazy, explain=True) == format_decision(eager, explain=True)


def test_every_example_decides_and_traces_as_the_traced_walk() -> None:
    for policy in POLICIES:
        for refer_to in REFER_TOS:
            for referrer in REFERRERS:
                for depth in (0, 3, 4):
                    same_decision(policy, refer_to, referrer, depth)


_pieces = st.sampled_from(
    [
        "sip:", "sips:", "tel:", "1003", "020-7946-0000", "+44", "09001234567", "@", "lab.test",
        "LAB.TEST", "127.0.0.10", "partner.example", ":5060", ";maddr=x", ";transport=tcp",
        ";TRANSPORT=ws", ";user=phone", ";method=invite", ";lr", "?", "&", REPLACES, "From=a",
        "Priority=1", "%3B", "%40", "<", ">", '"C" ', ";x=1", " ", ",",
    ]
)  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.lists(_pieces, max_size=10).map("".join), st.sampled_from(REFERRERS), st.integers(0, 5))
@example("<sip:1003@lab.test>", "sip:1002@lab.test", 0)
def test_generated_refer_tos_decide_and_trace_as_the_traced_walk(
    refer_to: str, referrer: str, depth: int
) -> None:
    for policy in POLICIES[:2]:
        same_decision(policy, refer_to, referrer, depth)


def test_the_trace_is_worked_out_once_and_only_when_read() -> None:
    calls: list[int] = []
    step = TraceStep("syntax", "pass", "sip: target")

    def work_out() -> tuple[TraceStep, ...]:
        calls.append(1)
        return (step,)

    trace = Trace(work_out)
    assert calls == []
    assert trace[0] == step and trace[-1:] == (step,) and len(trace) == 1 and list(trace) == [step]
    assert trace == (step,) and (step,) == trace and trace == Trace(lambda: (step,))
    assert trace != (step, step) and hash(trace) == hash((step,)) and repr(trace) == repr((step,))
    assert calls == [1]


def test_the_trace_sees_the_dialogs_as_they_were_when_deciding() -> None:
    policy = POLICIES[0]
    dialogs = [DIALOG]
    decision = policy.decide(f"<sip:1003@lab.test?{REPLACES}>", referrer="sip:1002@lab.test", dialogs=dialogs)
    dialogs.clear()  # a caller reusing its list
    assert decision.allowed
    assert [step.rule for step in decision.trace][-4:] == [
        "replaces",
        "depth",
        "pbx1-extensions",
        "pbx1-extensions",
    ]


def test_a_decision_without_its_trace_is_what_the_proxy_writes() -> None:
    decision = POLICIES[0].decide("<sip:1003@lab.test>", referrer="sip:1002@lab.test")
    summary = decision._replace(trace=()).to_dict()
    assert summary["trace"] == [] and summary["refer_to"] == "<sip:1003@127.0.0.20:5060>"
