"""route[REFEREE] reads some of the REFER natively and passes it to python_exec (refer.REFER_ARGS): the
check decides, rewrites and records exactly as when it reads everything through KSR itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from kemi_fixtures import REPO, defines, events, refer

from referee.kemi.native import ALLOWED_VAR, make_native_hooks
from referee.kemi.refer import REFER_ARGS, REPLY_ARGS, Known, KnownReply
from referee.testing.fake_ksr import FakeKSR

DROPIN = REPO / "ansible" / "roles" / "kamailio" / "templates" / "referee.cfg.j2"


def native_args(fake: FakeKSR, spec: str) -> str:
    """``spec`` as Kamailio expands it for python_exec, from the fake's message."""

    def value(match: re.Match[str]) -> str:
        name = match.group(0)
        if name == "$(cs{s.int})":
            return str(int(str(fake.pv.get("$cs"))))
        if name == "$var(referee_dialog)":
            return "1" if fake.pv.get("$tt") is not None else "0"
        if name == "$rs":
            return str(fake.kx.get_status())
        return str(fake.pv.get(name))

    return re.sub(r"\$\(cs\{s\.int\}\)|\$\w+(\([^)]*\))?", value, spec)


def test_the_dropin_passes_what_the_check_parses() -> None:
    text = DROPIN.read_text()
    assert f'python_exec("route_refer", "{REFER_ARGS}");' in text
    assert f'python_exec("ksr_onreply_refer", "{REPLY_ARGS}");' in text


@pytest.mark.parametrize("args", ["", "1 2", "127.0.0.1 x 1 0 0 0 0", "127.0.0.1 1 1 0 0 0 0 extra"])
def test_unexpected_args_are_read_through_ksr_instead(args: str) -> None:
    assert Known.parse(args) is None
    assert KnownReply.parse(args) is None


REFERS: list[dict[str, Any]] = [
    {"refer_to": "<sip:1003@lab.test>"},  # allowed, rewritten
    {"refer_to": "<sip:09001234567@lab.test>"},  # refused by the policy
    {"refer_to": None},  # no Refer-To
    {"refer_to": "<sip:1003@lab.test>", "headers": ["Refer-To: <sip:1001@lab.test>"]},  # two
    {"refer_to": "<sip:1003@lab.test>", "headers": ["Refer-Sub: false", "Referred-By: <sip:x@lab.test>"]},
    {"refer_to": "<sip:1003@lab.test>", "to": "<sip:1001@lab.test>;tag=t1"},  # in a dialog
]
REPLY = (
    "SIP/2.0 202 Accepted\r\nVia: SIP/2.0/UDP 127.0.1.32:5060;branch=z9hG4bKabc\r\n"
    "From: <sip:1002@lab.test>;tag=ft1\r\nTo: <sip:1001@lab.test>;tag=x\r\nCall-ID: call-1@test\r\n"
    "CSeq: 1 REFER\r\n{extra}Content-Length: 0\r\n\r\n"
)


def outcome(tmp: Path, message: dict[str, Any], *, native: bool, reply_extra: str) -> tuple[Any, ...]:
    fake = FakeKSR(defines=defines(tmp))
    hooks = make_native_hooks(fake)
    fake.request(refer(**message))
    hooks.route_refer(None, native_args(fake, REFER_ARGS) if native else None)
    verdict, replies, header_ops, on_reply = (
        fake.pvs[ALLOWED_VAR],
        fake.replies,
        fake.header_ops,
        fake.on_reply,
    )
    fake.reply(REPLY.format(extra=reply_extra))
    hooks.ksr_onreply_refer(None, native_args(fake, REPLY_ARGS) if native else None)
    written = [{k: v for k, v in e.items() if k != "time"} for e in events(tmp)]
    return verdict, replies, header_ops, on_reply, written


@pytest.mark.parametrize("message", REFERS)
@pytest.mark.parametrize("reply_extra", ["", "Refer-Sub: false\r\n"])
def test_native_args_decide_and_record_alike(
    tmp_path: Path, message: dict[str, Any], reply_extra: str
) -> None:
    (tmp_path / "ksr").mkdir()
    (tmp_path / "args").mkdir()
    through_ksr = outcome(tmp_path / "ksr", message, native=False, reply_extra=reply_extra)
    with_args = outcome(tmp_path / "args", message, native=True, reply_extra=reply_extra)
    assert with_args == through_ksr
    assert through_ksr[-1]  # something was recorded
