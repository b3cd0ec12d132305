"""The FastAGI guard's metrics: sessions by result and rule, their latency, open and refused connections.

``referee_fastagi_sessions_total{result, rule}``: ``result`` is ``allowed`` or ``refused`` for a
session the guard decided (``rule`` the rule that did, as in ``REFEREE_RULE``), else how the session
ended without a decision (``timeout``, ``bad_request``, ``unknown_route``, ``error``, ``hangup``;
``rule`` empty). ``referee_fastagi_session_seconds``: from the accepted connection to the session's
end. Connections come from the server's own :class:`~referee.agi.fastagi.Stats`, read at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

SESSIONS = "referee_fastagi_sessions"
SESSION_SECONDS = "referee_fastagi_session_seconds"
OPEN = "referee_fastagi_open_connections"
REFUSED = "referee_fastagi_refused_connections"
ACCEPTED = "referee_fastagi_connections"
# A guard session is a few AGI round trips on loopback or a LAN: milliseconds, a second is already bad.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ConnectionStats(Protocol):
    accepted: int
    active: int
    over_cap: int


class _Connections(Collector):
    def __init__(self, stats: ConnectionStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(OPEN, "FastAGI sessions open now", value=self.stats.active)
        yield CounterMetricFamily(
            REFUSED,
            "FastAGI connections closed at once: a connection cap reached or a peer not allowed",
            value=self.stats.over_cap,
        )
        yield CounterMetricFamily(ACCEPTED, "FastAGI connections accepted", value=self.stats.accepted)


class FastAgiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.sessions = Counter(
            SESSIONS, "FastAGI sessions by result and rule", ["result", "rule"], registry=self.registry
        )
        self.seconds = Histogram(
            SESSION_SECONDS,
            "FastAGI session duration, connection to end",
            buckets=BUCKETS,
            registry=self.registry,
        )

    def watch(self, stats: ConnectionStats) -> None:
        """Expose the server's connection counters (read at each scrape)."""
        self.registry.register(_Connections(stats))

    def decided(self, allowed: bool, rule: str) -> None:
        self.sessions.labels("allowed" if allowed else "refused", rule).inc()

    def ended(self, outcome: str, seconds: float) -> None:
        """A session ended: ``outcome`` is "" when it was decided (counted by :meth:`decided`)."""
        if outcome:
            self.sessions.labels(outcome, "").inc()
        self.seconds.observe(seconds)
