"""``referee orchestrator``: the daemon, wired in one place (like wazo-calld's ``plugin.py``).

One asyncio loop holds the audit store, one tracker and AMI link per PBX, the orchestrator over
them, the proxy's event-file ingest and the operator API, which sees the rest only through the
:class:`~referee.api.service.TransferService` the orchestrator offers. Prints one line when the
API listens (``referee orchestrator: API on http://HOST:PORT, PBX(s) ...``) and runs until
SIGTERM or SIGINT. Its Prometheus metrics (:mod:`referee.metrics.orchestrator`) are on the API's
``/metrics`` and, with ``--metrics-listen`` (``metrics`` in the settings file), on a port of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from referee.api.access import DEFAULT_API, DEFAULT_TOKEN_FILE, AccessError, read_or_create_token
from referee.api.app import Api
from referee.api.http import HttpServer
from referee.audit.ingest import EventFileIngest
from referee.audit.store import AuditError, AuditStore, open_store
from referee.metrics.exposition import CONTENT_TYPE_LATEST, MetricsServer, announce, render
from referee.metrics.exposition import serve as serve_metrics
from referee.metrics.orchestrator import OrchestratorMetrics
from referee.orchestrator.api_service import READY_WITHIN, OrchestratorService
from referee.orchestrator.operations import Orchestrator
from referee.orchestrator.pbx import PbxLink
from referee.orchestrator.settings import KEYS, Settings, SettingsError, check, load_file, parse_pbx_url
from referee.orchestrator.tracker import Tracker
from referee.policy import Policy, PolicyError, load_policy
from referee.policy.check import PolicyCheck

log = logging.getLogger(__name__)

EXIT_OK, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 2, 3


class Service:
    def __init__(
        self, settings: Settings, store: AuditStore, token: str, policy: Policy | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.orchestrator = Orchestrator(store)
        checker = None if policy is None else PolicyCheck(policy)
        self.ingest = EventFileIngest(store, settings.events) if settings.events else None
        self.metrics = OrchestratorMetrics(self.orchestrator.links, self.ingest, ready_within=READY_WITHIN)
        self.server = HttpServer(
            Api(OrchestratorService(self.orchestrator, store), token, checker, self._metrics_text)
        )
        self.exporter: MetricsServer | None = None
        self.stopping = asyncio.Event()
        self.address: tuple[str, int] | None = None

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):  # before anyone learns we are up
            loop.add_signal_handler(signum, self.stopping.set)
        for config in self.settings.pbxs:
            tracker = Tracker(config.name, self.store)
            link = PbxLink(config, tracker)
            self.orchestrator.add_pbx(config.name, tracker, link)
            link.start()
        host, port = self.settings.api_address
        self.address = await self.server.start(host, port)
        if self.settings.metrics:
            self.exporter = serve_metrics(self.metrics.registry, self.settings.metrics)
        return self.address

    def _metrics_text(self) -> tuple[bytes, str]:
        self.metrics.audit.refresh(self.store, force=True)  # the API runs in the loop: the store is ours
        return render(self.metrics.registry), CONTENT_TYPE_LATEST

    async def run(self) -> None:
        while not self.stopping.is_set():
            if self.ingest is not None:
                try:
                    self.ingest.poll()
                except OSError as exc:
                    log.error("reading %s: %s", self.settings.events, exc)
            try:
                self.metrics.audit.refresh(self.store)
            except Exception:  # metrics must never stop the daemon
                log.exception("counting the audit records for /metrics failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.settings.poll_interval)

    async def close(self) -> None:
        for link in self.orchestrator.links.values():
            link.close()
        await self.server.close()
        if self.exporter is not None:
            self.exporter.close()
        self.store.close()


# -- the command -----------------------------------------------------------------------------


def add_parser(commands: Any) -> None:
    daemon = commands.add_parser("orchestrator", help="run the AMI transfer orchestrator and its API")
    daemon.add_argument("--config", metavar="FILE", help="TOML settings ([orchestrator], [[pbx]])")
    daemon.add_argument(
        "--pbx",
        action="append",
        default=[],
        metavar="NAME=ami://USER:SECRET@HOST:PORT",
        help="a PBX (repeatable)",
    )
    daemon.add_argument("--db", help="audit database (path, sqlite:///path or postgresql://...)")
    daemon.add_argument("--events", help="the proxy's JSON-lines event file ('' for none)")
    daemon.add_argument(
        "--api", metavar="HOST:PORT", help=f"API address, loopback only (default {DEFAULT_API})"
    )
    daemon.add_argument(
        "--token-file", help=f"API token file, created when missing (default {DEFAULT_TOKEN_FILE})"
    )
    daemon.add_argument(
        "--policy", metavar="FILE", help="a policy file for the page's playground (POST /policy/check)"
    )
    daemon.add_argument(
        "--metrics-listen",
        dest="metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics too (default: off; the API has /metrics)",
    )
    daemon.add_argument("--verbose", "-v", action="store_true")
    daemon.set_defaults(run=_run)


def settings_from(args: argparse.Namespace) -> Settings:
    settings = load_file(args.config) if args.config else Settings()
    settings.pbxs += [parse_pbx_url(text) for text in args.pbx]
    for key in KEYS:
        value = getattr(args, key)
        if value is not None:
            setattr(settings, key, value)
    check(settings)
    return settings


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("panoramisk").setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        settings = settings_from(args)
        token = read_or_create_token(settings.token_file)
        policy = load_policy(settings.policy) if settings.policy else None
        store = open_store(settings.db)
    except (SettingsError, AccessError, AuditError) as exc:
        print(f"referee: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PolicyError as exc:
        print(f"referee: policy {settings.policy}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(serve(settings, store, token, policy))


async def serve(settings: Settings, store: AuditStore, token: str, policy: Policy | None = None) -> int:
    service = Service(settings, store, token, policy)
    try:
        host, port = await service.start()
    except OSError as exc:
        where = settings.api + (f" or {settings.metrics}" if settings.metrics else "")
        print(f"referee: cannot listen on {where}: {exc.strerror}", file=sys.stderr)
        await service.close()
        return EXIT_UNAVAILABLE
    names = ", ".join(p.name for p in settings.pbxs)
    print(f"referee orchestrator: API on http://{host}:{port}, PBX(s) {names}", flush=True)
    if service.exporter is not None:  # after the API line, which scripts read first
        announce(service.exporter, "referee orchestrator")
    try:
        await service.run()
    finally:
        await service.close()
    return EXIT_OK
