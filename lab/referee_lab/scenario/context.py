"""What the runner hands every check: the lab, the run's folder, and what the run observed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from referee.events import Event
from referee.orchestrator.amitext import AmiMessage
from referee_lab import ami, chroot, ladder
from referee_lab.scenario import proxy_log
from referee_lab.scenario.model import Scenario
from referee_lab.topology import Topology


@dataclass
class Run:
    """One run of a scenario.

    Before the phones: ``events_start``, where the proxy's event file ended. After them, for
    ``problems``/``notes``: ``messages`` (the SIP capture), ``proxy_events`` (this run's lines of the
    proxy's event file) and ``ami_events`` (per PBX, every event its AMI reported while connected).
    """

    scenario: Scenario
    topo: Topology
    state: chroot.LabState
    out_dir: Path
    events_start: proxy_log.Position = (0, 0)
    messages: list[ladder.Message] = field(default_factory=list)
    proxy_events: list[Event] = field(default_factory=list)
    ami_events: dict[str, list[AmiMessage]] = field(default_factory=dict)
    recorders: dict[str, ami.AmiRecorder] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return Path(self.state.rootfs)

    @property
    def pcap(self) -> Path:
        """The run's capture (tcpdump writes it packet by packet: checks may read it during the run)."""
        return self.out_dir / f"{self.scenario.name}.pcap"

    @property
    def events_file(self) -> Path:
        return proxy_log.path_in(self.root)

    def ami(self, pbx: str) -> ami.AmiRecorder:
        """The PBX's AMI connection, logged in on first use (every check shares it)."""
        if pbx not in self.recorders:
            node = next((p for p in self.topo.pbxs if p.name == pbx), None)
            if node is None:
                raise ValueError(f"scenario {self.scenario.name}: unknown PBX {pbx}")
            self.recorders[pbx] = ami.AmiRecorder(
                node.address, node.ami_port, self.topo.ami_user, self.topo.ami_secret
            )
        return self.recorders[pbx]

    def close_ami(self) -> None:
        for name, recorder in self.recorders.items():
            self.ami_events[name] = recorder.close()

    def track(self, name: str, pid: int) -> None:
        """A process started outside the chroot: recorded, so that `lab down` stops it if we die."""
        self.state.pids[name] = pid
        self.state.save()

    def untrack(self, name: str) -> None:
        self.state.pids.pop(name, None)
        self.state.save()
