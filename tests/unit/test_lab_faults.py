"""The faults check plug-in (``[[faults]]``): loading, its triggers (the capture, the proxy's events), the
phones it holds back, and the lab it leaves whole. No root, no lab: a fake stands in for the daemons."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw
from scapy.utils import wrpcap

from referee.events import PbxHealth, to_json
from referee_lab import chroot, scenario, topology
from referee_lab.scenario.checks import Gate, faults
from referee_lab.scenario.checks.faults import FaultsCheck, Hop
from referee_lab.scenario.context import Run

PROXY, PBX1, ALICE = "127.0.0.10", "127.0.0.20", "127.0.0.31"

DIES = """
[[faults]]
node = "pbx1"
action = "kill"
after_sip = ["pbx1>proxy 202"]
until = "down"
release = ["alice_again"]

[[faults]]
node = "pbx1"
action = "start"
after_sip = ["proxy>alice 503"]
until = "up"
release = ["carol"]
"""


@dataclass
class FakeNodes:
    """The lab's daemons as the faults check sees them: what it did, in order."""

    did: list[str] = field(default_factory=list)
    down: set[str] = field(default_factory=set)
    fail_start: bool = False

    def kill(self, node: str) -> int:
        self.did.append(f"kill {node}")
        self.down.add(node)
        return 100

    def start(self, node: str) -> int:
        self.did.append(f"start {node}")
        if self.fail_start:
            raise RuntimeError(f"{node} exited with 1")
        self.down.discard(node)
        return 200

    def running(self, node: str) -> bool:
        return node not in self.down


def _scenario(folder: Path, tables: str) -> scenario.Scenario:
    """bob and alice, then alice_again (alice on another port) and carol, held back by ``tables``."""
    phones = ""
    for name, role in (("bob", "bob"), ("alice", "alice"), ("alice_again", "alice"), ("carol", "carol")):
        (folder / f"{name}.xml").write_text("<scenario/>")
        phones += f'[[phones]]\nrole = "{role}"\n' + (
            f'file = "{name}"\nport = 5062\n' if name != role else ""
        )
    (folder / "scenario.toml").write_text(phones + tables)
    return scenario.load(folder)


def _run(tmp_path: Path, tables: str = DIES) -> tuple[Run, FaultsCheck, FakeNodes]:
    loaded = _scenario(tmp_path, tables)
    run = Run(loaded, topology.load(), chroot.LabState(rootfs=str(tmp_path)), tmp_path)
    check = loaded.check(FaultsCheck)
    assert check is not None
    nodes = FakeNodes()
    check.nodes_for = lambda _run: nodes
    run.events_file.parent.mkdir(parents=True)
    run.events_file.write_text("")
    return run, check, nodes


def _capture(run: Run, *lines: tuple[str, str, str]) -> None:
    """The run's capture so far: (src, dst, first line and CSeq of a SIP message)."""
    packets = []
    for src, dst, text in lines:
        pkt = IP(src=src, dst=dst) / UDP(sport=5060, dport=5060) / Raw((text + "\r\n\r\n").encode())
        packets.append(pkt)
    wrpcap(str(run.pcap), packets)


def _health(run: Run, pbx: str, up: bool) -> None:
    with run.events_file.open("a") as f:
        f.write(to_json(PbxHealth(time=1.0, pbx=pbx, uri=f"sip:{PBX1}:5060", up=up)) + "\n")


def _until(did: list[str], count: int) -> None:
    """Wait until the fake saw ``count`` actions: the faults thread did them before the phones ended."""
    deadline = time.monotonic() + 5
    while len(did) < count and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "POLL", 0.01)


def test_faults_tables_choose_the_check_and_are_read_in_order(tmp_path: Path) -> None:
    loaded = _scenario(tmp_path, DIES)
    check = loaded.check(FaultsCheck)
    assert check is not None and isinstance(check, Gate)
    kill, start = check.faults
    assert (kill.node, kill.action, kill.after_sip, kill.until) == (
        "pbx1",
        "kill",
        (Hop("pbx1", "proxy", "202"),),
        "down",
    )
    assert (start.action, start.release, start.trigger()) == ("start", ("carol",), "proxy>alice 503")
    assert _scenario(tmp_path, "").check(FaultsCheck) is None


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('node = "pbx3"\naction = "kill"\n', "node must be one of proxy, pbx1, pbx2"),
        ('node = "pbx1"\naction = "explode"\n', "action must be one of kill, start, restart"),
        ('node = "proxy"\naction = "kill"\nuntil = "down"\n', "until is down or up, for a PBX"),
        ('node = "pbx1"\naction = "kill"\nuntil = "dead"\n', "until is down or up, for a PBX"),
        ('node = "pbx1"\naction = "kill"\nrelease = ["dave"]\n', "releases no phone of the file: dave"),
        ('node = "pbx1"\naction = "kill"\nafter_sip = ["pbx1 202"]\n', 'takes "SRC>DST WHAT"'),
        ('node = "pbx1"\naction = "kill"\nwhen = "now"\n', "does not know when"),
        ('node = "pbx1"\naction = "kill"\nafter_ami = { when = { Event = "Hangup" } }\n', "needs a pbx"),
    ],
)
def test_a_fault_the_check_cannot_do_fails_the_load(tmp_path: Path, table: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        _scenario(tmp_path, "[[faults]]\n" + table)


def test_a_hop_matches_the_start_of_a_label_word_by_word() -> None:
    from referee_lab.ladder import Message  # noqa: PLC0415

    accepted = Message(1.0, "pbx1", "proxy", "202 Accepted (REFER)", False)
    assert Hop("pbx1", "proxy", "202").seen([accepted])
    assert Hop("pbx1", "proxy", "202 Accepted (REFER)").seen([accepted])
    assert not Hop("pbx1", "proxy", "20").seen([accepted])
    assert not Hop("proxy", "pbx1", "202").seen([accepted])


def test_the_faults_wait_for_their_trigger_and_release_the_phones_they_hold(tmp_path: Path) -> None:
    run, check, nodes = _run(tmp_path)
    check.start(run)
    assert check.hold(run, "bob", 0) == ""  # no fault holds it
    # Nothing captured yet: alice_again is held back.
    assert check.hold(run, "alice_again", 0.2) == "no fault released it within 0 s"
    assert nodes.did == []
    _capture(run, (PBX1, PROXY, "SIP/2.0 202 Accepted\r\nCSeq: 1 REFER"))
    # pbx1 is killed, but the phone waits until the proxy reports it down.
    assert check.hold(run, "alice_again", 0.3) != ""
    assert nodes.did == ["kill pbx1"]
    _health(run, "pbx2", False)  # another PBX does not count
    _health(run, "pbx1", True)  # nor does an up
    assert check.hold(run, "alice_again", 0.2) != ""
    _health(run, "pbx1", False)
    assert check.hold(run, "alice_again", 5) == ""
    # The second fault: after the proxy's 503 to alice, start pbx1, until the proxy says it is up.
    _capture(
        run,
        (PBX1, PROXY, "SIP/2.0 202 Accepted\r\nCSeq: 1 REFER"),
        (PROXY, ALICE, "SIP/2.0 503 Service Unavailable\r\nCSeq: 2 INVITE"),
    )
    assert check.hold(run, "carol", 0.3) != ""
    assert nodes.did == ["kill pbx1", "start pbx1"]
    _health(run, "pbx1", True)
    assert check.hold(run, "carol", 5) == ""
    check.stop(run)
    assert nodes.did == ["kill pbx1", "start pbx1"]  # pbx1 runs: nothing to bring back
    assert check.problems(run) == []
    notes = check.notes(run)
    assert notes[0].startswith("fault: pbx1 killed (pid 100) at ")
    assert notes[0].endswith(" s, after pbx1>proxy 202")
    assert notes[1].startswith("fault: the proxy reported pbx1 down ")
    assert "fault: released alice_again" in notes and "fault: released carol" in notes


def test_a_fault_whose_trigger_never_came_is_a_problem_and_its_phones_never_start(tmp_path: Path) -> None:
    run, check, nodes = _run(tmp_path)
    check.start(run)
    _capture(run, (PBX1, PROXY, "SIP/2.0 200 OK\r\nCSeq: 1 INVITE"))
    check.stop(run)  # the phones ended before pbx1 answered a REFER
    assert nodes.did == []
    assert check.problems(run) == ["fault 1 (kill pbx1): not done, the phones ended first"]
    assert check.hold(run, "alice_again", 1) == "fault 1 (kill pbx1) was not done"
    assert check.hold(run, "carol", 1) == "fault 1 (kill pbx1) was not done"


def test_a_node_the_run_left_down_is_started_again_once_the_phones_are_done(tmp_path: Path) -> None:
    run, check, nodes = _run(tmp_path, '[[faults]]\nnode = "proxy"\naction = "kill"\n')
    check.start(run)
    _until(nodes.did, 1)
    check.stop(run)
    assert nodes.did == ["kill proxy", "start proxy"]
    assert check.problems(run) == []
    assert check.notes(run)[-1] == "faults: proxy left down by the run, started again (pid 200)"


def test_a_node_that_does_not_start_is_a_problem_and_stops_the_faults(tmp_path: Path) -> None:
    run, check, nodes = _run(tmp_path, '[[faults]]\nnode = "pbx1"\naction = "restart"\nrelease = ["carol"]\n')
    nodes.fail_start = True
    check.start(run)
    assert check.hold(run, "carol", 5) == "fault 1 (restart pbx1) was not done"
    check.stop(run)
    assert nodes.did == ["kill pbx1", "start pbx1", "start pbx1"]
    assert check.problems(run) == [
        "fault 1 (restart pbx1): pbx1 exited with 1",
        "faults: pbx1 left down, and it did not start again: pbx1 exited with 1",
    ]


@pytest.mark.parametrize(
    ("captured", "problems"),
    [
        (
            "REFER sip:1001@lab.test SIP/2.0\r\nCSeq: 2 REFER",
            ["fault 1 (restart proxy): too late: bob>proxy REFER already captured"],
        ),
        ("SIP/2.0 200 OK\r\nCSeq: 1 INVITE", []),
    ],
)
def test_a_fault_must_come_before_what_it_is_to_disturb(
    tmp_path: Path, captured: str, problems: list[str]
) -> None:
    tables = '[[faults]]\nnode = "proxy"\naction = "restart"\nbefore_sip = ["bob>proxy REFER"]\n'
    run, check, nodes = _run(tmp_path, tables)
    _capture(run, ("127.0.0.32", PROXY, captured))
    check.start(run)
    _until(nodes.did, 1 if problems else 2)
    check.stop(run)
    assert check.problems(run) == problems
    assert nodes.did == ["kill proxy", "start proxy"]  # a fault too late: killed, brought back by stop()


def test_the_fault_scenarios_choose_the_faults_check() -> None:
    found = {s.name: s for s in scenario.discover()}
    for name in ("attended_after_proxy_restart", "blind_after_proxy_restart", "pbx_dies_mid_transfer"):
        check = found[name].check(FaultsCheck)
        assert check is not None, name
    dies = found["pbx_dies_mid_transfer"].check(FaultsCheck)
    assert dies is not None
    assert [(f.action, f.node, f.until, f.release) for f in dies.faults] == [
        ("kill", "pbx1", "down", ("alice_again",)),
        ("start", "pbx1", "up", ("carol_again",)),
    ]
