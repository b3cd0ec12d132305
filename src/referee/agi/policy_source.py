"""Where the guard's policy comes from: a file, loaded once, reloaded on request (SIGHUP) or
when it changes (:meth:`PolicySource.reload_if_changed`, every ``--policy-check`` seconds).

A policy that cannot be loaded at startup is an error the caller reports and exits on. A
reload that fails keeps the policy in force and logs why: a typo in the file never opens
(or closes) every transfer. So once the file settles on a good version, the server runs it,
whatever bad files came in between.
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
        self.error = ""  # why the file on disk is not the policy in force ("" when it is)
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload_if_changed(self) -> bool:
        """Reload when the file's mtime, size or inode changed since the last look; whether it did."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return self.reload()

    def load(self) -> Policy:
        self._stamp = self._stat()
        self.policy = load_policy(self.path)
        log.info("policy %s loaded: %s, version %s", self.path, self.policy.summary(), self.policy.version)
        return self.policy

    def reload(self) -> bool:
        """Load the file again; on failure keep the policy in force. True if the new one is in force."""
        self._stamp = self._stat()
        try:
            policy = load_policy(self.path)
        except PolicyError as err:
            self.failed_reloads += 1
            self.error = str(err)
            kept = "none" if self.policy is None else repr(self.policy.id)
            log.error("policy %s not reloaded, keeping policy %s: %s", self.path, kept, err)
            return False
        except Exception:  # a bug in the loader must not take the guard down either
            self.failed_reloads += 1
            self.error = "internal error"
            log.exception("policy %s not reloaded (internal error), keeping the policy in force", self.path)
            return False
        self.policy = policy
        self.reloads += 1
        self.error = ""
        log.info("policy %s reloaded: %s, version %s", self.path, policy.summary(), policy.version)
        return True
