"""Prometheus metrics of referee's Python daemons (FastAGI, orchestrator, ingest); docs/metrics.md.

Built on ``prometheus-client``: the core (:mod:`referee.sip`, :mod:`referee.policy`, :mod:`referee.events`)
never imports this package, Kamailio's embedded Python counts through ``xhttp_prom`` instead
(:mod:`referee.kemi.metrics`). Each daemon keeps its own :class:`~prometheus_client.CollectorRegistry`
(no process-wide default registry: tests run several daemons in one process) and serves it with
:func:`referee.metrics.exposition.serve` on ``--metrics-listen HOST:PORT``.
"""
