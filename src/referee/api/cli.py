"""``referee transfer blind|attended|complete|cancel``: the operator API's command-line client.

Exit codes: 0 done, 1 refused (unknown channel or transfer, a conflict such as a second transfer
by the same initiator, the PBX said no), 2 usage error, 3 the orchestrator cannot be reached or
the PBX is not connected.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from referee.api.access import DEFAULT_API, DEFAULT_TOKEN_FILE, AccessError, read_token
from referee.api.client import ApiError, ApiUnreachable, call

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


def add_parser(commands: Any) -> None:
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
        start.add_argument("--context", help="the dialplan context of --exten (default: the orchestrator's)")
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
    except AccessError as exc:
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
    body = {"flow": args.flow, "pbx": args.pbx, "channel": args.channel, "exten": args.exten}
    if args.context is not None:
        body["context"] = args.context
    return _request(args, "POST", "/transfers", body)


def _act(args: argparse.Namespace) -> int:
    return _request(args, "POST", f"/transfers/{args.id}/{args.verb}")
