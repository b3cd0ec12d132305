"""``referee transfers [show ID]``, ``referee watch`` and ``referee audit ingest``: the audit trail on the
command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from referee.audit import service
from referee.audit.dsn import DEFAULT_DB, default_db
from referee.audit.render import list_header, list_line, show, watch_line
from referee.audit.store import AuditError, AuditStore, open_store
from referee.events import State

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_STORE = 0, 1, 2, 3


def _db_option(parser: argparse.ArgumentParser, *, sub: bool = False) -> None:
    parser.add_argument(
        "--db",
        default=argparse.SUPPRESS if sub else None,
        metavar="DSN",
        help="audit database: a path, sqlite:///path or postgresql://user:pass@host:port/db"
        f" (default $REFEREE_AUDIT_DB or {DEFAULT_DB})",
    )


def add_parser(commands: Any) -> None:
    transfers = commands.add_parser("transfers", help="list transfer audit records, or show one")
    _db_option(transfers)
    transfers.add_argument("--limit", type=int, default=50, help="at most this many, newest first")
    transfers.add_argument("--state", choices=[str(s) for s in State], help="only records in this state")
    transfers.add_argument("--json", action="store_true", help="print JSON")
    transfers.set_defaults(run=_list)
    actions = transfers.add_subparsers(dest="transfers_command", required=False, metavar="ACTION")
    show_cmd = actions.add_parser("show", help="one record with its ladder")
    show_cmd.add_argument("id", type=int, metavar="ID")
    show_cmd.add_argument("--json", action="store_true", dest="show_json", help="print JSON")
    _db_option(show_cmd, sub=True)
    show_cmd.set_defaults(run=_show)

    watch = commands.add_parser("watch", help="follow the audit trail live")
    _db_option(watch)
    watch.add_argument("--from-start", action="store_true", help="print the entries already recorded first")
    watch.add_argument("--max", type=int, default=0, metavar="N", help="stop after N entries (0: never)")
    watch.add_argument("--interval", type=float, default=0.5, help="seconds between looks (default 0.5)")
    watch.add_argument("--json", action="store_true", help="one JSON object per entry")
    watch.set_defaults(run=_watch)

    audit = commands.add_parser("audit", help="the audit trail's services")
    service.add_parser(
        audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION"), _db_option
    )


def _open(args: argparse.Namespace) -> AuditStore | None:
    dsn = getattr(args, "db", None) or default_db()
    try:
        return open_store(dsn)
    except AuditError as exc:
        print(f"referee: {exc}", file=sys.stderr)
        return None


def _list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        print("referee: --limit must be 1 or more", file=sys.stderr)
        return EXIT_USAGE
    store = _open(args)
    if store is None:
        return EXIT_STORE
    try:
        records = store.records(limit=args.limit, state=args.state)
    finally:
        store.close()
    if args.json:
        print(json.dumps([r.to_dict(entries=False) for r in records], indent=2))
    else:
        print(list_header())
        for record in records:
            print(list_line(record))
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    store = _open(args)
    if store is None:
        return EXIT_STORE
    try:
        record = store.get(args.id)
    finally:
        store.close()
    if record is None:
        print(f"referee: no transfer {args.id}", file=sys.stderr)
        return EXIT_NOT_FOUND
    if args.show_json or args.json:
        print(json.dumps(record.to_dict(), indent=2))
    else:
        print(show(record))
    return EXIT_OK


def _watch(args: argparse.Namespace) -> int:
    if args.max < 0 or args.interval <= 0:
        print("referee: --max must be 0 or more and --interval more than 0", file=sys.stderr)
        return EXIT_USAGE
    store = _open(args)
    if store is None:
        return EXIT_STORE
    seen = 0 if args.from_start else store.last_seq()
    printed = 0
    try:
        while True:
            entries = store.entries_after(seen)
            for entry in entries:
                seen = entry.seq
                if args.json:
                    print(json.dumps({"transfer_id": entry.transfer_id, **entry.to_dict()}), flush=True)
                else:
                    print(watch_line(entry), flush=True)
                printed += 1
                if args.max and printed >= args.max:
                    return EXIT_OK
            if not entries:
                time.sleep(args.interval)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        store.close()
