"""A fake AMI (real TCP, on 127.0.3.x) with a real panoramisk link and an orchestrator around it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from ami_traces import text

from referee.audit import open_store
from referee.audit.store import AuditStore
from referee.orchestrator.amitext import AmiMessage
from referee.orchestrator.operations import Orchestrator
from referee.orchestrator.pbx import PbxConfig, PbxLink
from referee.orchestrator.tracker import Tracker
from referee.testing.fake_ami import FakeAmi, success

CALL_IDS = {"PJSIP/1001-00000000": "alice-dialog@127.0.0.31", "PJSIP/1002-00000001": "bob-dialog@127.0.0.32"}


def getvar(action: AmiMessage) -> str:
    value = CALL_IDS.get(action.get("Channel", ""), "")
    return (
        f"Response: Success\nActionID: {{ActionID}}\nVariable: {action.get('Variable')}\nValue: {value}\n\n"
        if value
        else "Response: Error\nActionID: {ActionID}\nMessage: No such channel\n\n"
    )


@dataclass
class Rig:
    ami: FakeAmi
    link: PbxLink
    tracker: Tracker
    orchestrator: Orchestrator
    store: AuditStore

    async def push(self, name: str) -> None:
        """Send a trace file's events, and wait until the link has handled them."""
        await self.ami.push(text(name))
        await self.barrier()

    async def barrier(self) -> None:
        # AMI is one ordered stream: once a later action's answer is back, the events before it were handled.
        await self.link._send({"Action": "Ping"})


async def make_rig(tmp_path: Path, host: str = "127.0.3.1", source: str | None = None) -> Rig:
    ami = FakeAmi(host=host)
    ami.answers.update(
        {
            "CoreShowChannels": text("core_show_channels.txt"),
            "BridgeList": text("bridge_list.txt"),
            "Getvar": getvar,
            "BlindTransfer": success("Transfer succeeded"),
            "Atxfer": success("Atxfer successfully queued"),  # what Asterisk answers; panoramisk choked on it
            "Hangup": success("Channel Hungup"),
            "CancelAtxfer": success("Atxfer cancelled"),
        }
    )
    await ami.start()
    store = open_store(str(tmp_path / "audit.db"))
    tracker = Tracker("pbx1", store)
    config = PbxConfig("pbx1", host, ami.port, "referee", "secret", source)
    link = PbxLink(config, tracker, reconnect_timeout=0)
    orchestrator = Orchestrator(store)
    orchestrator.add_pbx("pbx1", tracker, link)
    return Rig(ami, link, tracker, orchestrator, store)


def run(test: Callable[[Rig], Awaitable[None]], tmp_path: Path, *, connect: bool = True) -> None:
    async def main() -> None:
        rig = await make_rig(tmp_path)
        try:
            if connect:
                rig.link.start()
                await rig.link.wait_resynced()
            await test(rig)
        finally:
            rig.link.close()
            await rig.ami.close()

    asyncio.run(asyncio.wait_for(main(), 30))  # a guard against hanging, not a timed assertion
