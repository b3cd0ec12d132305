"""Fixtures: a fresh real Kamailio per test, with the rendered cfg and the test policy."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import harness
import pytest


@pytest.fixture(scope="session", autouse=True)
def addresses_to_ourselves() -> Iterator[None]:
    """Concurrent runs (another checkout, CI) would fight over the same loopback addresses: queue."""
    with harness.exclusive():
        yield


@pytest.fixture
def start_kamailio(tmp_path: Path) -> Iterator[Callable[..., harness.Kamailio]]:
    if not harness.have_tools():
        pytest.fail("kamailio and sipp are needed (make deps installs them)")
    started: list[harness.Kamailio] = []

    def start(**overrides: Any) -> harness.Kamailio:
        policy = tmp_path / "policy.toml"
        if not policy.exists():
            shutil.copy(harness.POLICY, policy)
        cfg = harness.render_cfg(tmp_path, **overrides)
        proxy = harness.Kamailio(tmp_path, cfg)
        started.append(proxy)
        proxy.start()
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def kamailio(start_kamailio: Callable[..., harness.Kamailio]) -> harness.Kamailio:
    return start_kamailio()
