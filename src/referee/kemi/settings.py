"""The proxy's settings, read from kamailio.cfg's ``#!define`` names, and its client-error type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from referee import sip


class BadRequest(Exception):
    """Client error the adapter answers itself: ``status`` and ``reason`` go on the reply."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class User:
    name: str
    password: str
    pbx: str  # PBX name


@dataclass(frozen=True)
class Settings:
    policy_path: str
    events_path: str
    domain: str
    pbxs: dict[str, str] = field(default_factory=dict)  # name -> sip URI
    users: dict[str, User] = field(default_factory=dict)
    dialog_table: str = "referee_dlg"
    policy_check: float = 1.0
    dialog_db: str = ""  # SQLite file the dialog map is written through to ("": htable only)
    pbx_probing: bool = False  # the dispatcher probes the PBXs (a timed-out PBX is marked down)

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
        users: dict[str, User] = {}
        for item in text("REFEREE_USERS", "").split():
            parts = item.split(":")
            if len(parts) != 3 or not all(parts):
                raise ValueError(f"REFEREE_USERS item for {parts[0]!r} is not user:password:pbx")
            if parts[2] not in pbxs:
                raise ValueError(f"REFEREE_USERS: user {parts[0]!r} names unknown PBX {parts[2]!r}")
            users[parts[0]] = User(parts[0], parts[1], parts[2])
        return cls(
            policy_path=text("REFEREE_POLICY"),
            events_path=text("REFEREE_EVENTS"),
            domain=text("REFEREE_DOMAIN"),
            pbxs=pbxs,
            users=users,
            dialog_table=text("REFEREE_DIALOG_TABLE", "referee_dlg"),
            policy_check=float(text("REFEREE_POLICY_CHECK", "1")),
            dialog_db=text("REFEREE_DIALOG_DB", "-").removeprefix("-"),
            pbx_probing=text("REFEREE_PBX_PROBING", "0") not in ("0", ""),
        )
