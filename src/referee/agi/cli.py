"""``referee fastagi``: run the FastAGI transfer guard.

    referee fastagi [--policy FILE] [--policy-check S] [--listen ADDR] [--port N] [--domain DOMAIN]
                    [--max-connections N] [--header-timeout S] [--session-timeout S]
                    [--metrics-listen HOST:PORT] [--loop auto|asyncio|uvloop] [--log-level LEVEL]
                    [--no-log-decisions]

The policy file is ``--policy``, else ``$REFEREE_POLICY``, else ``/etc/referee/policy.toml``.
A policy that cannot be loaded at startup exits with status 3, naming the key at fault. The
tenant domain of bare extensions is the channel's ``${REFEREE_DOMAIN}``, else ``--domain``
(which must name one of the policy's tenants: else exit status 2), else the policy's
``default_tenant``. ``--metrics-listen`` serves Prometheus metrics (docs/metrics.md) on
``http://HOST:PORT/metrics``; off by default. ``--loop``: the event loop, uvloop when installed
(``referee[fast]``) unless ``asyncio`` is asked for (:mod:`referee.agi.event_loop`); ``uvloop`` when it is
not installed exits with status 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from typing import Any

from referee.agi.event_loop import LOOPS, LoopUnavailable, loop_factory
from referee.agi.event_loop import run as run_on
from referee.agi.policy_source import PolicySource, policy_path
from referee.policy import PolicyError

EXIT_OK, EXIT_USAGE, EXIT_BAD_POLICY = 0, 2, 3
DECISIONS_LOGGER = "referee.agi.guard"  # referee.agi.guard's (not imported here: see run)


def add_parser(commands: Any) -> None:
    """Add ``fastagi`` to the ``referee`` command's subparsers."""
    parser = commands.add_parser("fastagi", help="run the FastAGI transfer guard for Asterisk")
    parser.add_argument(
        "--policy", metavar="FILE", help="policy file (default: $REFEREE_POLICY or /etc/referee/policy.toml)"
    )
    parser.add_argument(
        "--policy-check",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds between looks at the policy file, reloaded when it changed (default 1; 0: SIGHUP only)",
    )
    parser.add_argument(
        "--listen", default="127.0.0.1", metavar="ADDR", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=4573, help="TCP port (default 4573; 0 picks a free one)")
    parser.add_argument(
        "--domain",
        help="tenant domain of bare extensions when the channel sets no ${REFEREE_DOMAIN}"
        " (default: the policy's default_tenant); must name a tenant of the policy",
    )
    parser.add_argument(
        "--max-connections", type=int, default=512, metavar="N", help="sessions at once (default 512)"
    )
    parser.add_argument(
        "--max-per-address",
        type=int,
        metavar="N",
        help="sessions at once from one peer address (default: half of --max-connections)",
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="ADDR",
        help="a peer address allowed to connect (repeatable; the PBXs); default: any",
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds for the request header (default 5)",
    )
    parser.add_argument(
        "--session-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds for a whole session (default 10)",
    )
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics (default: off)",
    )
    parser.add_argument(
        "--loop",
        default="auto",
        choices=LOOPS,
        help="event loop: uvloop when installed (auto, the default), asyncio's own, or uvloop (required)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--log-decisions",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="an INFO line per decision (default); --no-log-decisions saves about a tenth of the CPU per"
        " session at high rates (the metrics still count decisions by rule)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: `referee policy ...` should not pay for asyncio and panoramisk.
    from referee.agi.daemon import announce, serve  # noqa: PLC0415
    from referee.agi.fastagi import Limits  # noqa: PLC0415
    from referee.agi.protocol import HeaderLimits  # noqa: PLC0415

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.log_decisions:  # the guard logs its decisions at INFO, its failures at ERROR
        logging.getLogger(DECISIONS_LOGGER).setLevel(max(logging.WARNING, logging.root.level))
    if (
        args.max_connections < 1
        or (args.max_per_address is not None and not 1 <= args.max_per_address <= args.max_connections)
        or args.header_timeout <= 0
        or args.session_timeout <= 0
        or args.policy_check < 0
        or not 0 <= args.port < 65536
    ):
        print(
            "referee: fastagi: limits and timeouts must be positive, --max-per-address at most"
            " --max-connections, the port 0-65535",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        _, new_loop = loop_factory(args.loop)
    except LoopUnavailable as err:
        print(f"referee: fastagi: --loop uvloop: {err}", file=sys.stderr)
        return EXIT_USAGE
    source = PolicySource(policy_path(args.policy))
    try:
        policy = source.load()
    except PolicyError as err:
        print(f"referee: policy {source.path}: {err}", file=sys.stderr)
        return EXIT_BAD_POLICY
    if args.domain is not None and args.domain.lower() not in policy.tenants:
        # Every bare extension would be a foreign target, refused: say so now, not once per call.
        served = ", ".join(sorted({t.domain for t in policy.tenants.values()}))
        problem = f"--domain {args.domain} is no tenant of policy {source.path} (it serves {served})"
        print(f"referee: fastagi: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        allow = frozenset(str(ipaddress.ip_address(a)) for a in args.allow)
    except ValueError as err:
        print(f"referee: fastagi: --allow: {err}", file=sys.stderr)
        return EXIT_USAGE
    limits = Limits(
        max_connections=args.max_connections,
        max_per_address=args.max_per_address,
        allow=allow,
        header=HeaderLimits(timeout=args.header_timeout),
        session_timeout=args.session_timeout,
    )
    metrics = None
    exporter = None
    if args.metrics_listen:
        from referee.metrics.exposition import ListenError, serve_announced  # noqa: PLC0415
        from referee.metrics.fastagi import FastAgiMetrics  # noqa: PLC0415

        metrics = FastAgiMetrics()
        try:
            exporter = serve_announced(metrics.registry, args.metrics_listen, "referee fastagi")
        except (ListenError, OSError) as err:
            print(f"referee: fastagi: --metrics-listen: {err}", file=sys.stderr)
            return EXIT_USAGE
    try:
        run_on(
            serve(
                source,
                args.listen,
                args.port,
                limits=limits,
                domain=args.domain,
                policy_check=args.policy_check,
                on_listening=announce,
                metrics=metrics,
            ),
            new_loop,
        )
    except OSError as err:
        print(
            f"referee: fastagi: cannot listen on {args.listen}:{args.port}: {err.strerror or err}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    finally:
        if exporter is not None:
            exporter.close()
    return EXIT_OK
