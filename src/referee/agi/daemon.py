"""The FastAGI daemon: the transfer-guard route, the policy it uses, and its signals.

    referee fastagi --policy /etc/referee/policy.toml --listen 127.0.0.20 --port 4573

SIGHUP reloads the policy, and so does a change of the file (looked at every ``policy_check``
seconds); a bad file keeps the old one, logged. SIGTERM and SIGINT stop.

Routes: ``transfer-guard`` (the guard) and ``policy-status``, which answers with
``SET VARIABLE`` commands: ``REFEREE_POLICY_VERSION``, ``REFEREE_POLICY_FILE`` and
``REFEREE_POLICY_ERROR`` (why the file on disk is not in force; empty when it is).
``referee policy status`` asks it, playing Asterisk's part.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from referee.agi.fastagi import FastAgiServer, Handler, Limits
from referee.agi.guard import GuardSession, set_variable_command
from referee.agi.policy_source import PolicySource
from referee.agi.protocol import AgiRequest

if TYPE_CHECKING:
    from referee.metrics.fastagi import FastAgiMetrics

log = logging.getLogger("referee.agi.daemon")

TRANSFER_GUARD = "transfer-guard"
POLICY_STATUS = "policy-status"


# Told each decision: allowed, and the rule that decided (referee.metrics.fastagi.FastAgiMetrics.decided).
DecisionObserver = Callable[[bool, str], None]


def transfer_guard(
    source: PolicySource, domain: str | None = None, on_decision: DecisionObserver | None = None
) -> Handler:
    """The ``agi://host:port/transfer-guard`` route; ``domain`` as in :class:`GuardSession`."""

    async def guard(request: AgiRequest) -> None:
        session = GuardSession(request.headers, domain)
        while (name := session.wanted()) is not None:  # nothing to ask when the request carried it all
            session.give(name, await request.get_variable(name))
        variables = session.decide(source.policy)
        if on_decision is not None:
            values = dict(variables)
            on_decision(values["REFEREE_ALLOWED"] == "1", values["REFEREE_RULE"])
        for name, value in session.package(variables):
            await request.command(set_variable_command(name, value))

    return guard


def policy_status(source: PolicySource) -> Handler:
    """The ``agi://host:port/policy-status`` route: the version this server runs."""

    async def status(request: AgiRequest) -> None:
        version = source.policy.version if source.policy is not None else ""
        await request.set_variable("REFEREE_POLICY_VERSION", version)
        await request.set_variable("REFEREE_POLICY_FILE", source.path)
        await request.set_variable("REFEREE_POLICY_ERROR", source.error)

    return status


async def watch(source: PolicySource, interval: float) -> None:
    """Reload the policy when its file changes, looking every ``interval`` seconds."""
    while True:
        await asyncio.sleep(interval)
        try:
            source.reload_if_changed()
        except Exception:  # watching is a convenience: it must never stop the server
            log.exception("policy %s: looking for changes failed", source.path)


async def serve(
    source: PolicySource,
    host: str,
    port: int,
    *,
    limits: Limits | None = None,
    domain: str | None = None,
    policy_check: float = 1.0,
    on_listening: Callable[[str, int], None] | None = None,
    metrics: FastAgiMetrics | None = None,
) -> FastAgiServer:
    """Run until SIGTERM/SIGINT; SIGHUP (and, every ``policy_check`` seconds unless 0, a change
    of the file) reloads the policy. Returns the stopped server. ``metrics``: counted into, when given."""
    decided = metrics.decided if metrics is not None else None
    routes = {TRANSFER_GUARD: transfer_guard(source, domain, decided), POLICY_STATUS: policy_status(source)}
    server = FastAgiServer(routes, limits, metrics.ended if metrics is not None else None)
    if metrics is not None:
        metrics.watch(server.stats)
    bound = await server.start(host, port)
    watcher = asyncio.create_task(watch(source, policy_check)) if policy_check > 0 else None
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, source.reload)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    # Announced once the signals are ours: a SIGTERM right after "listening" stops it cleanly.
    if on_listening is not None:
        on_listening(*bound)
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await server.close()
    return server


def announce(host: str, port: int) -> None:
    """Print the bound address on stdout, for scripts and tests started with port 0."""
    print(f"referee fastagi: listening on {host}:{port}", flush=True)
    sys.stdout.flush()
