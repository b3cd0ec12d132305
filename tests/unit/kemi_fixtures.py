"""Shared helpers for the KEMI adapter unit tests (the fake KSR, a handler, SIP texts)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from referee.kemi import ReferenceProxy, make_handler
from referee.testing.fake_ksr import FakeKSR

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "tests" / "integration" / "policy.toml"
PBX1 = "127.0.1.20"
PBX2 = "127.0.1.21"
HOMES = {"1001": "pbx1", "1002": "pbx1", "1003": "pbx1", "2001": "pbx2"}


def ha1(user: str, password: str | None = None) -> str:
    return hashlib.md5(f"{user}:lab.test:{password or 'pw' + user}".encode()).hexdigest()


def credentials(user: str, password: str | None = None) -> str:
    """The fake's digest credentials: its ``response`` is the HA1 (see referee.testing.fake_ksr)."""
    return (
        f'Proxy-Authorization: Digest username="{user}", realm="lab.test", response="{ha1(user, password)}"'
    )


class Clock:
    """A clock a test moves by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def defines(tmp: Path) -> dict[str, str]:
    policy = tmp / "policy.toml"
    if not policy.exists():
        policy.write_text(POLICY.read_text())
    users = tmp / "credentials"
    if not users.exists():
        users.write_text("".join(f"{user}:{ha1(user)}:{pbx}\n" for user, pbx in HOMES.items()))
        os.chmod(users, 0o600)
    return {
        "REFEREE_POLICY": f'"{policy}"',
        "REFEREE_EVENTS": f'"{tmp / "events.jsonl"}"',
        "REFEREE_DOMAIN": '"lab.test"',
        "REFEREE_PBXS": f'"pbx1=sip:{PBX1}:5060 pbx2=sip:{PBX2}:5060"',
        "REFEREE_CREDENTIALS": f'"{users}"',
        # Most tests drive the REFER check with out-of-dialog REFERs; the default (refuse) has its own.
        "REFEREE_OUT_OF_DIALOG_REFER": '"relay"',
        "REFEREE_POLICY_CHECK": '"0"',
    }


def let_1001_send_as_1002(tmp: Path) -> None:
    """The test policy with an override letting 1001 (the operator console) present 1002's From."""
    policy = tmp / "policy.toml"
    defines(tmp)
    policy.write_text(
        policy.read_text().replace('id = "operator-console"', 'id = "desk"\nsend_as = ["1002"]')
    )


def make(tmp: Path) -> tuple[FakeKSR, ReferenceProxy]:
    fake = FakeKSR(defines=defines(tmp))
    return fake, make_handler(fake)


def events(tmp: Path) -> list[dict[str, Any]]:
    path = tmp / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def request(
    method: str,
    *,
    ruri: str = "sip:1001@lab.test",
    frm: str = "<sip:1002@lab.test>;tag=ft1",
    to: str = "<sip:1001@lab.test>",
    call_id: str = "call-1@test",
    cseq: int = 1,
    headers: list[str] | None = None,
    body: str = "",
    route: bool = False,
    auth: bool = True,
) -> str:
    """A request; with ``auth`` it carries the From user's credentials (ignored when in-dialog)."""
    lines = [
        f"{method} {ruri} SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.1.32:5060;branch=z9hG4bKabc",
        "Max-Forwards: 70",
        f"From: {frm}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:1002@127.0.1.32:5060>",
    ]
    if route:
        lines.append("Route: <sip:127.0.1.10;lr>")
    user = frm.split("sip:", 1)[-1].split("@", 1)[0]
    if auth and method != "REGISTER" and user in HOMES:
        lines.append(credentials(user))
    lines += headers or []
    lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines) + "\r\n\r\n" + body


def refer(refer_to: str | None, **kwargs: Any) -> str:
    headers = list(kwargs.pop("headers", []))
    if refer_to is not None:
        headers.insert(0, f"Refer-To: {refer_to}")
    return request("REFER", headers=headers, **kwargs)
