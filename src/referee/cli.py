"""The ``referee`` command line.

Exit codes, for shell scripts:
  0  the policy is valid / the REFER is allowed
  1  the REFER is rejected
  2  usage error (bad option or argument)
  3  the policy file cannot be used
  (``referee policy status``: 0 all run the same version, 1 they differ, 4 one is unreachable)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib import metadata

from referee.policy import Decision, Dialog, Policy, PolicyError, load_policy

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_BAD_POLICY = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="referee", description="A REFER referee for Kamailio and Asterisk.")
    parser.add_argument("--version", action="version", version=f"referee {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    policy = commands.add_parser("policy", help="validate a policy file or check a REFER against it")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")

    validate = policy_commands.add_parser("validate", help="load and compile a policy file")
    validate.add_argument("file", metavar="FILE")
    validate.add_argument("--json", action="store_true", help="print the result as JSON")
    validate.set_defaults(run=_validate)

    check = policy_commands.add_parser("check", help="decide one REFER")
    check.add_argument("--policy", required=True, metavar="FILE")
    check.add_argument("--referrer", required=True, metavar="URI", help="the REFER's From URI")
    check.add_argument(
        "--dialog",
        action="append",
        default=[],
        metavar="CALL-ID;TAG;TAG",
        help="a dialog the referrer is a party to (repeatable)",
    )
    check.add_argument("--depth", type=int, default=0, help="transfers that already led here")
    check.add_argument("--explain", action="store_true", help="print every rule considered")
    check.add_argument("--json", action="store_true", help="print the decision as JSON")
    check.add_argument("refer_to", metavar="REFER-TO", help="the Refer-To header value")
    check.set_defaults(run=_check)

    from referee.policy_status import add_parser as add_status_parser  # noqa: PLC0415

    add_status_parser(policy_commands)

    from referee.agi.cli import add_parser as add_agi_parser  # noqa: PLC0415

    add_agi_parser(commands)
    from referee.audit.cli import add_parser as add_audit_parser  # noqa: PLC0415

    add_audit_parser(commands)
    from referee.api.cli import add_parser as add_transfer_parser  # noqa: PLC0415

    add_transfer_parser(commands)
    from referee.service import add_parser as add_orchestrator_parser  # noqa: PLC0415

    add_orchestrator_parser(commands)
    from referee.assets import add_parser as add_assets_parser  # noqa: PLC0415

    add_assets_parser(commands)
    try:
        from referee_lab.cli import add_parser as add_lab_parser  # noqa: PLC0415
    except ImportError:  # the lab lives in a checkout (lab/), never in an installed referee
        lab = commands.add_parser("lab", help="the lab: only from a referee checkout (make venv installs it)")
        lab.set_defaults(run=_no_lab)
    else:
        add_lab_parser(commands)
    return parser


def version() -> str:
    """The installed distribution's version (a source tree that was never installed has none)."""
    try:
        return metadata.version("referee")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _load(path: str, as_json: bool) -> Policy | None:
    try:
        return load_policy(path)
    except PolicyError as err:
        if as_json:
            print(json.dumps({"valid": False, "file": path, "key": err.key, "problem": err.problem}))
        else:
            print(f"referee: policy {path}: {err}", file=sys.stderr)
        return None


def _validate(args: argparse.Namespace) -> int:
    policy = _load(args.file, args.json)
    if policy is None:
        return EXIT_BAD_POLICY
    if args.json:
        print(
            json.dumps(
                {
                    "valid": True,
                    "file": args.file,
                    "id": policy.id,
                    "version": policy.version,
                    "summary": policy.summary(),
                }
            )
        )
    else:
        print(f"{args.file}: ok, {policy.summary()}, version {policy.version}")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    try:
        dialogs = [Dialog.parse(text) for text in args.dialog]
    except ValueError as err:
        print(f"referee: --dialog: {err}", file=sys.stderr)
        return EXIT_USAGE
    if args.depth < 0:
        print("referee: --depth must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    policy = _load(args.policy, args.json)
    if policy is None:
        return EXIT_BAD_POLICY
    decision = policy.decide(args.refer_to, referrer=args.referrer, dialogs=dialogs, depth=args.depth)
    if args.json:
        print(json.dumps(decision.to_dict(), indent=2))
    else:
        print(format_decision(decision, explain=args.explain))
    return EXIT_OK if decision.allowed else EXIT_REJECTED


def format_decision(decision: Decision, explain: bool = False) -> str:
    if decision.allowed:
        lines = [f"ALLOW  rule {decision.rule}", f"  Refer-To: {decision.refer_to}", f"  PBX: {decision.pbx}"]
    else:
        lines = [f"REJECT {decision.status} {decision.reason}", f"  rule {decision.rule}"]
    if explain:
        lines.append("  trace:")
        lines += [f"    {step}" for step in decision.trace]
    return "\n".join(lines)


def _no_lab(args: argparse.Namespace) -> int:
    print(
        "referee: the lab is not installed: it runs from a referee checkout, where `make venv` installs it",
        file=sys.stderr,
    )
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
