"""The runtime files the package carries besides its modules (``referee/data/``), by name.

An operator (or the referee Ansible role) finds them in the install with ``referee assets``: the
KEMI entry script Kamailio loads, the dialplan drop-in and process AGI for Asterisk, the example
policy and orchestrator settings, the systemd units, the logrotate rule and the man page.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path
from typing import Any

ASSETS = {
    "policy.toml": "the example transfer policy (/etc/referee/policy.toml)",
    "orchestrator.toml": "example settings of referee orchestrator (/etc/referee/orchestrator.toml)",
    "kamailio/referee_kemi.py": "Kamailio's KEMI entry script (app_python3 load)",
    "kamailio/kamailio.cfg.j2": "the reference proxy's kamailio.cfg, a Jinja2 template",
    "kamailio/credentials.j2": "the proxy's digest credentials file (user:ha1:pbx), a Jinja2 template",
    "kamailio/referee.cfg.j2": "drop-in for an operator's kamailio.cfg (route[REFEREE]), Jinja2",
    "kamailio/referee_native.py": "its app_python3 script (python_exec entry points)",
    "asterisk/extensions_referee_transfer.conf": "the transfer guard's dialplan drop-in",
    "agi/referee_transfer_guard.py": "the process AGI transfer guard (agi-bin)",
    "systemd/referee-fastagi.service": "systemd unit of referee fastagi",
    "systemd/referee-orchestrator.service": "systemd unit of referee orchestrator",
    "systemd/referee-ingest.service": "systemd unit of referee audit ingest --follow",
    "logrotate/referee": "logrotate rule of the proxy's event file (/etc/logrotate.d/referee)",
    "man/referee.1": "this command's man page",
}


def data_dir() -> Path:
    return Path(str(resources.files("referee") / "data"))


def path(name: str) -> Path:
    if name not in ASSETS:
        raise KeyError(name)
    return data_dir() / name


def add_parser(commands: Any) -> None:
    assets = commands.add_parser("assets", help="list the files the package carries, or print one's path")
    assets.add_argument("name", nargs="?", choices=sorted(ASSETS), metavar="NAME", help="one asset")
    assets.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    names = [args.name] if args.name else list(ASSETS)
    missing = [name for name in names if not path(name).is_file()]
    if args.name:
        print(path(args.name))
    else:
        width = max(map(len, ASSETS))
        for name in names:
            print(f"{name:<{width}}  {path(name)}")
    for name in missing:
        print(f"referee: asset {name} is missing from the install", file=sys.stderr)
    return 1 if missing else 0
