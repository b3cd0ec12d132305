"""One REFER decided on demand, JSON in and out: what ``referee policy check --json`` prints, for the
operator API's playground (which knows the policy only through this)."""

from __future__ import annotations

from typing import Any

from referee.policy.engine import Policy
from referee.policy.model import Dialog


class PolicyCheck:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def check(self, refer_to: str, referrer: str, dialogs: list[str], depth: int) -> dict[str, Any]:
        parsed = [Dialog.parse(text) for text in dialogs]  # ValueError on a malformed one
        return self.policy.decide(refer_to, referrer=referrer, dialogs=parsed, depth=depth).to_dict()
