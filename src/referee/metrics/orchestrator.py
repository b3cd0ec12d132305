"""The orchestrator's metrics: its AMI links, plus the audit side (:mod:`referee.metrics.audit`).

``referee_ami_link_connected{pbx}``: 1 while the AMI connection is logged in and resynchronised;
``referee_ami_link_ready{pbx}``: 1 while the PBX also answered or spoke within ``READY_WITHIN``
seconds (what ``/ready`` reports); ``referee_ami_link_silence_seconds{pbx}``: since it last did.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from referee.metrics.audit import AuditMetrics, IngestPosition

CONNECTED = "referee_ami_link_connected"
READY = "referee_ami_link_ready"
SILENCE = "referee_ami_link_silence_seconds"


class Link(Protocol):
    ready: bool
    last_heard: float | None  # the event loop's time(): time.monotonic() for asyncio's default loop


class _Links(Collector):
    def __init__(self, links: Mapping[str, Link], ready_within: float, clock: Callable[[], float]) -> None:
        self.links = links
        self.ready_within = ready_within
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        connected = GaugeMetricFamily(CONNECTED, "AMI link logged in and resynchronised", labels=["pbx"])
        ready = GaugeMetricFamily(READY, "AMI link connected and heard from lately", labels=["pbx"])
        silence = GaugeMetricFamily(SILENCE, "seconds since the PBX last sent anything", labels=["pbx"])
        now = self.clock()
        for name, link in sorted(dict(self.links).items()):
            heard = link.last_heard
            quiet = None if heard is None else max(0.0, now - heard)
            connected.add_metric([name], 1 if link.ready else 0)
            ready.add_metric(
                [name], 1 if link.ready and quiet is not None and quiet <= self.ready_within else 0
            )
            if quiet is not None:
                silence.add_metric([name], quiet)
        yield connected
        yield ready
        yield silence


class OrchestratorMetrics:
    def __init__(
        self,
        links: Mapping[str, Link],
        ingest: IngestPosition | None,
        *,
        ready_within: float,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.registry.register(_Links(links, ready_within, clock))
        self.audit = AuditMetrics(self.registry, ingest, clock=clock)
