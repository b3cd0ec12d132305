"""The Python daemons' Prometheus metrics: FastAGI sessions and connections, the orchestrator's AMI links,
the audit records' final states, the ingest's lag, and the orchestrator API's /metrics and /ready."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
from http_raw import exchange, request
from orchestrator_fixture import make_rig
from prometheus_client import CollectorRegistry

from referee.agi.daemon import TRANSFER_GUARD, transfer_guard
from referee.agi.fastagi import FastAgiServer, Limits
from referee.agi.policy_source import PolicySource
from referee.api.app import Api
from referee.api.http import HttpServer
from referee.audit import open_store
from referee.audit.ingest import EventFileIngest
from referee.metrics.audit import AuditMetrics
from referee.metrics.exposition import CONTENT_TYPE_LATEST, ListenError, parse_listen, render, serve
from referee.metrics.fastagi import FastAgiMetrics
from referee.metrics.orchestrator import OrchestratorMetrics
from referee.metrics.scrape import Samples, fetch
from referee.orchestrator.api_service import OrchestratorService
from referee.testing.fake_asterisk import agi_env, call

HOST = "127.0.2.60"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy.toml"
BOB = {"SIPREFERREDBYHDR": "<sip:1002@lab.test>"}
TOKEN = "t0k3n-for-the-metrics-tests"


def scrape(registry: CollectorRegistry) -> Samples:
    return Samples.parse(render(registry).decode())


# -- FastAGI ---------------------------------------------------------------------------------------


def test_fastagi_sessions_by_result_and_rule_latency_and_connections() -> None:
    metrics = FastAgiMetrics()

    async def main() -> None:
        source = PolicySource(str(EXAMPLE))
        source.load()
        guard = transfer_guard(source, None, metrics.decided)
        server = FastAgiServer({TRANSFER_GUARD: guard}, Limits(), metrics.ended)
        metrics.watch(server.stats)
        _, port = await server.start(HOST, 0)
        try:
            assert (await call(HOST, port, agi_env("1003"), BOB)).allowed == "1"
            assert (await call(HOST, port, agi_env("09001234567"), BOB)).allowed == "0"
            assert (await call(HOST, port, agi_env("09001234568"), BOB)).allowed == "0"
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"agi_network_script: nowhere\n\n")  # a route the server does not have
            await writer.drain()
            assert await reader.read() == b""
            writer.close()
            while server.stats.active:  # the last session's bookkeeping runs after its socket closed
                await asyncio.sleep(0.01)
        finally:
            await server.close()

    asyncio.run(asyncio.wait_for(main(), 30))
    samples = scrape(metrics.registry)
    assert samples.get("referee_fastagi_sessions_total", result="refused", rule="prefixes:deny:+449") == 2
    assert samples.total("referee_fastagi_sessions_total", result="allowed") == 1
    assert samples.get("referee_fastagi_sessions_total", result="unknown_route", rule="") == 1
    assert samples.get("referee_fastagi_session_seconds_count") == 4
    assert samples.get("referee_fastagi_session_seconds_bucket", le="+Inf") == 4
    assert samples.get("referee_fastagi_open_connections") == 0
    assert samples.get("referee_fastagi_connections_total") == 4
    assert samples.get("referee_fastagi_refused_connections_total") == 0


def test_fastagi_refused_connections_are_counted() -> None:
    metrics = FastAgiMetrics()

    async def main() -> None:
        server = FastAgiServer({}, Limits(allow=frozenset({"127.0.2.99"})), metrics.ended)
        metrics.watch(server.stats)
        _, port = await server.start(HOST, 0)
        try:
            for _ in range(2):
                reader, writer = await asyncio.open_connection(HOST, port)
                with pytest.raises(ConnectionError):
                    writer.write(b"agi_network_script: transfer-guard\n\n")
                    await writer.drain()
                    if not await reader.read():
                        raise ConnectionResetError
                writer.close()
        finally:
            await server.close()

    asyncio.run(asyncio.wait_for(main(), 30))
    samples = scrape(metrics.registry)
    assert samples.get("referee_fastagi_refused_connections_total") == 2
    assert samples.get("referee_fastagi_session_seconds_count") == 0  # a refused connection is no session


async def with_metrics(who: str, *argv: str) -> tuple[asyncio.subprocess.Process, str]:
    """``referee ARGV --metrics-listen HOST:0`` started, and the URL its first line gives."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "referee.cli", *argv, "--metrics-listen", f"{HOST}:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    assert first.startswith(f"{who}: metrics on http://{HOST}:"), first
    return proc, first.split(" on ")[1].strip()


def test_fastagi_daemon_serves_metrics_on_its_address(tmp_path: Path) -> None:
    async def main() -> None:
        argv = ("fastagi", "--listen", HOST, "--port", "0", "--policy", str(EXAMPLE))
        proc, url = await with_metrics("referee fastagi", *argv)
        assert proc.stdout is not None
        try:
            listening = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            port = int(listening.rsplit(":", 1)[1])
            assert (await call(HOST, port, agi_env("09001234567"), BOB)).allowed == "0"
            samples = await asyncio.to_thread(fetch, url)
            assert (
                samples.get("referee_fastagi_sessions_total", result="refused", rule="prefixes:deny:+449")
                == 1
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0

    asyncio.run(main())


def test_a_bad_metrics_address_is_a_usage_error() -> None:
    from referee.cli import main  # noqa: PLC0415

    assert main(["fastagi", "--policy", str(EXAMPLE), "--metrics-listen", "localhost:9100"]) == 2
    with pytest.raises(ListenError):
        parse_listen("127.0.0.1:99999")
    assert parse_listen("[::1]:9100") == ("::1", 9100)


# -- the audit side: ended records, ingest lag --------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_ended_records_are_counted_by_flow_and_state(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "audit.sqlite3"))
    registry = CollectorRegistry()
    clock = Clock(100.0)
    metrics = AuditMetrics(registry, clock=clock, refresh=2.0)
    first = store.create("refer", flow="blind")
    store.create("refer", flow="blind", state="failed")
    store.create("operator", flow="attended")  # still going: not counted
    metrics.refresh(store)
    assert scrape(registry).select("referee_transfers_ended_total") == {
        (("flow", "blind"), ("state", "failed")): 1
    }
    store.update(first, state="completed")
    metrics.refresh(store)  # within the interval: the count is not taken again
    assert scrape(registry).total("referee_transfers_ended_total") == 1
    clock.now += 2.0
    metrics.refresh(store)
    assert scrape(registry).get("referee_transfers_ended_total", flow="blind", state="completed") == 1
    store.close()


def test_ingest_lag_in_bytes_and_seconds(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    store = open_store(str(tmp_path / "audit.sqlite3"))
    ingest = EventFileIngest(store, str(events))
    registry = CollectorRegistry()
    metrics = AuditMetrics(registry, ingest, clock=lambda: ingest.caught_up_at + 7.0)
    assert scrape(registry).get("referee_ingest_lag_bytes") == 0  # no file yet: nothing to read
    line = '{"time": 1.0, "event": "pbx.health", "pbx": "pbx1", "uri": "sip:127.0.0.20", "up": true}\n'
    events.write_text(line)
    samples = scrape(registry)
    assert samples.get("referee_ingest_lag_bytes") == len(line)
    assert samples.get("referee_ingest_lag_seconds") == 7.0
    assert ingest.poll() == 1
    samples = scrape(registry)
    assert (samples.get("referee_ingest_lag_bytes"), samples.get("referee_ingest_lag_seconds")) == (0, 0)
    with events.open("a") as handle:
        handle.write('{"time": 2.0, "event": "pbx.he')  # a line still being written
    ingest.poll()
    assert scrape(registry).get("referee_ingest_lag_bytes") == len('{"time": 2.0, "event": "pbx.he')
    metrics.refresh(store)
    store.close()


# -- the orchestrator: AMI links, the API's /metrics and /ready ------------------------------------------


def test_orchestrator_api_metrics_and_ready_with_the_database(tmp_path: Path) -> None:
    async def main() -> None:
        rig = await make_rig(tmp_path, host="127.0.2.61")
        metrics = OrchestratorMetrics(rig.orchestrator.links, None, ready_within=5.0)

        def text() -> tuple[bytes, str]:
            metrics.audit.refresh(rig.store, force=True)
            return render(metrics.registry), CONTENT_TYPE_LATEST

        server = HttpServer(Api(OrchestratorService(rig.orchestrator, rig.store), TOKEN, None, text))
        _, port = await server.start(HOST, 0)
        rig.link.start()
        await rig.link.wait_resynced()
        try:
            rig.store.create("operator", flow="attended", state="completed")
            status, headers, body = await exchange(HOST, port, request("GET", "/metrics"))
            assert status == 200 and headers["content-type"] == CONTENT_TYPE_LATEST
            samples = Samples.parse(body.decode())
            assert samples.get("referee_ami_link_connected", pbx="pbx1") == 1
            assert samples.get("referee_ami_link_ready", pbx="pbx1") == 1
            assert 0 <= (samples.get("referee_ami_link_silence_seconds", pbx="pbx1") or -1) <= 5
            assert samples.get("referee_transfers_ended_total", flow="attended", state="completed") == 1

            status, _, ready = await exchange(HOST, port, request("GET", "/ready"))
            assert (status, ready["ready"], ready["database"]) == (200, True, {"reachable": True})
            rig.store.close()  # the database is gone
            status, _, ready = await exchange(HOST, port, request("GET", "/ready"))
            assert (status, ready["ready"], ready["database"]["reachable"]) == (503, False, False)
            assert ready["database"]["error"]
            assert ready["pbxs"]["pbx1"]["ready"] is True
        finally:
            await server.close()
            rig.link.close()
            await rig.ami.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_link_that_is_down_reads_zero() -> None:
    class Link:
        ready = False
        last_heard: float | None = None

    metrics = OrchestratorMetrics({"pbx2": Link()}, None, ready_within=5.0)
    samples = scrape(metrics.registry)
    assert samples.get("referee_ami_link_connected", pbx="pbx2") == 0
    assert samples.get("referee_ami_link_ready", pbx="pbx2") == 0
    assert samples.select("referee_ami_link_silence_seconds") == {}


def test_ingest_command_serves_its_metrics(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("not an event\n")
    db = tmp_path / "audit.sqlite3"

    async def main() -> None:
        argv = ("audit", "ingest", "--follow", "--events", str(events), "--db", str(db), "--interval", "0.05")
        proc, url = await with_metrics("referee audit ingest", *argv)
        try:
            for _ in range(400):  # until the first poll read the file
                samples = await asyncio.to_thread(fetch, url)
                if samples.get("referee_ingest_lag_bytes") == 0:
                    break
                await asyncio.sleep(0.05)
            assert samples.get("referee_ingest_lag_bytes") == 0
            assert samples.get("referee_ingest_lag_seconds") == 0
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0

    asyncio.run(main())


def test_the_exporter_answers_metrics_and_stops(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = FastAgiMetrics(registry)
    metrics.decided(True, "r")
    server = serve(registry, f"{HOST}:0")
    try:
        samples = fetch(f"http://{HOST}:{server.address[1]}/metrics")
        assert samples.get("referee_fastagi_sessions_total", result="allowed", rule="r") == 1
    finally:
        server.close()
    with pytest.raises(OSError):
        fetch(f"http://{HOST}:{server.address[1]}/metrics", timeout=2)
