"""docs/grafana/referee-dashboard.json asks only for metrics the components expose, and shows them all.

The names exposed come from the daemons' own registries (FastAGI, orchestrator with its ingest) and from
what the proxy declares to xhttp_prom (referee.kemi.metrics.DECLARED, held equal to kamailio.cfg.j2's
modparams by test_kemi_metrics). The lab test (tests/lab/test_metrics.py) checks the same names on the
lab's live /metrics pages.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from referee.agi.fastagi import Stats
from referee.kemi.metrics import DECLARED
from referee.metrics.fastagi import FastAgiMetrics
from referee.metrics.orchestrator import OrchestratorMetrics
from referee_lab.metrics import dashboard_names, dashboard_queries


def exposed(registry: CollectorRegistry) -> set[str]:
    """The sample names a scrape of ``registry`` can show, also for families with no sample yet."""
    names: set[str] = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
        else:
            names.add(family.name)
    return names


class Ingest:
    path = "/nonexistent/events.jsonl"
    position = None
    caught_up_at = 0.0


class Link:
    ready = True
    last_heard: float | None = 0.0


def component_names() -> set[str]:
    fastagi = FastAgiMetrics()
    fastagi.watch(Stats())
    orchestrator = OrchestratorMetrics({"pbx1": Link()}, Ingest(), ready_within=5.0)
    return exposed(fastagi.registry) | exposed(orchestrator.registry) | set(DECLARED)


def test_the_dashboard_has_queries() -> None:
    assert len(dashboard_queries()) >= 15
    assert "referee_proxy_refers_total" in dashboard_names()


def test_every_metric_the_dashboard_names_is_exposed() -> None:
    assert dashboard_names() - component_names() == set()


def test_every_exposed_metric_is_on_the_dashboard() -> None:
    shown = dashboard_names()
    missing = {
        name
        for name in component_names()
        if not any(name == s or name.startswith(s) or s.startswith(name) for s in shown)
    }
    assert missing == set()


def test_a_name_the_components_lack_is_caught() -> None:
    assert {"referee_proxy_refers_total", "referee_no_such_thing"} - component_names() == {
        "referee_no_such_thing"
    }
