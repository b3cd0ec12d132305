"""Connection slots for referee's servers (the API, FastAGI): a global cap and a cap per peer address.

A global cap alone lets one peer that opens slow connections take every slot, and then every good
client is refused until it leaves. Capping each address below the global cap keeps room for the others:
one address can hold at most ``per_address`` slots, whatever it does. An optional allowlist refuses
every other address before it takes anything.

Stdlib only, no I/O: the servers ask :meth:`Slots.take` when a connection arrives and call
:meth:`Slots.give` when it ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Slots:
    total: int
    per_address: int
    allow: frozenset[str] = frozenset()  # empty: every address may connect
    held: dict[str, int] = field(default_factory=dict)
    open: int = 0

    def __post_init__(self) -> None:
        if self.total < 1 or self.per_address < 1:
            raise ValueError("connection caps must be at least 1")
        if self.per_address > self.total:
            raise ValueError(f"the cap per address ({self.per_address}) exceeds the total ({self.total})")

    @classmethod
    def of(cls, total: int, per_address: int | None = None, allow: Iterable[str] = ()) -> Slots:
        """``per_address`` defaults to a quarter of ``total`` (at least 1)."""
        return cls(total, per_address if per_address is not None else max(1, total // 4), frozenset(allow))

    def take(self, address: str) -> str | None:
        """Take a slot for ``address``; None when granted, else why not (and nothing is taken)."""
        if self.allow and address not in self.allow:
            return f"{address} is not an allowed peer"
        if self.open >= self.total:
            return f"{self.total} connections open"
        if self.held.get(address, 0) >= self.per_address:
            return f"{self.per_address} connections open from {address}"
        self.open += 1
        self.held[address] = self.held.get(address, 0) + 1
        return None

    def give(self, address: str) -> None:
        """Give back a slot :meth:`take` granted."""
        count = self.held.get(address, 0)
        if count <= 0:
            raise ValueError(f"no slot held by {address}")
        self.open -= 1
        if count == 1:
            del self.held[address]
        else:
            self.held[address] = count - 1


def peer_address(peername: object) -> str:
    """The address part of a transport's ``peername`` ((host, port) or (host, port, flow, scope))."""
    if isinstance(peername, tuple) and peername:
        return str(peername[0])
    return str(peername)
