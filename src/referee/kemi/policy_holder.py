"""The policy the proxy decides with, re-read when its file changes.

Every Kamailio worker is a process with its own interpreter and its own holder, and a worker
looks at the file only when it handles a REFER. A worker that saw no REFER while a good
version was in place never read it; if a bad file then replaces it, that worker cannot read
the good version from disk any more. So a worker that loads a good file also publishes it
(mtime, SHA-256, text) in Kamailio shared memory (``$shv(referee_policy)``), and a worker
whose file is bad takes the published copy when it is newer than its own. Once the file
settles, every worker applies the same version, whatever bad files came in between.

The version (:attr:`referee.policy.Policy.version`, a short hash of the policy's canonical
content) of that shared copy is also kept on its own, in ``$shv(referee_policy_version)``, for
``referee policy status`` to read over Kamailio's ctl socket (``kamcmd pv.shvGet``).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from referee.policy import Policy, PolicyError

if TYPE_CHECKING:
    from referee.kemi.ksr import KSR

Stamp = tuple[int, int, int]  # mtime_ns, size, inode


class SharedSlot(Protocol):
    """One string every worker sees (Kamailio shared memory)."""

    def get(self) -> str | None: ...
    def set(self, value: str) -> None: ...


class PvSlot:
    """A ``$shv`` string variable, declared in kamailio.cfg (``modparam("pv", "shvset", "name=s:")``)."""

    def __init__(self, ksr: KSR, spec: str) -> None:
        self._k = ksr
        self.spec = spec

    def get(self) -> str | None:
        value = self._k.pv.get(self.spec)
        return value if isinstance(value, str) and value else None

    def set(self, value: str) -> None:
        self._k.pv.sets(self.spec, value)


@dataclass(frozen=True)
class PolicyText:
    """One version of the policy file: when it was written, its hash, its text."""

    mtime_ns: int
    digest: str
    text: str

    @classmethod
    def of(cls, data: bytes, mtime_ns: int) -> PolicyText:
        return cls(mtime_ns, hashlib.sha256(data).hexdigest(), data.decode("utf-8"))

    def encode(self) -> str:
        return f"{self.mtime_ns} {self.digest}\n{self.text}"

    @classmethod
    def decode(cls, raw: str | None) -> PolicyText | None:
        head, newline, text = (raw or "").partition("\n")
        mtime, _, digest = head.partition(" ")
        if not newline or not mtime.isdigit() or len(digest) != 64:
            return None
        return cls(int(mtime), digest, text)

    def newer_than(self, other: PolicyText | None) -> bool:
        """Another version, not older. Equal mtimes (two writes in one clock tick) count as newer,
        so that every worker converges on the shared copy."""
        return other is None or (self.digest != other.digest and self.mtime_ns >= other.mtime_ns)


class PolicyHolder:
    """The current policy; re-reads the file when it changes, keeps a good one when the file is bad."""

    def __init__(
        self,
        path: str,
        parse: Callable[[str, str], Policy],
        log: Callable[[str, str], None],
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedSlot | None = None,
        shared_version: SharedSlot | None = None,
    ) -> None:
        self.path = path
        self._parse = parse
        self._log = log
        self._interval = interval
        self._clock = clock
        self._shared: SharedSlot | None = None
        self._shared_version = shared_version
        self._stamp: Stamp | None = None
        self._next_check = 0.0
        self.policy: Policy | None = None
        self.version: PolicyText | None = None  # the text self.policy was compiled from
        self.error: str | None = None  # why the file on disk could not be used
        # The first load runs in mod_init, before the workers fork: they all start with it,
        # so it need not be published (and shared memory is not touched outside a worker).
        self.check(force=True)
        self._shared = shared

    @property
    def policy_version(self) -> str | None:
        """The version (short hash) of the policy in force, None without one."""
        return self.policy.version if self.policy is not None else None

    def _stat(self) -> Stamp | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _read(self, stamp: Stamp | None) -> PolicyText:
        try:
            with open(self.path, "rb") as file:
                data = file.read()
        except OSError as err:
            raise PolicyError("", f"cannot read {self.path}: {err.strerror or err}") from None
        try:
            return PolicyText.of(data, stamp[0] if stamp else 0)
        except UnicodeDecodeError:
            raise PolicyError("", f"{self.path} is not UTF-8") from None

    def check(self, *, force: bool = False) -> Policy | None:
        if not force and self._interval <= 0:
            return self.policy
        now = self._clock()
        if not force and now < self._next_check:
            return self.policy
        self._next_check = now + self._interval
        stamp = self._stat()
        if stamp == self._stamp and not force:
            if self.error is not None and self._take_shared():
                self._log(f"referee: policy {self.path} still bad; {self._shared_note()}", "info")
            return self.policy
        self._stamp = stamp
        try:
            version = self._read(stamp)
            policy = self._parse(version.text, self.path)
        except Exception as exc:  # a bad file must never take the running policy down
            self.error = f"{type(exc).__name__}: {exc}"
            if self._take_shared():
                keeping = f"keeping the previous policy: {self._shared_note()}"
            elif self.policy:
                keeping = "keeping the previous policy"
            else:
                keeping = "no policy loaded, REFER fails closed"
            self._log(f"referee: policy {self.path} failed to load ({self.error}); {keeping}", "err")
            return self.policy
        self.policy, self.version, self.error = policy, version, None
        self._publish(version)
        self._log(f"referee: policy {self.path} loaded, version {policy.version}", "info")
        return policy

    def _shared_note(self) -> str:
        digest = self.version.digest[:12] if self.version else "?"
        return f"the last good file another worker loaded (sha256 {digest}...)"

    def _publish(self, version: PolicyText) -> None:
        if self._shared is None:
            return
        try:
            published = PolicyText.decode(self._shared.get())
            if published is None or version.newer_than(published):
                self._shared.set(version.encode())
                if self._shared_version is not None and self.policy is not None:
                    self._shared_version.set(self.policy.version)
        except Exception as exc:  # sharing is a convergence aid: it must never stop a decision
            self._log(f"referee: cannot publish policy {self.path} to the other workers ({exc})", "warn")

    def announce(self) -> None:
        """In a new worker: make the startup policy's version known, unless a worker already did.

        The first load runs before the workers fork and publishes nothing; without this the
        proxy's version would stay unknown until a policy change."""
        if self._shared_version is None or self.policy is None:
            return
        try:
            if not self._shared_version.get():
                self._shared_version.set(self.policy.version)
        except Exception as exc:  # status only: never stop a worker
            self._log(f"referee: cannot announce the policy version ({exc})", "warn")

    def _take_shared(self) -> bool:
        """Take the published good version if it is newer than ours; whether we did."""
        if self._shared is None:
            return False
        try:
            published = PolicyText.decode(self._shared.get())
            if published is None or not published.newer_than(self.version):
                return False
            policy = self._parse(published.text, self.path)
        except Exception:  # unreadable shared memory, or a copy this version cannot compile
            return False
        self.policy, self.version = policy, published
        return True
