"""The lab's fixed topology and credentials, read from the local inventory (the single source of truth)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from referee_lab.provision import ANSIBLE_DIR

INVENTORY_VARS = ANSIBLE_DIR / "inventories" / "local" / "group_vars" / "all.yml"


@dataclass(frozen=True)
class Phone:
    name: str
    user: str
    password: str
    address: str
    port: int
    pbx: str


@dataclass(frozen=True)
class Pbx:
    name: str
    address: str
    sip_port: int
    ami_port: int
    agi_port: int
    extensions: str


@dataclass(frozen=True)
class Topology:
    domain: str
    proxy_name: str
    proxy_address: str
    proxy_port: int
    proxy_transports: tuple[str, ...]
    pbxs: tuple[Pbx, ...]
    phones: tuple[Phone, ...]
    ami_user: str
    ami_secret: str

    def phone(self, name: str) -> Phone:
        for p in self.phones:
            if p.name == name:
                return p
        raise KeyError(f"no phone named {name!r} in the lab")

    def node_names(self) -> dict[str, str]:
        """IP address -> node name (proxy, pbx1, alice, ...)."""
        names = {self.proxy_address: self.proxy_name}
        names.update({p.address: p.name for p in self.pbxs})
        names.update({p.address: p.name for p in self.phones})
        return names

    def node_order(self) -> list[str]:
        """Ladder columns, left to right: the first phone, the proxy, the PBXs, the other phones."""
        phones = [p.name for p in self.phones]
        return phones[:1] + [self.proxy_name] + [p.name for p in self.pbxs] + phones[1:]

    def as_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "proxy": {
                "name": self.proxy_name,
                "address": self.proxy_address,
                "port": self.proxy_port,
                "transports": list(self.proxy_transports),
            },
            "pbxs": [
                {
                    "name": p.name,
                    "address": p.address,
                    "sip_port": p.sip_port,
                    "ami_port": p.ami_port,
                    "agi_port": p.agi_port,
                    "extensions": p.extensions,
                    "ami": {"user": self.ami_user, "secret": self.ami_secret},
                }
                for p in self.pbxs
            ],
            "phones": [
                {
                    "name": p.name,
                    "user": p.user,
                    "password": p.password,
                    "address": p.address,
                    "port": p.port,
                    "pbx": p.pbx,
                    "aor": f"sip:{p.user}@{self.domain}",
                }
                for p in self.phones
            ],
            "ami": {"user": self.ami_user, "secret": self.ami_secret},
        }


def load(path: Path = INVENTORY_VARS) -> Topology:
    data = yaml.safe_load(path.read_text())
    proxy = data["lab_proxy"]
    return Topology(
        domain=str(data["lab_domain"]),
        proxy_name=str(proxy["name"]),
        proxy_address=str(proxy["address"]),
        proxy_port=int(proxy["port"]),
        proxy_transports=tuple(str(t) for t in proxy["transports"]),
        pbxs=tuple(
            Pbx(
                name=str(p["name"]),
                address=str(p["address"]),
                sip_port=int(p["sip_port"]),
                ami_port=int(p["ami_port"]),
                agi_port=int(p["agi_port"]),
                extensions=str(p["extensions"]),
            )
            for p in data["lab_pbxs"]
        ),
        phones=tuple(
            Phone(
                name=str(p["name"]),
                user=str(p["user"]),
                password=str(p["password"]),
                address=str(p["address"]),
                port=int(p["port"]),
                pbx=str(p["pbx"]),
            )
            for p in data["lab_phones"]
        ),
        ami_user=str(data["lab_ami"]["user"]),
        ami_secret=str(data["lab_ami"]["secret"]),
    )
