"""Where the lab's Prometheus metrics are, and which metrics the Grafana dashboard asks for.

The proxy's address is the one provisioning rendered into kamailio.cfg (``REFEREE_METRICS_LISTEN``,
from the local inventory's ``kamailio__metrics_listen``); each FastAGI's is its PBX's address and
:data:`referee_lab.services.FASTAGI_METRICS_PORT`. tests/lab/test_metrics.py scrapes them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from referee_lab.provision import REPO
from referee_lab.services import FASTAGI_METRICS_PORT, in_root
from referee_lab.topology import Topology

DASHBOARD = REPO / "docs" / "grafana" / "referee-dashboard.json"
KAMAILIO_CFG = "/etc/kamailio/kamailio.cfg"
_DEFINE = re.compile(r'^#!define REFEREE_METRICS_LISTEN "(?:tcp:)?([^"]*)"', re.MULTILINE)
_NAME = re.compile(r"\breferee_[a-z0-9_]+\b")


def proxy_url(root: Path) -> str:
    """The proxy's /metrics, from the kamailio.cfg provisioning rendered in the rootfs."""
    found = _DEFINE.search(in_root(root, KAMAILIO_CFG).read_text())
    if found is None or not found.group(1):
        raise ValueError(f"{KAMAILIO_CFG} serves no metrics: kamailio__metrics_listen is not set")
    return f"http://{found.group(1)}/metrics"


def fastagi_urls(topo: Topology) -> dict[str, str]:
    """PBX name -> its FastAGI's /metrics."""
    return {p.name: f"http://{p.address}:{FASTAGI_METRICS_PORT}/metrics" for p in topo.pbxs}


def dashboard_queries(path: Path = DASHBOARD) -> list[str]:
    """Every ``expr`` of the dashboard's panels."""

    def walk(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["expr"]] if isinstance(node.get("expr"), str) else []
            return found + [e for value in node.values() for e in walk(value)]
        if isinstance(node, list):
            return [e for item in node for e in walk(item)]
        return []

    return walk(json.loads(path.read_text()))


def dashboard_names(path: Path = DASHBOARD) -> set[str]:
    """The metric names the dashboard's queries use."""
    return {name for expr in dashboard_queries(path) for name in _NAME.findall(expr)}
