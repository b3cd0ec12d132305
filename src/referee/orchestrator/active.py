"""The transfers a tracker follows, indexed by their channels so an AMI event finds its transfers
without scanning them all.

Two indexes: each party's channel uniqueid, and, for a transfer whose recipient has no channel
yet, its destination ``(exten, context)`` (an attended transfer's consultation channel is
``Local/<exten>@<context>-…;1``: its name, not a uniqueid, ties it to the transfer).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from referee.orchestrator.transfer import Role, Transfer


class ActiveTransfers(Mapping[int, Transfer]):
    def __init__(self) -> None:
        self._by_id: dict[int, Transfer] = {}
        self._by_channel: dict[str, dict[int, Transfer]] = {}
        self._by_destination: dict[tuple[str, str], dict[int, Transfer]] = {}

    def __getitem__(self, transfer_id: int) -> Transfer:
        return self._by_id[transfer_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, transfer: Transfer) -> None:
        self._by_id[transfer.id] = transfer
        for role in Role:
            self._index(transfer, transfer.party(role))
        self._index_destination(transfer)

    def discard(self, transfer: Transfer) -> None:
        if self._by_id.pop(transfer.id, None) is None:
            return
        for role in Role:
            self._unindex(transfer, transfer.party(role))
        self._by_destination.get((transfer.exten, transfer.context), {}).pop(transfer.id, None)

    def bind(self, transfer: Transfer, role: Role, uniqueid: str) -> None:
        """``uniqueid`` now plays ``role`` in ``transfer`` (a new party, or a channel swapped in)."""
        before = transfer.party(role)
        setattr(transfer, str(role), uniqueid)
        if transfer.id not in self._by_id:
            return
        if before is not None and transfer.role_of(before) is None:
            self._unindex(transfer, before)
        self._index(transfer, uniqueid)
        if role == Role.RECIPIENT:
            self._by_destination.get((transfer.exten, transfer.context), {}).pop(transfer.id, None)

    def on_channel(self, uniqueid: str) -> list[Transfer]:
        """The transfers ``uniqueid`` is a party of, oldest first."""
        return list(self._by_channel.get(uniqueid, {}).values())

    def to_destination(self, exten: str, context: str) -> list[Transfer]:
        """The transfers to ``exten@context`` whose recipient has no channel yet, oldest first."""
        return list(self._by_destination.get((exten, context), {}).values())

    def _index(self, transfer: Transfer, uniqueid: str | None) -> None:
        if uniqueid:
            self._by_channel.setdefault(uniqueid, {})[transfer.id] = transfer

    def _unindex(self, transfer: Transfer, uniqueid: str | None) -> None:
        if not uniqueid:
            return
        found = self._by_channel.get(uniqueid, {})
        found.pop(transfer.id, None)
        if not found:
            self._by_channel.pop(uniqueid, None)

    def _index_destination(self, transfer: Transfer) -> None:
        if transfer.exten and transfer.recipient is None:
            self._by_destination.setdefault((transfer.exten, transfer.context), {})[transfer.id] = transfer
