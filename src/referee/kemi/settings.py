"""The proxy's settings, read from kamailio.cfg's ``#!define`` names, and its client-error type."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from referee import sip


class BadRequest(Exception):
    """Client error the adapter answers itself: ``status`` and ``reason`` go on the reply."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


_HA1 = re.compile(r"[0-9a-f]{32}")
OOD_REFER_MODES = ("refuse", "relay")


@dataclass(frozen=True)
class User:
    name: str
    ha1: str  # MD5(user:realm:password): what digest auth checks, never the password itself
    pbx: str  # PBX name


def read_credentials(path: str, pbxs: dict[str, str]) -> dict[str, User]:
    """The ``user:ha1:pbx`` lines of the credentials file (``#`` comments), which others may not read."""
    with open(path, encoding="utf-8") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if mode & (stat.S_IROTH | stat.S_IWOTH):
            raise ValueError(f"REFEREE_CREDENTIALS {path} is readable by others: chmod 0600 it")
        lines = handle.read().splitlines()
    users: dict[str, User] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(":")
        where = f"REFEREE_CREDENTIALS {path} line {number}"
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"{where} is not user:ha1:pbx")
        name, ha1, pbx = parts
        if not _HA1.fullmatch(ha1):
            raise ValueError(f"{where}: the HA1 of {name!r} is not 32 lower-case hex digits")
        if pbx not in pbxs:
            raise ValueError(f"{where}: user {name!r} names unknown PBX {pbx!r}")
        users[name] = User(name, ha1, pbx)
    return users


@dataclass(frozen=True)
class Settings:
    policy_path: str
    events_path: str
    domain: str
    pbxs: dict[str, str] = field(default_factory=dict)  # name -> sip URI
    users: dict[str, User] = field(default_factory=dict)
    dialog_table: str = "referee_dlg"
    policy_check: float = 1.0
    dmq_peers: tuple[str, ...] = ()  # sip URIs of the other proxies
    out_of_dialog_refer: str = "refuse"  # a phone's REFER outside a dialog: "refuse" (403) or "relay"
    dialog_db: str = ""  # SQLite file the dialog map is written through to ("": htable only)
    pbx_probing: bool = False  # the dispatcher probes the PBXs (a timed-out PBX is marked down)
    hep: bool = False  # siptrace is loaded: each decision also goes out as a HEP log (kemi/hep.py)

    def pbx_set(self, name: str) -> int:
        """The PBX's dispatcher set: its position in REFEREE_PBXS, from 1 (dispatcher.list.j2)."""
        return list(self.pbxs).index(name) + 1

    def pbx_of_uri(self, uri: str) -> str | None:
        """The PBX whose URI this is (the dispatcher's events name the destination)."""
        return next((name for name, known in self.pbxs.items() if known == uri), None)

    @property
    def pbx_hosts(self) -> dict[str, str]:
        """Host (IP) of each PBX -> PBX name, to tell requests from a PBX apart."""
        hosts = {}
        for name, uri in self.pbxs.items():
            hosts[sip.parse_uri(uri).host] = name
        return hosts

    @property
    def dmq_hosts(self) -> frozenset[str]:
        """Addresses of the other proxies: the only sources whose KDMQ requests are handled."""
        return frozenset(sip.parse_uri(uri).host for uri in self.dmq_peers)

    @classmethod
    def from_defines(cls, get_def: Callable[[str], object]) -> Settings:
        def text(name: str, default: str | None = None) -> str:
            value = get_def(name)
            if value is None or value == "":
                if default is None:
                    raise ValueError(f"kamailio.cfg lacks '#!define {name}'")
                return default
            return str(value).strip().strip('"')

        pbxs: dict[str, str] = {}
        for item in text("REFEREE_PBXS", "").split():
            name, eq, uri = item.partition("=")
            if not eq or not name or not uri:
                raise ValueError(f"REFEREE_PBXS item {item!r} is not name=uri")
            sip.parse_uri(uri)
            pbxs[name] = uri
        credentials = text("REFEREE_CREDENTIALS", "")
        users = read_credentials(credentials, pbxs) if credentials else {}
        dmq_peers = tuple(text("REFEREE_DMQ_PEERS", "").split())
        for uri in dmq_peers:
            sip.parse_uri(uri)
        ood_refer = text("REFEREE_OUT_OF_DIALOG_REFER", "refuse")
        if ood_refer not in OOD_REFER_MODES:
            raise ValueError(f"REFEREE_OUT_OF_DIALOG_REFER is {ood_refer!r}, not one of {OOD_REFER_MODES}")
        return cls(
            policy_path=text("REFEREE_POLICY"),
            events_path=text("REFEREE_EVENTS"),
            domain=text("REFEREE_DOMAIN"),
            pbxs=pbxs,
            users=users,
            dialog_table=text("REFEREE_DIALOG_TABLE", "referee_dlg"),
            policy_check=float(text("REFEREE_POLICY_CHECK", "1")),
            dmq_peers=dmq_peers,
            out_of_dialog_refer=ood_refer,
            dialog_db=text("REFEREE_DIALOG_DB", "-").removeprefix("-"),
            pbx_probing=text("REFEREE_PBX_PROBING", "0") not in ("0", ""),
            hep=text("REFEREE_HEP", "0") not in ("0", ""),
        )
