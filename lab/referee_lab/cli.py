"""``referee lab ...``: info, up, down, run and demo (the one-command lab).

Wired into the main CLI by ``referee.cli`` through :func:`add_parser`;
also runnable as ``python -m referee_lab``.
Heavy imports (scapy, yaml) are done inside the commands, so ``referee --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    lab: argparse.ArgumentParser = subparsers.add_parser(
        "lab", help="the local Kamailio + Asterisk lab (root; chroot on loopback)"
    )
    cmds = lab.add_subparsers(dest="lab_command", required=True, metavar="ACTION")

    info = cmds.add_parser("info", help="topology, credentials and AMI user of the lab")
    info.add_argument("--json", action="store_true", help="print as JSON")
    info.set_defaults(run=_info)

    up = cmds.add_parser(
        "up", help="build or reuse the rootfs, provision it, start Kamailio and both Asterisks"
    )
    up.add_argument(
        "--idempotence", action="store_true", help="provision twice; fail unless the 2nd has changed=0"
    )
    up.set_defaults(run=_up)

    down = cmds.add_parser("down", help="stop the lab's processes and unmount (idempotent)")
    down.set_defaults(run=_down)

    run = cmds.add_parser(
        "run", help="run scenarios against the running lab (default: every scenario folder)"
    )
    run.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="folder names under tests/scenarios/")
    run.set_defaults(run=_run)

    nodes = ("proxy", "pbx1", "pbx2")
    restart = cmds.add_parser("restart", help="stop a node (SIGTERM; SIGKILL with --kill) and start it again")
    restart.add_argument("node", choices=nodes)
    restart.add_argument("--kill", action="store_true", help="SIGKILL it first: a crash, no shutdown")
    restart.set_defaults(run=_restart)
    kill = cmds.add_parser("kill", help="SIGKILL a node (and its workers), to reproduce a crash")
    kill.add_argument("node", choices=nodes)
    kill.set_defaults(run=_kill)

    demo = cmds.add_parser("demo", help="up, run every scenario, print a result per scenario, down")
    demo.add_argument("scenarios", nargs="*", metavar="SCENARIO")
    demo.add_argument(
        "--idempotence", action="store_true", help="also check that a 2nd provisioning is a no-op"
    )
    demo.set_defaults(run=_demo)
    return lab


def _need_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit("referee lab: needs root (debootstrap, chroot, mount, tcpdump)")
    # A SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so the teardown in `finally` still runs.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def _info(args: argparse.Namespace) -> int:
    from referee_lab import topology  # noqa: PLC0415

    topo = topology.load()
    if args.json:
        print(json.dumps(topo.as_json(), indent=2))
        return 0
    print(f"domain {topo.domain}")
    print(
        f"proxy  {topo.proxy_name} {topo.proxy_address}:{topo.proxy_port} ({'+'.join(topo.proxy_transports)})"
    )
    for p in topo.pbxs:
        print(
            f"pbx    {p.name} {p.address} sip {p.sip_port} ami {p.ami_port} agi {p.agi_port} "
            f"extensions {p.extensions}"
        )
    for ph in topo.phones:
        print(f"phone  {ph.name:6} {ph.user} {ph.address}:{ph.port} on {ph.pbx}  password {ph.password}")
    print(f"ami    user {topo.ami_user} secret {topo.ami_secret}")
    return 0


def _up_lab(idempotence: bool) -> int:
    from referee_lab import services, topology  # noqa: PLC0415

    report = services.up(topology.load(), idempotence_check=idempotence)
    if idempotence and report.provision[-1].changed != 0:
        services.down()
        print(f"FAIL: the second provisioning run changed {report.provision[-1].changed} task(s)")
        return 1
    return 0


def _up(args: argparse.Namespace) -> int:
    _need_root()
    code = _up_lab(args.idempotence)
    if code == 0:
        print("lab is up; `referee lab run` runs the scenarios, `referee lab down` stops it")
    return code


def _restart(args: argparse.Namespace) -> int:
    _need_root()
    from referee_lab import services, topology  # noqa: PLC0415

    pid = services.restart(args.node, topology.load(), hard=args.kill)
    print(f"{args.node} restarted, pid {pid}")
    return 0


def _kill(args: argparse.Namespace) -> int:
    _need_root()
    from referee_lab import services  # noqa: PLC0415

    pid = services.kill(args.node)
    print(f"{args.node} killed (pid {pid})" if pid else f"{args.node} was not running")
    return 0


def _down(args: argparse.Namespace) -> int:
    _need_root()
    from referee_lab import services  # noqa: PLC0415

    report = services.down()
    print(f"lab down: stopped {len(report['stopped'])} process(es), unmounted {len(report['unmounted'])}")
    return 0


def _run_scenarios(names: Sequence[str]) -> int:
    from referee_lab import chroot, scenario, topology  # noqa: PLC0415

    state = chroot.LabState.load()
    if state is None or not state.pids:
        print("referee lab: the lab is not up (referee lab up)", file=sys.stderr)
        return 2
    topo = topology.load()
    found = scenario.discover()
    if names:
        by_name = {s.name: s for s in found}
        missing = [n for n in names if n not in by_name]
        if missing:
            print(f"referee lab: no scenario {', '.join(missing)}", file=sys.stderr)
            return 2
        found = [by_name[n] for n in names]
    if not found:
        print("referee lab: no scenario folders found", file=sys.stderr)
        return 2
    results = []
    for sc in found:
        print(f"\n=== {sc.name}: {sc.summary}")
        res = scenario.run(sc, state, topo)
        results.append(res)
        print(res.ladder_text)
        for note in res.notes:
            print(f"    {note}")
        verdict = "PASS" if res.passed else "FAIL"
        print(f"--- {sc.name}: {verdict} in {res.seconds:.1f} s" + (f" ({res.error})" if res.error else ""))
        print(f"    pcap {res.pcap}\n    svg  {res.svg}")
    print("\nscenario results:")
    for res in results:
        print(f"  {'PASS' if res.passed else 'FAIL'}  {res.scenario.name}")
    passed = sum(r.passed for r in results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


def _run(args: argparse.Namespace) -> int:
    _need_root()
    return _run_scenarios(args.scenarios)


def _demo(args: argparse.Namespace) -> int:
    _need_root()
    from referee_lab import services  # noqa: PLC0415

    start = time.monotonic()
    try:
        code = _up_lab(args.idempotence)
        if code == 0:
            code = _run_scenarios(args.scenarios)
    finally:
        report = services.down()
        print(f"lab down: stopped {len(report['stopped'])} process(es), unmounted {len(report['unmounted'])}")
    print(f"lab demo took {time.monotonic() - start:.0f} s")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="referee")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["lab", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.run(args)
    return code
