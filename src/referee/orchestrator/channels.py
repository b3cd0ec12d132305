"""Channels and bridges of one PBX, kept from AMI events and rebuilt from a resync.

Events used (field names as in Asterisk's manager documentation):
``Newchannel``, ``Newstate``, ``Rename``, ``Hangup`` (channel snapshot: ``Channel``,
``ChannelState``, ``Uniqueid``, ``Linkedid``, ...), ``BridgeCreate``/``BridgeDestroy``
(``BridgeUniqueid``), ``BridgeEnter``/``BridgeLeave`` (bridge snapshot + channel snapshot).
A resync replaces everything with ``CoreShowChannel`` items (``BridgeId`` gives membership)
and ``BridgeListItem`` items.

SIP Call-IDs come for free with bridging: chan_pjsip sets ``BRIDGEPEER`` (the peer's name) and
then ``BRIDGEPVTCALLID`` (the peer's Call-ID) on each bridged channel, and ``VarSet`` events
report both (seen on the lab's Asterisk 22). The link also asks with ``Getvar``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

UP = "6"  # ChannelState of an answered channel (AST_STATE_UP)
_SUFFIX = re.compile(r"-[0-9a-f]{8}(;[12])?$")


def endpoint_of(name: str) -> str:
    """``PJSIP/1002-0000000a`` -> ``PJSIP/1002``; ``Local/1003@ctx-0000000b;1`` -> ``Local/1003@ctx``."""
    return _SUFFIX.sub("", name)


@dataclass(slots=True)
class Channel:
    uniqueid: str
    name: str
    state: str = ""
    linkedid: str = ""
    caller: str = ""
    exten: str = ""
    context: str = ""
    bridge: str | None = None
    call_id: str | None = None  # SIP Call-ID of a PJSIP channel, fetched with Getvar

    @property
    def endpoint(self) -> str:
        return endpoint_of(self.name)

    @property
    def is_pjsip(self) -> bool:
        return self.name.startswith("PJSIP/")

    @property
    def answered(self) -> bool:
        return self.state == UP


@dataclass(slots=True)
class Bridge:
    uniqueid: str
    kind: str = ""
    members: set[str] = field(default_factory=set)


class ChannelTable:
    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        self.bridges: dict[str, Bridge] = {}
        self._bridge_peer: dict[str, str] = {}  # uniqueid -> the name its last BRIDGEPEER gave

    # -- from events ---------------------------------------------------------------------

    def apply(self, event: Mapping[str, str]) -> None:
        kind = event.get("Event", "")
        uid = event.get("Uniqueid", "")
        if kind == "Newchannel" and uid:
            self.channels[uid] = self._channel_from(event, self.channels.get(uid))
        elif kind in ("Newstate", "NewCallerid", "NewConnectedLine", "Newexten") and uid in self.channels:
            self.channels[uid] = self._channel_from(event, self.channels[uid])
        elif kind == "Rename" and uid in self.channels:
            self.channels[uid].name = event.get("Newname", self.channels[uid].name)
        elif kind == "VarSet":
            self._varset(event)
        elif kind == "Hangup":
            self._bridge_peer.pop(uid, None)
            channel = self.channels.pop(uid, None)
            if channel is not None and channel.bridge in self.bridges:
                self.bridges[channel.bridge].members.discard(uid)
        elif kind == "BridgeCreate":
            bid = event.get("BridgeUniqueid", "")
            if bid:
                self.bridges.setdefault(bid, Bridge(bid, event.get("BridgeType", "")))
        elif kind == "BridgeDestroy":
            gone = self.bridges.pop(event.get("BridgeUniqueid", ""), None)
            for member in gone.members if gone else ():
                if member in self.channels and gone and self.channels[member].bridge == gone.uniqueid:
                    self.channels[member].bridge = None
        elif kind == "BridgeEnter":
            self._enter(event)
        elif kind == "BridgeLeave":
            bid = event.get("BridgeUniqueid", "")
            if bid in self.bridges:
                self.bridges[bid].members.discard(uid)
            if uid in self.channels and self.channels[uid].bridge == bid:
                self.channels[uid].bridge = None

    def _varset(self, event: Mapping[str, str]) -> None:
        uid, variable, value = event.get("Uniqueid", ""), event.get("Variable", ""), event.get("Value", "")
        if variable == "BRIDGEPEER":
            self._bridge_peer[uid] = value
        elif variable == "BRIDGEPVTCALLID" and value:
            peer = self.by_name(self._bridge_peer.get(uid, ""))
            if peer is not None and peer.is_pjsip and peer.call_id is None:
                peer.call_id = value

    def _enter(self, event: Mapping[str, str]) -> None:
        uid = event.get("Uniqueid", "")
        bid = event.get("BridgeUniqueid", "")
        if not uid or not bid:
            return
        bridge = self.bridges.setdefault(bid, Bridge(bid, event.get("BridgeType", "")))
        channel = self.channels.get(uid)
        if channel is None:
            channel = self.channels[uid] = self._channel_from(event, None)
        if channel.bridge and channel.bridge != bid and channel.bridge in self.bridges:
            self.bridges[channel.bridge].members.discard(uid)
        channel.bridge = bid
        bridge.members.add(uid)

    @staticmethod
    def _channel_from(event: Mapping[str, str], old: Channel | None) -> Channel:
        base = old or Channel(uniqueid=event.get("Uniqueid", ""), name=event.get("Channel", ""))
        base.name = event.get("Channel", base.name) or base.name
        base.state = event.get("ChannelState", base.state)
        base.linkedid = event.get("Linkedid", base.linkedid)
        base.caller = event.get("CallerIDNum", base.caller)
        base.exten = event.get("Exten", base.exten)
        base.context = event.get("Context", base.context)
        return base

    # -- from a resync -------------------------------------------------------------------

    def load(
        self, channel_items: Iterable[Mapping[str, str]], bridge_items: Iterable[Mapping[str, str]]
    ) -> None:
        """Replace everything with a CoreShowChannels + BridgeList snapshot (known Call-IDs are kept)."""
        old = self.channels
        self.channels = {}
        self.bridges = {}
        for item in bridge_items:
            bid = item.get("BridgeUniqueid", "")
            if bid:
                self.bridges[bid] = Bridge(bid, item.get("BridgeType", ""))
        for item in channel_items:
            uid = item.get("Uniqueid", "")
            if not uid:
                continue
            channel = self._channel_from(item, None)
            previous = old.get(uid)
            if previous is not None and previous.name == channel.name:
                channel.call_id = previous.call_id
            bridge_id = item.get("BridgeId", "")
            channel.bridge = bridge_id or None
            if bridge_id:
                self.bridges.setdefault(bridge_id, Bridge(bridge_id)).members.add(uid)
            self.channels[uid] = channel

    # -- queries -------------------------------------------------------------------------

    def get(self, uniqueid: str | None) -> Channel | None:
        return None if uniqueid is None else self.channels.get(uniqueid)

    def by_name(self, name: str) -> Channel | None:
        for channel in self.channels.values():
            if channel.name == name:
                return channel
        return None

    def peers(self, uniqueid: str) -> list[Channel]:
        """The other channels in this channel's bridge."""
        channel = self.channels.get(uniqueid)
        if channel is None or channel.bridge is None or channel.bridge not in self.bridges:
            return []
        members = self.bridges[channel.bridge].members
        return [self.channels[m] for m in sorted(members) if m != uniqueid and m in self.channels]

    def resolve(self, spec: str) -> list[Channel]:
        """Channels a user may mean: the exact channel name, else the bridged channels of an endpoint."""
        exact = self.by_name(spec)
        if exact is not None:
            return [exact]
        return [c for c in self.channels.values() if c.endpoint == spec and c.bridge is not None]
