"""The FastAGI daemon: the transfer-guard route, the policy it uses, and its signals.

    referee fastagi --policy /etc/referee/policy.toml --listen 127.0.0.20 --port 4573

SIGHUP reloads the policy (a bad file keeps the old one, logged); SIGTERM and SIGINT stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from referee.agi.fastagi import FastAgiServer, Handler, Limits
from referee.agi.guard import GuardSession
from referee.agi.policy_source import PolicySource
from referee.agi.protocol import AgiRequest

log = logging.getLogger("referee.agi.daemon")

TRANSFER_GUARD = "transfer-guard"


def transfer_guard(source: PolicySource, domain: str | None = None) -> Handler:
    """The ``agi://host:port/transfer-guard`` route; ``domain`` as in :class:`GuardSession`."""

    async def guard(request: AgiRequest) -> None:
        session = GuardSession(request.headers, domain)
        while (name := session.wanted()) is not None:
            session.give(name, await request.get_variable(name))
        for name, value in session.decide(source.policy):
            await request.set_variable(name, value)

    return guard


async def serve(
    source: PolicySource,
    host: str,
    port: int,
    *,
    limits: Limits | None = None,
    domain: str | None = None,
    on_listening: Callable[[str, int], None] | None = None,
) -> FastAgiServer:
    """Run until SIGTERM/SIGINT; SIGHUP reloads the policy. Returns the stopped server."""
    server = FastAgiServer({TRANSFER_GUARD: transfer_guard(source, domain)}, limits)
    bound = await server.start(host, port)
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
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await server.close()
    return server


def announce(host: str, port: int) -> None:
    """Print the bound address on stdout, for scripts and tests started with port 0."""
    print(f"referee fastagi: listening on {host}:{port}", flush=True)
    sys.stdout.flush()
