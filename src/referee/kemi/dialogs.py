"""Which PBX holds which dialog: a Kamailio htable, replicated over DMQ."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from referee.kemi.ksr import KSR


@dataclass(frozen=True)
class DialogRecord:
    call_id: str
    pbx: str
    from_tag: str
    to_tag: str
    from_user: str
    to_user: str
    # Transfers the proxy saw lead to this dialog: an INVITE with Replaces makes the replaced
    # dialog's depth + 1; one with Referred-By (RFC 3892: sent because of a REFER) at least 1.
    depth: int = 0
    # The phone the proxy vouches for in this dialog: the user it authenticated (the caller) or
    # the registered user it delivered the call to (the callee). In-dialog REFERs are decided for it.
    party: str = ""

    def has_tags(self, tag_a: str, tag_b: str) -> bool:
        """Whether the two tags are this dialog's, in either order."""
        return {tag_a, tag_b} == {self.from_tag, self.to_tag}

    def has_party(self, user: str) -> bool:
        return bool(user) and user in (self.from_user, self.to_user)


class DialogStore:
    def __init__(self, ksr: KSR, table: str) -> None:
        self._k = ksr
        self.table = table

    def get(self, call_id: str) -> DialogRecord | None:
        raw = self._k.htable.sht_get(self.table, call_id)
        if not isinstance(raw, str) or not raw:
            return None
        try:
            data = json.loads(raw)
            return DialogRecord(call_id=call_id, **data)
        except (ValueError, TypeError):
            return None

    def put(self, record: DialogRecord) -> None:
        data: dict[str, str | int] = {
            "pbx": record.pbx,
            "from_tag": record.from_tag,
            "to_tag": record.to_tag,
            "from_user": record.from_user,
            "to_user": record.to_user,
        }
        if record.depth:
            data["depth"] = record.depth
        if record.party:
            data["party"] = record.party
        self._k.htable.sht_sets(self.table, record.call_id, json.dumps(data, separators=(",", ":")))

    def set_to_tag(self, call_id: str, to_tag: str) -> None:
        record = self.get(call_id)
        if record is not None and not record.to_tag and to_tag:
            self.put(DialogRecord(**{**record.__dict__, "to_tag": to_tag}))

    def forget(self, call_id: str) -> None:
        self._k.htable.sht_rm(self.table, call_id)
