"""``referee orchestrator`` (the daemon) and ``referee transfer blind|attended|complete|cancel`` (its client).

``referee transfer`` exit codes: 0 done, 1 refused (unknown channel or transfer, a conflict such
as a second transfer by the same initiator, the PBX said no), 2 usage error, 3 the
orchestrator cannot be reached or the PBX is not connected.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from typing import Any

from referee.api.client import ApiError, ApiUnreachable, call
from referee.audit.store import AuditError, open_store
from referee.orchestrator.operations import DEFAULT_CONTEXT
from referee.orchestrator.settings import (
    DEFAULT_API,
    DEFAULT_TOKEN_FILE,
    Settings,
    SettingsError,
    check,
    lab_pbxs,
    load_file,
    parse_pbx_url,
    read_or_create_token,
    read_token,
)

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


def add_parser(commands: Any) -> None:
    daemon = commands.add_parser("orchestrator", help="run the AMI transfer orchestrator and its API")
    daemon.add_argument("--config", metavar="FILE", help="TOML settings ([orchestrator], [[pbx]])")
    daemon.add_argument(
        "--pbx",
        action="append",
        default=[],
        metavar="NAME=ami://USER:SECRET@HOST:PORT",
        help="a PBX (repeatable)",
    )
    daemon.add_argument(
        "--lab", action="store_true", help="every PBX of the lab inventory (referee lab info)"
    )
    daemon.add_argument("--db", help="audit database (path, sqlite:///path or postgresql://...)")
    daemon.add_argument("--events", help="the proxy's JSON-lines event file ('' for none)")
    daemon.add_argument(
        "--api", metavar="HOST:PORT", help=f"API address, loopback only (default {DEFAULT_API})"
    )
    daemon.add_argument(
        "--token-file", help=f"API token file, created when missing (default {DEFAULT_TOKEN_FILE})"
    )
    daemon.add_argument("--verbose", "-v", action="store_true")
    daemon.set_defaults(run=_run_daemon)

    transfer = commands.add_parser(
        "transfer", help="start, complete or cancel a transfer through the orchestrator"
    )
    actions = transfer.add_subparsers(dest="transfer_command", required=True, metavar="ACTION")
    for flow in ("blind", "attended"):
        start = actions.add_parser(flow, help=f"start {'an' if flow == 'attended' else 'a'} {flow} transfer")
        start.add_argument("--pbx", required=True)
        start.add_argument(
            "--channel",
            required=True,
            help="the initiator: a channel name, or an endpoint with one call (PJSIP/1002)",
        )
        start.add_argument("--exten", required=True, help="where to transfer the other party")
        start.add_argument("--context", default=DEFAULT_CONTEXT)
        start.set_defaults(run=_start, flow=flow)
        _client_options(start)
    for name, help_text in (("complete", "complete an attended transfer"), ("cancel", "cancel a transfer")):
        act = actions.add_parser(name, help=help_text)
        act.add_argument("id", type=int, metavar="ID")
        act.set_defaults(run=_act, verb=name)
        _client_options(act)


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", default=f"http://{DEFAULT_API}", help="the orchestrator API base URL")
    parser.add_argument(
        "--token-file", default=DEFAULT_TOKEN_FILE, help="API token file ($REFEREE_API_TOKEN wins when set)"
    )
    parser.add_argument("--json", action="store_true", help="print the API's JSON answer")


# -- the daemon ------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_file(args.config) if args.config else Settings()
    if args.lab:
        settings.pbxs += lab_pbxs()
    settings.pbxs += [parse_pbx_url(text) for text in args.pbx]
    for key in ("db", "events", "api", "token_file"):
        value = getattr(args, key)
        if value is not None:
            setattr(settings, key, value)
    check(settings)
    return settings


def _run_daemon(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("panoramisk").setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        settings = _settings(args)
        token = read_or_create_token(settings.token_file)
        store = open_store(settings.db)
    except (SettingsError, AuditError) as exc:
        print(f"referee: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(_serve(settings, store, token))


async def _serve(settings: Settings, store: Any, token: str) -> int:
    from referee.orchestrator.daemon import Daemon  # noqa: PLC0415 - keeps `referee transfer` light

    daemon = Daemon(settings, store, token)
    try:
        host, port = await daemon.start()
    except OSError as exc:
        print(f"referee: cannot listen on {settings.api}: {exc.strerror}", file=sys.stderr)
        await daemon.close()
        return EXIT_UNAVAILABLE
    names = ", ".join(p.name for p in settings.pbxs)
    print(f"referee orchestrator: API on http://{host}:{port}, PBX(s) {names}", flush=True)
    try:
        await daemon.run()
    finally:
        await daemon.close()
    return EXIT_OK


# -- the client ------------------------------------------------------------------------------


def _token(args: argparse.Namespace) -> str:
    env = os.environ.get("REFEREE_API_TOKEN")
    return env if env else read_token(args.token_file)


def _print(args: argparse.Namespace, answer: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(answer, indent=2))
        return
    parties = answer.get("parties", {})
    line = f"transfer {answer.get('id')}: {answer.get('state')} ({answer.get('flow')})"
    line += f" {parties.get('initiator', '?')} -> {answer.get('exten') or parties.get('recipient', '?')}"
    print(line + (f": {answer['result']}" if answer.get("result") else ""))


def _request(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> int:
    try:
        answer = call(args.api, _token(args), method, path, body)
    except SettingsError as exc:
        print(f"referee: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ApiUnreachable as exc:
        print(f"referee: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ApiError as exc:
        print(f"referee: {exc.message} (HTTP {exc.status})", file=sys.stderr)
        if args.json:
            print(json.dumps(exc.body, indent=2))
        if exc.status in (400, 422):
            return EXIT_USAGE
        return EXIT_UNAVAILABLE if exc.status == 503 else EXIT_REFUSED
    _print(args, answer)
    return EXIT_OK


def _start(args: argparse.Namespace) -> int:
    body = {
        "flow": args.flow,
        "pbx": args.pbx,
        "channel": args.channel,
        "exten": args.exten,
        "context": args.context,
    }
    return _request(args, "POST", "/transfers", body)


def _act(args: argparse.Namespace) -> int:
    return _request(args, "POST", f"/transfers/{args.id}/{args.verb}")
