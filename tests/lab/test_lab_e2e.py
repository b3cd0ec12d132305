"""End to end: the chroot lab with real Kamailio and real Asterisk 22, as `make test` runs it.

Builds or reuses the sid rootfs, provisions it twice with ansible/site.yml (the second run must report
changed=0), starts the daemons, runs the basic_call scenario, and tears everything down, checking that no
bind mount and no process is left.

Never skipped: without root, debootstrap, chroot or tcpdump the tests fail (`make test` installs them, and
CI runs as root).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from referee_lab import chroot, ladder, rootfs, scenario, services, topology
from referee_lab.services import UpReport

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]


def test_rootfs_has_asterisk_22_and_kamailio_6(lab: object) -> None:
    root = rootfs.rootfs_path()
    ast = subprocess.run(["chroot", str(root), "asterisk", "-V"], capture_output=True, text=True, check=True)
    kam = subprocess.run(["chroot", str(root), "kamailio", "-v"], capture_output=True, text=True, check=True)
    assert ast.stdout.startswith("Asterisk 22."), ast.stdout
    assert "kamailio 6." in kam.stdout, kam.stdout


def test_second_provisioning_changes_nothing(lab: object) -> None:
    assert isinstance(lab, UpReport)
    first, second = lab.provision
    assert first.failed == 0
    assert second.changed == 0, f"not idempotent; see {second.log}"


def test_daemons_are_listening_on_the_lab_addresses(lab: object) -> None:
    state = chroot.LabState.load()
    assert state is not None
    # The daemons in the chroot, and the audit trail's hosts: PostgreSQL, the proxy's ingest, one
    # orchestrator per PBX (referee_lab.hosts).
    assert set(state.pids) == {
        "kamailio", "pbx1", "pbx2", "fastagi-pbx1", "fastagi-pbx2",
        "postgres", "ingest-proxy", "orchestrator-pbx1", "orchestrator-pbx2",
    }  # fmt: skip
    assert all(chroot.alive(pid) for pid in state.pids.values())
    topo = topology.load()
    bound = services._udp_bound()
    assert (topo.proxy_address, 5060) in bound
    assert {(p.address, 5060) for p in topo.pbxs} <= bound


def test_basic_call_through_kamailio_and_asterisk(lab: object) -> None:
    state = chroot.LabState.load()
    assert state is not None
    topo = topology.load()
    result = scenario.run(scenario.load(REPO / "tests" / "scenarios" / "basic_call"), state, topo)
    print(result.ladder_text)
    assert result.passed, result.error
    assert result.pcap.stat().st_size > 0
    assert result.svg.read_text().startswith("<svg")

    messages = ladder.read_pcap(result.pcap, topo.node_names())
    arrows = [(m.src, m.dst, m.label) for m in messages]
    # alice -> proxy -> pbx1 (B2BUA) -> proxy -> bob, answered, and the BYE crosses pbx1 to bob.
    assert ("alice", "proxy", "INVITE") in arrows
    assert ("proxy", "pbx1", "INVITE") in arrows
    assert ("pbx1", "proxy", "INVITE") in arrows
    assert ("proxy", "bob", "INVITE") in arrows
    assert ("bob", "proxy", "200 OK (INVITE)") in arrows
    assert ("proxy", "alice", "200 OK (INVITE)") in arrows
    assert ("alice", "proxy", "BYE") in arrows
    assert ("proxy", "bob", "BYE") in arrows
    assert ("proxy", "alice", "401 Unauthorized (REGISTER)") in arrows


def test_spoofed_identity_is_challenged_refused_and_reaches_no_pbx(lab: object) -> None:
    """Issue 9: an INVITE or REFER claiming another phone gets 407, then 403, and no PBX sees it."""
    state = chroot.LabState.load()
    assert state is not None
    topo = topology.load()
    result = scenario.run(scenario.load(REPO / "tests" / "scenarios" / "spoofed_identity"), state, topo)
    print(result.ladder_text)
    assert result.passed, result.error

    messages = ladder.read_pcap(result.pcap, topo.node_names())
    spoofed = {m.call_id for m in messages if m.src == "carol" and m.label in ("INVITE", "REFER")}
    assert len(spoofed) == 1
    ours = [(m.src, m.dst, m.label) for m in messages if m.call_id in spoofed]

    def answered(status: int, reason: str, method: str) -> int:
        label = f"{status} {reason[:20]}".strip() + f" ({method})"  # the ladder cuts reasons at 20 characters
        return ours.count(("proxy", "carol", label))

    assert answered(407, "Proxy Authentication Required", "INVITE") == 1
    assert answered(403, "From Does Not Match Credentials", "INVITE") == 1
    assert answered(407, "Proxy Authentication Required", "REFER") == 2
    assert answered(403, "From Does Not Match Credentials", "REFER") == 1
    assert answered(403, "Out-Of-Dialog REFER Not Accepted", "REFER") == 1
    assert [hop for hop in ours if {"pbx1", "pbx2"} & set(hop[:2])] == []


@pytest.mark.parametrize(
    "name", [s.name for s in scenario.discover() if s.name not in ("basic_call", "spoofed_identity")]
)
def test_every_other_scenario_passes(lab: object, name: str) -> None:
    """Whatever else tests/scenarios/ holds (blind_transfer, ...), as `make demo` runs it."""
    state = chroot.LabState.load()
    assert state is not None
    result = scenario.run(scenario.load(REPO / "tests" / "scenarios" / name), state, topology.load())
    print(result.ladder_text, *result.notes, sep="\n")
    assert result.passed, result.error


def _ami_session(address: str, port: int, user: str, secret: str, actions: list[dict[str, str]]) -> list[str]:
    """Log in as ``user`` and send ``actions``; the Message of each answer (Response: Error only)."""
    # From the PBX's own address: the AMI user's permit= lets in no other.
    with socket.create_connection((address, port), timeout=5, source_address=(address, 0)) as sock:
        sock.settimeout(5)
        reader = sock.makefile("rb")
        reader.readline()  # the banner
        answers: list[str] = []
        for number, fields in enumerate([{"Action": "Login", "Username": user, "Secret": secret}, *actions]):
            message = {**fields, "ActionID": f"priv-{number}"}
            sock.sendall(("".join(f"{k}: {v}\r\n" for k, v in message.items()) + "\r\n").encode())
            while True:  # skip events until the answer to this action
                block: dict[str, str] = {}
                while (raw := reader.readline()) != b"\r\n":
                    assert raw, f"the AMI closed the connection before answering {message['Action']}"
                    key, _, value = raw.decode().rstrip("\r\n").partition(": ")
                    block.setdefault(key, value)
                if block.get("ActionID") == message["ActionID"] and "Response" in block:
                    break
            if number == 0:
                assert block["Response"] == "Success", f"login as {user} failed: {block}"
                continue
            answers.append(block["Message"] if block["Response"] == "Error" else block["Response"])
        return answers


def test_ami_user_can_run_the_orchestrator_but_not_commands(lab: object) -> None:
    """The role's AMI user: every action the orchestrator sends is permitted (they fail only for want of the
    channel), Originate (Application System is a shell) and Command are refused."""
    topo = topology.load()
    pbx = topo.pbxs[0]
    missing = "PJSIP/nobody-00000000"
    allowed = [
        {"Action": "BlindTransfer", "Channel": missing, "Exten": "1003", "Context": "referee-transfer"},
        {"Action": "Atxfer", "Channel": missing, "Exten": "1003", "Context": "referee-transfer"},
        {"Action": "CancelAtxfer", "Channel": missing},
        {"Action": "Hangup", "Channel": missing, "Cause": "16"},
        {"Action": "Getvar", "Channel": missing, "Variable": "CHANNEL(name)"},
        {"Action": "CoreShowChannels"},
        {"Action": "BridgeList"},
    ]
    refused = [
        {
            "Action": "Originate",
            "Channel": "Local/1003@referee-transfer",
            "Application": "System",
            "Data": "id",
        },
        {"Action": "Command", "Command": "core show version"},
    ]
    answers = _ami_session(pbx.address, pbx.ami_port, topo.ami_user, topo.ami_secret, allowed + refused)
    for action, answer in zip(allowed, answers[: len(allowed)], strict=True):
        assert answer != "Permission denied", f"{action['Action']} refused to the orchestrator's AMI user"
    assert answers[len(allowed) :] == ["Permission denied", "Permission denied"], answers


def test_lab_info_json_names_topology_and_credentials() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "referee_lab", "info", "--json"], capture_output=True, text=True, check=True
    )
    info = json.loads(done.stdout)
    assert info["proxy"]["address"] == "127.0.0.10"
    assert [p["address"] for p in info["pbxs"]] == ["127.0.0.20", "127.0.0.21"]
    phones = {p["name"]: p for p in info["phones"]}
    assert phones["dave"]["user"] == "2001" and phones["dave"]["pbx"] == "pbx2"
    assert phones["alice"]["password"]
    assert info["ami"]["user"] and info["ami"]["secret"]
