"""Where the guard's policy comes from: a file, loaded once, reloaded on request (SIGHUP).

A policy that cannot be loaded at startup is an error the caller reports and exits on. A
reload that fails keeps the policy in force and logs why: a typo in the file never opens
(or closes) every transfer.
"""

from __future__ import annotations

import logging
import os

from referee.policy import Policy, PolicyError, load_policy

log = logging.getLogger("referee.agi.policy")

DEFAULT_POLICY = "/etc/referee/policy.toml"


def policy_path(option: str | None = None) -> str:
    """The policy file: the command-line option, else ``$REFEREE_POLICY``, else the default."""
    return option or os.environ.get("REFEREE_POLICY") or DEFAULT_POLICY


class PolicySource:
    """The policy in force. ``load`` raises :class:`PolicyError`; ``reload`` never does."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.policy: Policy | None = None
        self.reloads = 0
        self.failed_reloads = 0

    def load(self) -> Policy:
        self.policy = load_policy(self.path)
        log.info("policy %s loaded: %s", self.path, self.policy.summary())
        return self.policy

    def reload(self) -> bool:
        """Load the file again; on failure keep the policy in force. True if the new one is in force."""
        try:
            policy = load_policy(self.path)
        except PolicyError as err:
            self.failed_reloads += 1
            kept = "none" if self.policy is None else repr(self.policy.id)
            log.error("policy %s not reloaded, keeping policy %s: %s", self.path, kept, err)
            return False
        except Exception:  # a bug in the loader must not take the guard down either
            self.failed_reloads += 1
            log.exception("policy %s not reloaded (internal error), keeping the policy in force", self.path)
            return False
        self.policy = policy
        self.reloads += 1
        log.info("policy %s reloaded: %s", self.path, policy.summary())
        return True
