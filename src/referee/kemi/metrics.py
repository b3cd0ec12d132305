"""The proxy's Prometheus metrics, counted in Kamailio's ``xhttp_prom`` module (docs/metrics.md).

kamailio.cfg.j2 declares them (``modparam("xhttp_prom", "prom_counter", ...)``, the names below) and
listens for HTTP on ``kamailio__metrics_listen`` only when that is set: then it also defines
``REFEREE_METRICS_LISTEN`` (``tcp:IP:PORT``), and :func:`proxy_metrics` counts; without it every call
here does nothing (``KSR.xhttp_prom`` does not even exist).

Counted from the events the proxy writes (:class:`MeteredEventLog`), so a REFER is counted exactly
when its ``refer.decision`` is written, whichever path decided it (policy, bad input, out of dialog):

- ``referee_proxy_refers_total{decision, rule, status}``: ``decision`` is ``allowed`` or ``refused``;
- ``referee_proxy_refer_responses_total{status, local}``: the final answers to relayed REFERs
  (``local`` ``1`` when the proxy answered itself: timeout, PBX down);
- ``referee_proxy_notifies_total{status}``: NOTIFYs of REFERs by their sipfrag status
  (``invalid`` without a readable one);
- ``referee_proxy_event_write_failures_total``: events the event file lost;
- ``referee_proxy_policy_info{version}``: 1 for the policy version in force (the version a worker
  last decided with), 0 for the one it replaced.

Shared memory: every worker adds to the same counters. ``xhttp_prom_timeout`` is 0 in the cfg, so a
label set that was not used for an hour is not dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from referee.events import Event, NotifyOutcome, ReferDecision, ReferResponse
from referee.kemi.event_log import EventLog

if TYPE_CHECKING:
    from referee.kemi.ksr import KSR

LISTEN_DEFINE = "REFEREE_METRICS_LISTEN"
REFERS = "referee_proxy_refers_total"
REFER_RESPONSES = "referee_proxy_refer_responses_total"
NOTIFIES = "referee_proxy_notifies_total"
WRITE_FAILURES = "referee_proxy_event_write_failures_total"
POLICY = "referee_proxy_policy_info"
# name -> (kind, labels): what kamailio.cfg.j2 declares (a unit test holds the two together).
DECLARED = {
    REFERS: ("counter", ("decision", "rule", "status")),
    REFER_RESPONSES: ("counter", ("status", "local")),
    NOTIFIES: ("counter", ("status",)),
    WRITE_FAILURES: ("counter", ()),
    POLICY: ("gauge", ("version",)),
}


def listen_address(ksr: KSR) -> tuple[str, int] | None:
    """(IP, port) of the metrics socket from ``REFEREE_METRICS_LISTEN`` (``tcp:IP:PORT``); None: off."""
    value = str(ksr.kx.get_def(LISTEN_DEFINE) or "").strip().strip('"')
    if not value:
        return None
    _proto, _, address = value.partition(":")
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class ProxyMetrics:
    """Counts into ``KSR.xhttp_prom``; inert when ``listen`` is None (the cfg serves no metrics)."""

    def __init__(self, ksr: KSR, listen: tuple[str, int] | None) -> None:
        self.k = ksr
        self.listen = listen
        self._version: str | None = None  # the policy version this worker last set to 1

    @property
    def on(self) -> bool:
        return self.listen is not None

    def count(self, event: Event) -> None:
        if not self.on:
            return
        prom = self.k.xhttp_prom
        if isinstance(event, ReferDecision):
            decision = "allowed" if event.allowed else "refused"
            prom.counter_inc_l3(REFERS, 1, decision, event.rule, str(event.status))
            if event.policy_version:
                self.policy(event.policy_version)
        elif isinstance(event, ReferResponse):
            prom.counter_inc_l2(REFER_RESPONSES, 1, str(event.status), "1" if event.local else "0")
        elif isinstance(event, NotifyOutcome):
            prom.counter_inc_l1(NOTIFIES, 1, "invalid" if event.status is None else str(event.status))

    def started(self, version: str | None) -> None:
        """A worker starts: the failure counter exists from 0 (adding 0 never resets another worker's
        count), the policy gauge names the startup policy."""
        if self.on:
            self.k.xhttp_prom.counter_inc_l0(WRITE_FAILURES, 0)
            self.policy(version)

    def write_failed(self) -> None:
        if self.on:
            self.k.xhttp_prom.counter_inc_l0(WRITE_FAILURES, 1)

    def policy(self, version: str | None) -> None:
        """The policy version in force in this worker: 1 for it, 0 for the one it replaced."""
        if not self.on or not version or version == self._version:
            return
        prom = self.k.xhttp_prom
        if self._version is not None:
            prom.gauge_set_l1(POLICY, "0", self._version)
        prom.gauge_set_l1(POLICY, "1", version)
        self._version = version

    def serve(self) -> int:
        """The xhttp event route: ``GET /metrics`` on the metrics socket; 404 elsewhere (an HTTP request
        to a SIP TCP socket is answered too, by the same route)."""
        k = self.k
        if self.listen is not None:
            here = (str(k.pv.get("$Ri") or "").strip("[]"), int(k.pv.get("$Rp") or 0))
            if here == self.listen and k.xhttp_prom.check_uri() > 0:
                k.xhttp_prom.dispatch()
                return 1
        k.xhttp.xhttp_reply(404, "Not Found", "text/plain", "only GET /metrics, on the metrics address\n")
        return 1


class MeteredEventLog(EventLog):
    """The event file, and the proxy's counters of what goes into it (or is lost)."""

    def __init__(self, path: str, metrics: ProxyMetrics, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.metrics = metrics

    def write(self, event: Event) -> None:
        lost = self.lost
        super().write(event)
        try:
            self.metrics.count(event)
            if self.lost != lost:
                self.metrics.write_failed()
        except Exception as exc:  # counting must never cost a decision
            if self._on_error is not None:
                self._on_error(f"referee: counting the event failed ({exc})")


def proxy_metrics(ksr: KSR) -> ProxyMetrics:
    return ProxyMetrics(ksr, listen_address(ksr))
