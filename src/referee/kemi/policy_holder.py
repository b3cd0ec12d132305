"""The policy the proxy decides with, re-read when its file changes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from referee.policy import Policy


class PolicyHolder:
    """The current policy; re-reads the file when it changes, keeps the old one if the new one is bad."""

    def __init__(
        self,
        path: str,
        loader: Callable[[str], Policy],
        log: Callable[[str, str], None],
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._loader = loader
        self._log = log
        self._interval = interval
        self._clock = clock
        self._stamp: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self.policy: Policy | None = None
        self.error: str | None = None
        self.check(force=True)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def check(self, *, force: bool = False) -> Policy | None:
        if not force and self._interval <= 0:
            return self.policy
        now = self._clock()
        if not force and now < self._next_check:
            return self.policy
        self._next_check = now + self._interval
        stamp = self._stat()
        if stamp == self._stamp and not force:
            return self.policy
        self._stamp = stamp
        try:
            policy = self._loader(self.path)
        except Exception as exc:  # a bad file must never take the running policy down
            self.error = f"{type(exc).__name__}: {exc}"
            keeping = "keeping the previous policy" if self.policy else "no policy loaded, REFER fails closed"
            self._log(f"referee: policy {self.path} failed to load ({self.error}); {keeping}", "err")
            return self.policy
        self.policy = policy
        self.error = None
        self._log(f"referee: policy {self.path} loaded", "info")
        return policy
