"""Reading a ``/metrics`` page back: what the tests (and an operator's script) check counters with.

Parses any text exposition, prometheus-client's or Kamailio's ``xhttp_prom`` (untyped, with
timestamps), into samples by name and labels.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Samples:
    """Every sample of a page: ``(name, sorted label items) -> value``."""

    values: Mapping[tuple[str, tuple[tuple[str, str], ...]], float]

    @classmethod
    def parse(cls, text: str) -> Samples:
        values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return cls(values)

    @property
    def names(self) -> set[str]:
        return {name for name, _ in self.values}

    def get(self, name: str, **labels: str) -> float | None:
        """The sample with exactly these labels; None when there is none."""
        return self.values.get((name, tuple(sorted(labels.items()))))

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
        wanted = set(labels.items())
        return sum(v for (n, items), v in self.values.items() if n == name and wanted <= set(items))

    def select(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {items: v for (n, items), v in self.values.items() if n == name}


def fetch(url: str, timeout: float = 5.0) -> Samples:
    """GET ``url`` (``http://HOST:PORT/metrics``) and parse it."""
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return Samples.parse(answer.read().decode("utf-8"))
