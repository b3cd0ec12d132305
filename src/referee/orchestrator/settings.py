"""The orchestrator's settings: a TOML file and/or command-line options.

::

    [orchestrator]
    db = "/var/lib/referee/audit.sqlite3"        # or sqlite:///path
    events = "/var/log/referee/events.jsonl"     # the proxy's decision events ("" for none)
    api = "127.0.0.1:8088"                       # loopback only
    token_file = "/var/lib/referee/api.token"    # created (0600, random) when missing
    policy = "/etc/referee/policy.toml"          # optional: the page's policy playground (POST /policy/check)
    metrics = "127.0.0.1:9102"                   # optional: Prometheus /metrics there too (the API has one)

    [[pbx]]
    name = "pbx1"
    host = "192.0.2.20"
    port = 5038
    username = "referee"
    secret = "..."           # or secret_file = "/path"

On the command line a PBX is ``--pbx NAME=ami://USER:SECRET@HOST:PORT[?source=ADDRESS]``
(repeatable). ``source`` (also a ``[[pbx]]`` key) is the local address to connect from, for an
AMI ``permit=`` that only lets one address in. A test bed (the lab) writes its PBXs as such a
file and passes ``--config``: nothing here knows one.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from referee.api.access import DEFAULT_API, DEFAULT_TOKEN_FILE, AccessError, parse_api_address
from referee.metrics.exposition import ListenError, parse_listen
from referee.orchestrator.pbx import PbxConfig

DEFAULT_DB = "/var/lib/referee/audit.sqlite3"
DEFAULT_EVENTS = "/var/log/referee/events.jsonl"
KEYS = ("db", "events", "api", "token_file", "policy", "metrics")  # of [orchestrator], all strings


class SettingsError(Exception):
    pass


@dataclass
class Settings:
    pbxs: list[PbxConfig] = field(default_factory=list)
    db: str = DEFAULT_DB
    events: str = DEFAULT_EVENTS
    api: str = DEFAULT_API
    token_file: str = DEFAULT_TOKEN_FILE
    policy: str = ""  # a policy file for POST /policy/check; "" for none
    metrics: str = ""  # HOST:PORT of a /metrics server of its own; "" for none (the API serves /metrics)
    poll_interval: float = 0.5

    @property
    def api_address(self) -> tuple[str, int]:
        try:
            return parse_api_address(self.api)
        except AccessError as exc:
            raise SettingsError(str(exc)) from None


def parse_pbx_url(text: str) -> PbxConfig:
    """``NAME=ami://USER:SECRET@HOST:PORT``."""
    name, sep, url = text.partition("=")
    parts = urlsplit(url)
    if not sep or not name or parts.scheme != "ami" or not parts.hostname or not parts.username:
        raise SettingsError(f"--pbx {name or text!r}: expected NAME=ami://USER:SECRET@HOST:PORT")
    try:
        port = parts.port or 5038
    except ValueError:
        raise SettingsError(f"--pbx {name}: bad port") from None
    query = parse_qs(parts.query)
    unknown = set(query) - {"source"}
    if unknown:
        raise SettingsError(f"--pbx {name}: unknown parameter(s) {', '.join(sorted(unknown))}")
    source = query.get("source", [None])[-1]
    return PbxConfig(
        name, parts.hostname, port, unquote(parts.username), unquote(parts.password or ""), source
    )


def _pbx_from_table(item: Any, index: int) -> PbxConfig:
    where = f"pbx[{index}]"
    if not isinstance(item, dict):
        raise SettingsError(f"{where}: must be a table")
    unknown = set(item) - {"name", "host", "port", "username", "secret", "secret_file", "source"}
    if unknown:
        raise SettingsError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("name", "host", "username"):
        if not isinstance(item.get(key), str) or not item[key]:
            raise SettingsError(f"{where}.{key}: required, a string")
    port = item.get("port", 5038)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise SettingsError(f"{where}.port: must be a port number")
    secret = item.get("secret")
    if "secret_file" in item:
        try:
            with open(item["secret_file"], encoding="utf-8") as handle:
                secret = handle.read().strip()
        except OSError as exc:
            raise SettingsError(f"{where}.secret_file: {exc}") from None
    if not isinstance(secret, str):
        raise SettingsError(f"{where}: needs secret or secret_file")
    source = item.get("source")
    if source is not None and not isinstance(source, str):
        raise SettingsError(f"{where}.source: must be an address")
    return PbxConfig(item["name"], item["host"], port, item["username"], secret, source)


def load_file(path: str) -> Settings:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: {exc}") from None
    unknown = set(data) - {"orchestrator", "pbx"}
    if unknown:
        raise SettingsError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
    settings = Settings()
    section = data.get("orchestrator", {})
    for key, value in section.items():
        if key not in KEYS or not isinstance(value, str):
            raise SettingsError(f"{path}: orchestrator.{key}: unknown key or not a string")
        setattr(settings, key, value)
    pbxs = data.get("pbx", [])
    if not isinstance(pbxs, list):
        raise SettingsError(f"{path}: pbx must be an array of tables ([[pbx]])")
    settings.pbxs = [_pbx_from_table(item, i) for i, item in enumerate(pbxs)]
    return settings


def check(settings: Settings) -> None:
    if not settings.pbxs:
        raise SettingsError("no PBX: give --pbx NAME=ami://USER:SECRET@HOST:PORT or a [[pbx]] in --config")
    names = [p.name for p in settings.pbxs]
    if len(set(names)) != len(names):
        raise SettingsError(f"PBX names must be unique, got {', '.join(names)}")
    settings.api_address  # noqa: B018 - validates
    if settings.metrics:
        try:
            parse_listen(settings.metrics)
        except ListenError as exc:
            raise SettingsError(str(exc)) from None
