"""``referee orchestrator``: AMI links to every PBX, the proxy event ingest and the operator API, one loop.

Prints one line when the API listens (``referee orchestrator: API on http://HOST:PORT``) and
runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from referee.api.app import Api
from referee.api.http import HttpServer
from referee.audit.ingest import EventFileIngest
from referee.audit.store import AuditStore
from referee.orchestrator.operations import Orchestrator
from referee.orchestrator.pbx import PbxLink
from referee.orchestrator.settings import Settings
from referee.orchestrator.tracker import Tracker

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, settings: Settings, store: AuditStore, token: str) -> None:
        self.settings = settings
        self.store = store
        self.orchestrator = Orchestrator(store)
        self.server = HttpServer(Api(self.orchestrator, token))
        self.ingest = EventFileIngest(store, settings.events) if settings.events else None
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
        return self.address

    async def run(self) -> None:
        while not self.stopping.is_set():
            if self.ingest is not None:
                try:
                    self.ingest.poll()
                except OSError as exc:
                    log.error("reading %s: %s", self.settings.events, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.settings.poll_interval)

    async def close(self) -> None:
        for link in self.orchestrator.links.values():
            link.close()
        await self.server.close()
        self.store.close()
