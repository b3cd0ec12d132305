"""The process AGI transfer guard: a stdlib AGI loop around :class:`~referee.agi.guard.GuardSession`.

Asterisk starts one process per call (``AGI(referee_transfer_guard.py,?QUERY)``), so this loads
the policy for every call: it is the fallback when the FastAGI daemon is unreachable, not the
fast path. The policy file is ``$REFEREE_POLICY`` (else /etc/referee/policy.toml); one that
cannot be loaded refuses the transfer (status 503) and says why in the log. The tenant domain of
bare extensions is ``$REFEREE_DOMAIN``, else the policy's default tenant (see :mod:`referee.agi.guard`).

No pyst2: Debian does not package it, and a host without it had no fallback at all (``No module
named 'asterisk'``). The protocol needed here is small (the environment, then ``GET VARIABLE`` and
``SET VARIABLE`` with their ``200 result=`` lines), and pyst2 did not escape values anyway.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import sys
from typing import TextIO

from referee.agi.guard import GuardSession, set_variable_command
from referee.agi.policy_source import policy_path
from referee.agi.quoting import agi_quote
from referee.policy import Policy, PolicyError, load_policy

log = logging.getLogger("referee.agi.process")

EXIT_OK, EXIT_FAILED = 0, 1
_MAX_ENV_LINES = 256


class AgiError(Exception):
    """Asterisk closed the pipe, or answered a command with an error."""


class StdioAgi:
    """The AGI protocol on a process's stdin and stdout, as res_agi speaks it to a script."""

    def __init__(self, stdin: TextIO, stdout: TextIO) -> None:
        self.stdin, self.stdout = stdin, stdout
        self.env = self._read_env()

    def _read_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for _ in range(_MAX_ENV_LINES):
            line = self.stdin.readline()
            if not line.endswith("\n"):
                raise AgiError("the AGI environment ended early")
            if not line.strip():
                return env
            name, colon, value = line.rstrip("\r\n").partition(":")
            if colon:
                env[name.strip()] = value.strip(" ")
        raise AgiError("the AGI environment has no end")

    def command(self, line: str) -> str:
        """Send one command; the text after ``200 result=`` of its answer."""
        self.stdout.write(line + "\n")
        self.stdout.flush()
        while True:
            answer = self.stdin.readline()
            if not answer.endswith("\n"):
                raise AgiError(f"no answer to {line.split(' ', 2)[:2]}: the pipe closed")
            answer = answer.rstrip("\r\n")
            if answer != "HANGUP":  # the channel hung up: commands still answer (dead-channel mode)
                break
        if not answer.startswith("200 result="):
            raise AgiError(f"{line.split(' ', 2)[:2]}: {answer[:80]}")
        return answer[len("200 result=") :]

    def get_variable(self, name: str) -> str | None:
        """``GET VARIABLE``: ``200 result=1 (value)``, or ``result=0`` when the variable is not set."""
        result = self.command(f"GET VARIABLE {agi_quote(name)}")
        if not result.startswith("1 (") or not result.endswith(")"):
            return None
        return result[3:-1]


def run_guard(agi: StdioAgi, policy: Policy | None, domain: str | None = None) -> list[tuple[str, str]]:
    """One guard session; the variables it set."""
    session = GuardSession(agi.env, domain)
    while (name := session.wanted()) is not None:  # nothing to ask when the request carried it all
        session.give(name, agi.get_variable(name))
    answer = session.answer(policy)
    for name, value in answer:
        agi.command(set_variable_command(name, value))
    return answer


def load(path: str) -> Policy | None:
    try:
        return load_policy(path)
    except PolicyError as err:
        log.error("policy %s cannot be used, refusing transfers: %s", path, err)
        return None


def main(stdin: TextIO | None = None, stdout: TextIO | None = None, stderr: TextIO = sys.stderr) -> int:
    # Asterisk logs an AGI's stderr on its console: keep it to our own lines.
    logging.basicConfig(stream=stderr, level=logging.INFO, format="referee-agi %(levelname)s %(message)s")
    # A hangup sends SIGHUP: finishing the few commands left is harmless, dying mid-line is noise.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # The AGI environment may carry a Latin-1 caller ID name: read leniently, whatever the locale.
    if stdin is None:
        stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    if stdout is None:
        stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", errors="replace")
    try:
        agi = StdioAgi(stdin, stdout)
        run_guard(agi, load(policy_path()), os.environ.get("REFEREE_DOMAIN"))
    except Exception:
        log.exception("transfer guard AGI failed; the dialplan's REFEREE_ALLOWED stays 0")
        return EXIT_FAILED
    return EXIT_OK
