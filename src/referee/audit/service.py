"""``referee audit ingest``: the proxy's event file into the audit database, with no PBX.

A proxy-only site runs this next to Kamailio; a site with an orchestrator gets the PBX side from
it. Once, it reads the file to its end and exits; with ``--follow`` it keeps reading what the
proxy appends (a rotated file from its start) until SIGTERM or SIGINT. Where it got to is kept in
the database with each line, so a restart neither repeats nor loses a line. ``--metrics-listen``
serves its lag and the audit records' final states as Prometheus metrics (docs/metrics.md).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from referee.audit.dsn import default_db
from referee.audit.ingest import EventFileIngest
from referee.audit.store import AuditError, open_store

EXIT_OK, EXIT_USAGE, EXIT_STORE = 0, 2, 3

log = logging.getLogger("referee.audit.ingest")


def add_parser(audit_commands: Any, db_option: Any) -> None:
    ingest = audit_commands.add_parser(
        "ingest", help="read a proxy's event file into the audit database (no PBX needed)"
    )
    ingest.add_argument("--events", required=True, metavar="FILE", help="the proxy's JSON-lines event file")
    db_option(ingest)
    ingest.add_argument(
        "--name",
        default="",
        help="where the offset is kept in the database (default: FILE); one per proxy host sharing it",
    )
    ingest.add_argument("--follow", action="store_true", help="keep reading what is appended, until stopped")
    ingest.add_argument(
        "--interval", type=float, default=0.5, metavar="SECONDS", help="between looks with --follow (0.5)"
    )
    ingest.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics (default: off)",
    )
    ingest.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        print("referee: --interval must be more than 0", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="referee audit ingest: %(message)s")
    try:
        store = open_store(args.db or default_db())
    except AuditError as exc:
        print(f"referee: {exc}", file=sys.stderr)
        return EXIT_STORE
    stop = threading.Event()

    def stopping(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stopping)
    ingest = EventFileIngest(store, args.events, args.name)
    metrics = exporter = None
    if args.metrics_listen:
        from prometheus_client import CollectorRegistry  # noqa: PLC0415 - only with metrics on

        from referee.metrics.audit import AuditMetrics  # noqa: PLC0415
        from referee.metrics.exposition import ListenError, serve_announced  # noqa: PLC0415

        registry = CollectorRegistry()
        metrics = AuditMetrics(registry, ingest)
        try:
            exporter = serve_announced(registry, args.metrics_listen, "referee audit ingest")
        except (ListenError, OSError) as exc:
            print(f"referee: --metrics-listen: {exc}", file=sys.stderr)
            store.close()
            return EXIT_USAGE
    try:
        while True:
            try:
                ingest.poll()
            except OSError as exc:
                log.error("reading %s: %s", args.events, exc)
            if metrics is not None:
                metrics.refresh(store)
            if not args.follow or stop.wait(args.interval):
                break
    finally:
        if exporter is not None:
            exporter.close()
        store.close()
    log.info("%d events applied, %d bad lines skipped", ingest.applied, ingest.bad)
    return EXIT_OK
