"""Metrics of the audit side, shared by the orchestrator and the standalone ingest.

- ``referee_transfers_ended_total{flow, state}``: audit records that reached a final state, by flow
  (``blind``, ``attended``, ``""`` when unknown) and state (``completed``, ``failed``...). Counted in
  the audit database, so it survives restarts; with one database shared by several hosts every
  instance reports the same totals (take ``max`` across instances, not ``sum``). The count is taken by
  :meth:`AuditMetrics.refresh`, from the daemon's own thread, at most every ``REFRESH`` seconds: a
  scrape never queries the database.
- ``referee_ingest_lag_bytes``: bytes of the proxy's event file not yet applied (read at scrape time
  against the position the ingest reached), and ``referee_ingest_lag_seconds``: how long the ingest
  has been behind (0 when it is not).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

ENDED = "referee_transfers_ended"
LAG_BYTES = "referee_ingest_lag_bytes"
LAG_SECONDS = "referee_ingest_lag_seconds"
REFRESH = 2.0  # seconds between two counts of the audit records


class EndedCounts(Protocol):
    def ended_counts(self) -> dict[tuple[str, str], int]: ...


class IngestPosition(Protocol):
    """What :class:`referee.audit.ingest.EventFileIngest` tells of where it is."""

    path: str
    position: tuple[int, int] | None  # (inode, offset) applied up to; None before the first poll
    caught_up_at: float  # time.monotonic() when a poll last left nothing unread


def ingest_lag(ingest: IngestPosition, now: float) -> tuple[int, float]:
    """(bytes, seconds) the ingest is behind the file as it is now."""
    try:
        st = os.stat(ingest.path)
    except OSError:
        return 0, 0.0
    position = ingest.position
    if position is not None and position[0] == st.st_ino and position[1] <= st.st_size:
        behind = st.st_size - position[1]
    else:
        behind = st.st_size  # not read yet, or rotated: all of it is to read
    return behind, (max(0.0, now - ingest.caught_up_at) if behind else 0.0)


class _Collector(Collector):
    def __init__(self, metrics: AuditMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        ended = CounterMetricFamily(
            ENDED, "audit records that reached a final state, by flow and state", labels=["flow", "state"]
        )
        for (flow, state), count in sorted(self.metrics.ended.items()):
            ended.add_metric([flow, state], count)
        yield ended
        ingest = self.metrics.ingest
        if ingest is not None:
            behind, seconds = ingest_lag(ingest, self.metrics.clock())
            yield GaugeMetricFamily(
                LAG_BYTES, "bytes of the proxy's event file not yet applied", value=behind
            )
            yield GaugeMetricFamily(LAG_SECONDS, "seconds the ingest has been behind the file", value=seconds)


class AuditMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        ingest: IngestPosition | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        refresh: float = REFRESH,
    ) -> None:
        self.ingest = ingest
        self.clock = clock
        self.interval = refresh
        self.ended: dict[tuple[str, str], int] = {}
        self._next = 0.0
        registry.register(_Collector(self))

    def refresh(self, store: EndedCounts, *, force: bool = False) -> None:
        """Count the ended records again (from the thread that owns ``store``), at most every interval."""
        now = self.clock()
        if force or now >= self._next:
            self._next = now + self.interval
            self.ended = store.ended_counts()
