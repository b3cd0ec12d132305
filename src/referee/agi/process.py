"""The process AGI transfer guard, on pyst2's :class:`asterisk.agi.AGI`.

Asterisk starts one process per call (``AGI(referee_transfer_guard.py)``), so this loads
the policy for every call: it is the fallback when the FastAGI daemon is unreachable, not
the fast path. The policy file is ``$REFEREE_POLICY`` (else /etc/referee/policy.toml); one
that cannot be loaded refuses the transfer (status 503) and says why in the log. The tenant
domain of bare extensions is ``$REFEREE_DOMAIN``, else the policy's default tenant (see
:mod:`referee.agi.guard`).

Workaround: pyst2's ``AGI.set_variable`` quotes values without escaping them, so a ``"`` or
a newline from a Refer-To would corrupt the command (or inject another). Values are quoted
with :func:`referee.agi.quoting.agi_quote` and sent with ``AGI.execute``.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from typing import Any, TextIO

from referee.agi.guard import GuardSession
from referee.agi.policy_source import policy_path
from referee.agi.quoting import agi_quote
from referee.policy import Policy, PolicyError, load_policy

log = logging.getLogger("referee.agi.process")

EXIT_OK, EXIT_FAILED = 0, 1


def run_guard(agi: Any, policy: Policy | None, domain: str | None = None) -> list[tuple[str, str]]:
    """One guard session over a pyst2 AGI object; the variables it set."""
    session = GuardSession(agi.env, domain)
    while (name := session.wanted()) is not None:
        session.give(name, agi.get_variable(name))
    answer = session.decide(policy)
    for name, value in answer:
        agi.execute("SET VARIABLE", agi_quote(name), agi_quote(value))
    return answer


def load(path: str) -> Policy | None:
    try:
        return load_policy(path)
    except PolicyError as err:
        log.error("policy %s cannot be used, refusing transfers: %s", path, err)
        return None


def main(stdin: TextIO | None = None, stdout: TextIO | None = None, stderr: TextIO = sys.stderr) -> int:
    # Asterisk logs an AGI's stderr on its console: keep it to our own lines, no pyst2 debug.
    logging.basicConfig(stream=stderr, level=logging.INFO, format="referee-agi %(levelname)s %(message)s")
    # The AGI environment may carry a Latin-1 caller ID name: read leniently, whatever the locale.
    if stdin is None:
        stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    if stdout is None:
        stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", errors="replace", line_buffering=True)
    from asterisk.agi import AGI  # noqa: PLC0415  (pyst2; only the process AGI needs it)

    with open(os.devnull, "w", encoding="utf-8") as quiet:
        try:
            agi = AGI(stdin=stdin, stdout=stdout, stderr=quiet)
            policy = load(policy_path())
            run_guard(agi, policy, os.environ.get("REFEREE_DOMAIN"))
        except Exception:
            log.exception("transfer guard AGI failed; REFEREE_ALLOWED stays as the dialplan set it (0)")
            return EXIT_FAILED
    return EXIT_OK
