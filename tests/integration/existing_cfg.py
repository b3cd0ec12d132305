"""Debian's shipped kamailio.cfg with referee's existing-mode drop-in, as the kamailio role adds it.

The stock files in ``stock/`` are the packages' ``/etc/kamailio/kamailio.cfg`` byte for byte (5.6.3-2 of
Debian 12, md5 409f2642...; 6.1.5-1 of sid, md5 a27e2a2a..., the conffile the lab's rootfs replaced).
What the operator would set goes in ``kamailio-local.cfg``, which the stock file imports: WITH_AUTH with
an SQLite subscriber table, the listen address, the domain. The role's two lines (``include_file`` and
``route(REFEREE);``) are added by :func:`add_referee`, exactly where ``tasks/existing.yml`` puts them
(tests/integration/test_existing_cfg.py checks the role against it).

Addresses: proxy 127.0.1.50, phones 1001/1002/1003 at .51/.52/.53, readiness pings from .59.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import harness
import jinja2

ROLE = harness.REPO / "ansible" / "roles" / "kamailio"
DROPIN_TEMPLATE = ROLE / "templates" / "referee.cfg.j2"
NATIVE_SCRIPT = harness.REPO / "ansible" / "roles" / "kamailio" / "files" / "referee_native.py"
STOCK = Path(__file__).with_name("stock")
SQL = Path("/usr/share/kamailio/db_sqlite")

PROXY = "127.0.1.50"
PING_FROM = "127.0.1.59"
PHONES = {"1001": "127.0.1.51", "1002": "127.0.1.52", "1003": "127.0.1.53"}
# The line the test names in kamailio__refer_hook_after: route(REFEREE) right before the in-dialog routing.
HOOK_AFTER = r"^\s*# handle requests within SIP dialogs"
INCLUDE_BEFORE = r"^\s*request_route\s*\{"  # the role's default kamailio__include_before


def stock_cfg() -> Path:
    """The shipped cfg of the Kamailio under test (the rootfs's 6.1 when REFEREE_KAMAILIO_ROOTFS is set)."""
    return STOCK / ("kamailio-6.1.cfg" if harness.ROOTFS else "kamailio-5.6.cfg")


def dropin_vars(tmp: Path, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "kamailio__native_script": str(NATIVE_SCRIPT),
        "kamailio__referee_pythonpath": str(harness.REPO / "src"),
        "kamailio__policy_file": str(tmp / "policy.toml"),
        "kamailio__events_file": str(tmp / "events.jsonl"),
        "kamailio__domain": harness.DOMAIN,
        "kamailio__referrer": "auth",
        # Debian's cfg relays in-dialog requests without authentication: route[REFEREE] checks the REFER's
        # credentials itself, against the same subscriber table.
        "kamailio__refer_auth": {"realm": "$fd", "table": "subscriber"},
    }
    values.update(overrides)
    return values


def render_dropin(values: dict[str, Any]) -> str:
    """The drop-in as ansible's template module renders it (trim_blocks on)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True)
    return env.from_string(DROPIN_TEMPLATE.read_text()).render(**values)


def add_referee(cfg: str, dropin: Path, hook_after: str = HOOK_AFTER, indent: str = "\t") -> str:
    """The operator's cfg with the role's two lines: the include before the first request_route line,
    route(REFEREE); after the first line matching ``hook_after`` (lineinfile's firstmatch)."""
    lines = cfg.splitlines(keepends=True)
    include = next(i for i, line in enumerate(lines) if re.search(INCLUDE_BEFORE, line))
    lines.insert(include, f'include_file "{dropin}"\n')
    hook = next(i for i, line in enumerate(lines) if re.search(hook_after, line))
    lines.insert(hook + 1, f"{indent}route(REFEREE);\n")
    return "".join(lines)


def local_cfg(tmp: Path) -> str:
    """kamailio-local.cfg, the operator's own settings next to the stock file."""
    return "\n".join(
        [
            "#!define WITH_AUTH",
            f'#!define DBURL "sqlite://{tmp}/kamailio.sqlite"',
            'loadmodule "db_sqlite.so"',
            f"listen=udp:{PROXY}:{harness.PORT}",
            f'alias="{harness.DOMAIN}"',
            "children=2",
            "",
        ]
    )


def subscriber_db(path: Path) -> None:
    """auth_db's subscriber table (plain passwords: the stock cfg sets calculate_ha1) with the phones."""
    with sqlite3.connect(path) as db:
        db.executescript((SQL / "standard-create.sql").read_text())
        db.executescript((SQL / "auth_db-create.sql").read_text())
        db.executemany(
            "INSERT INTO subscriber (username, domain, password) VALUES (?, ?, ?)",
            [(user, harness.DOMAIN, harness.PASSWORDS.get(user, f"secret-{user}")) for user in PHONES],
        )


def prepare(tmp: Path, *, referee: bool = True, **overrides: Any) -> Path:
    """The stock cfg in ``tmp`` (with the drop-in when ``referee``); the policy, the auth database."""
    policy = tmp / "policy.toml"
    if not policy.exists():
        policy.write_text(harness.POLICY.read_text())
    (tmp / "kamailio-local.cfg").write_text(local_cfg(tmp))
    database = tmp / "kamailio.sqlite"
    if not database.exists():
        subscriber_db(database)
    text = stock_cfg().read_text()
    if referee:
        dropin = tmp / "referee.cfg"
        dropin.write_text(render_dropin(dropin_vars(tmp, **overrides)))
        text = add_referee(text, dropin)
    cfg = tmp / "kamailio.cfg"
    cfg.write_text(text)
    return cfg


def start(tmp: Path, *, referee: bool = True, **overrides: Any) -> harness.Kamailio:
    proxy = harness.Kamailio(
        tmp,
        prepare(tmp, referee=referee, **overrides),
        address=PROXY,
        ping_from=PING_FROM,
        extra_args=("-Y", str(tmp)),  # the stock cfg's RPC sockets (ctl, jsonrpcs) go to the runtime dir
    )
    proxy.start()
    return proxy
