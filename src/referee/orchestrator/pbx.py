"""One PBX's AMI connection (panoramisk), feeding its tracker.

On every login (the first and each reconnect) the link resynchronises: ``CoreShowChannels``
and ``BridgeList`` rebuild the channel table (events that arrive meanwhile are replayed over
the snapshot), then the SIP Call-ID of every PJSIP channel is
fetched with ``Getvar CHANNEL(pjsip,call-id)`` (new PJSIP channels get theirs on
``Newchannel``). Until the resync is done the link is not ``ready`` and operations on this
PBX are refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from panoramisk import Manager

from referee.orchestrator.amitext import AmiMessage, normalize
from referee.orchestrator.tracker import Tracker

log = logging.getLogger(__name__)

CALL_ID_VARIABLE = "CHANNEL(pjsip,call-id)"


class PbxUnavailable(Exception):
    """The PBX is not connected (or not resynchronised yet), or it did not answer in time."""


@dataclass(frozen=True)
class PbxConfig:
    name: str
    host: str
    port: int
    username: str
    secret: str
    source: str | None = None  # local address to connect from, for an AMI permit= that needs it

    def __repr__(self) -> str:  # never print the secret
        return f"PbxConfig({self.name!r}, {self.host}:{self.port}, user {self.username!r})"


class _Manager(Manager):  # type: ignore[misc]  # panoramisk is untyped
    """panoramisk's Manager, connecting from ``local_addr`` when one is given."""

    def connect(self, run_forever: bool = False, on_startup: Any = None, on_shutdown: Any = None) -> Any:
        local = self.config.get("local_addr")
        if local is None or run_forever:
            return super().connect(run_forever, on_startup, on_shutdown)
        task = asyncio.ensure_future(
            self.loop.create_connection(
                self.config["protocol_factory"],
                self.config["host"],
                self.config["port"],
                ssl=self.config["ssl"],
                local_addr=(local, 0),
            )
        )
        task.add_done_callback(self.connection_made)
        return task


class PbxLink:
    def __init__(
        self,
        config: PbxConfig,
        tracker: Tracker,
        *,
        action_timeout: float = 10.0,
        reconnect_timeout: int = 2,
        ping_delay: int = 10,
        heartbeat: float = 2.0,
    ) -> None:
        self.config = config
        self.tracker = tracker
        self.action_timeout = action_timeout
        self.heartbeat = heartbeat
        self.ready = False
        self.last_heard: float | None = None  # monotonic time the PBX last sent anything
        self.resyncs = 0
        self._replay: list[AmiMessage] | None = None  # events seen while a resync runs
        self._resynced = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self.manager = _Manager(
            local_addr=config.source,
            host=config.host,
            port=config.port,
            username=config.username,
            secret=config.secret,
            ping_delay=ping_delay,
            ping_interval=ping_delay,
            reconnect_timeout=reconnect_timeout,
            on_login=self._on_login,
            on_disconnect=self._on_disconnect,
            loop=asyncio.get_running_loop(),
        )
        self.manager.register_event("*", self._on_event)

    @property
    def name(self) -> str:
        return self.config.name

    def start(self) -> None:
        self.manager.connect()
        self._spawn(self._beat())

    def heard_within(self, seconds: float) -> bool:
        """Whether the link is ready and the PBX answered or sent something in the last ``seconds``: a PBX
        frozen (SIGSTOP, a hung process) keeps its TCP connection up but says nothing."""
        heard = self.last_heard
        return self.ready and heard is not None and asyncio.get_running_loop().time() - heard <= seconds

    def silence(self) -> float | None:
        """Seconds since the PBX last sent anything; None before it ever did."""
        heard = self.last_heard
        return None if heard is None else asyncio.get_running_loop().time() - heard

    def _heard(self) -> None:
        self.last_heard = asyncio.get_running_loop().time()

    async def _beat(self) -> None:
        """An AMI Ping every ``heartbeat`` seconds while ready: its answer is what /ready reads."""
        while True:
            await asyncio.sleep(self.heartbeat)
            if not self.ready:
                continue
            try:
                answer = await asyncio.wait_for(
                    self.manager.send_action({"Action": "Ping"}, as_list=False), self.heartbeat * 2
                )
            except TimeoutError:
                log.warning("AMI %s: no answer to Ping within %g s", self.name, self.heartbeat * 2)
                continue
            except Exception as exc:  # a lost connection: panoramisk reconnects, _on_disconnect says so
                log.info("AMI %s: Ping failed: %s", self.name, exc)
                continue
            if normalize(answer).get("Response") == "Success":
                self._heard()

    def close(self) -> None:
        self.ready = False
        for task in list(self._tasks):
            task.cancel()
        self.manager.close()
        # panoramisk reconnects on connection_lost; a closed link must stay closed.
        self.manager.reconnect_timeout = 10**9
        self.manager.connection_lost = lambda exc: None

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- panoramisk callbacks -------------------------------------------------------------

    def _on_login(self, manager: Manager) -> None:
        log.info("AMI %s: logged in, resynchronising", self.name)
        self._spawn(self._resync())

    def _on_disconnect(self, manager: Manager, exc: object) -> None:
        log.warning("AMI %s: connection lost (%s)", self.name, exc)
        self.ready = False

    def _on_event(self, manager: Manager, message: Mapping[str, Any]) -> None:
        self._heard()
        event = normalize(message)
        if self._replay is not None:
            self._replay.append(event)
        try:
            self.tracker.handle(event)
        except Exception:  # one odd event must not take the daemon down
            log.exception("AMI %s: event %s not handled", self.name, event.get("Event"))
            return
        if event.get("Event") == "Newchannel" and event.get("Channel", "").startswith("PJSIP/"):
            self._spawn(self._fetch_call_id(event.get("Uniqueid", ""), event["Channel"]))

    async def wait_resynced(self, count: int = 1) -> None:
        """Wait until ``count`` resyncs (logins) have completed."""
        async with self._resynced:
            await self._resynced.wait_for(lambda: self.resyncs >= count)

    # -- actions --------------------------------------------------------------------------

    async def action(self, fields: Mapping[str, str]) -> AmiMessage:
        """Send one action; its (first) response."""
        if not self.ready:
            raise PbxUnavailable(f"PBX {self.name} is not connected")
        return (await self._send(fields, as_list=False))[0]

    async def _send(self, fields: Mapping[str, str], *, as_list: bool | None = False) -> list[AmiMessage]:
        """``as_list=False``: one response. panoramisk guesses otherwise, and its guess for an answer
        ending in "successfully queued" (Atxfer's) raises KeyError without an ``Async`` header,
        which drops the connection. ``None`` lets it follow ``EventList: start`` for list actions."""
        try:
            result = await asyncio.wait_for(
                self.manager.send_action(dict(fields), as_list=as_list), self.action_timeout
            )
        except TimeoutError:
            raise PbxUnavailable(f"PBX {self.name} did not answer {fields.get('Action')}") from None
        messages = result if isinstance(result, list) else [result]
        return [normalize(m) for m in messages]

    async def _list(self, action: str, item: str) -> list[AmiMessage]:
        messages = await self._send({"Action": action}, as_list=None)
        if messages and messages[0].get("Response") == "Error":
            raise PbxUnavailable(f"PBX {self.name} refused {action}: {messages[0].get('Message', '')}")
        return [m for m in messages if m.get("Event") == item]

    async def _resync(self) -> None:
        self._replay = []
        try:
            channels = await self._list("CoreShowChannels", "CoreShowChannel")
            bridges = await self._list("BridgeList", "BridgeListItem")
        except PbxUnavailable as exc:
            log.error("AMI %s: resync failed: %s", self.name, exc)
            return
        finally:
            replay, self._replay = self._replay, None
        # The snapshot is older than the events that came while it was taken: replay them over it.
        self.tracker.resync(channels, bridges, replay=replay)
        for channel in self.tracker.channels():
            if channel.is_pjsip and channel.call_id is None:
                await self._fetch_call_id(channel.uniqueid, channel.name)
        self.ready = True
        self._heard()
        async with self._resynced:
            self.resyncs += 1
            self._resynced.notify_all()
        log.info("AMI %s: ready, %d channel(s), %d bridge(s)", self.name, len(channels), len(bridges))

    async def _fetch_call_id(self, uniqueid: str, name: str) -> None:
        try:
            (answer,) = (
                await self._send({"Action": "Getvar", "Channel": name, "Variable": CALL_ID_VARIABLE})
            )[:1]
        except (PbxUnavailable, ValueError):
            return
        value = answer.get("Value", "")
        channel = self.tracker.table.get(uniqueid)
        if answer.get("Response") == "Success" and value and channel is not None:
            channel.call_id = value
