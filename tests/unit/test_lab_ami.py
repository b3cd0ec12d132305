"""AMI in scenarios: the recorder, ``[[expect.ami]]`` (the events a PBX must report) and ``[[actions.ami]]``.
No root, no lab needed (a one-shot AMI server on 127.0.3.9)."""

from __future__ import annotations

import dataclasses
import socket
import threading
from pathlib import Path

import pytest
from lab_fixtures import load_scenario

from referee_lab import ami, scenario
from referee_lab.scenario.checks.ami import AmiCheck, Expectation
from referee_lab.scenario.checks.sip import SipCheck

ATTENDED = {"Event": "AttendedTransfer", "Result": "Success", "TransferTargetChannel": "PJSIP/1003-01"}


def test_an_expectation_finds_by_match_and_passes_by_carry() -> None:
    events = [{"Event": "Newchannel"}, ATTENDED]
    want = Expectation("pbx1", (("Event", "AttendedTransfer"),), (("Result", "Success"),))
    assert want.problem(events) == ""
    fail = Expectation("pbx1", want.match, (("Result", "Fail"), ("TransferTargetChannel", "PJSIP/1003-01")))
    assert fail.problem(events) == (
        "AMI pbx1: Event: AttendedTransfer found, Result was Success; "
        "expected Result: Fail, TransferTargetChannel: PJSIP/1003-01"
    )
    assert Expectation("pbx1", (("Event", "BlindTransfer"),)).problem(events) == (
        "no AMI event on pbx1 with Event: BlindTransfer"
    )


def test_of_several_events_found_the_failure_names_the_nearest() -> None:
    failed = {"Event": "BlindTransfer", "Result": "Fail", "Extension": "1003"}
    other = {"Event": "BlindTransfer", "Result": "Fail", "Extension": "1004"}
    want = Expectation("pbx1", (("Event", "BlindTransfer"),), (("Result", "Success"), ("Extension", "1003")))
    assert want.problem([other, failed]) == (
        "AMI pbx1: Event: BlindTransfer found (2 such events, the nearest), Result was Fail; "
        "expected Result: Success, Extension: 1003"
    )
    assert want.problem([failed, {**failed, "Result": "Success"}]) == ""
    missing = Expectation("pbx1", (("Event", "BlindTransfer"),), (("TransferTargetChannel", "x"),))
    assert missing.problem([failed]).endswith(
        "TransferTargetChannel was missing; expected TransferTargetChannel: x"
    )


def test_unmet_looks_at_each_expectations_pbx() -> None:
    check = AmiCheck(expectations=(Expectation("pbx2", (("Event", "AttendedTransfer"),)),))
    assert check.unmet({"pbx1": [ATTENDED]}) == ["no AMI event on pbx2 with Event: AttendedTransfer"]
    assert check.unmet({"pbx2": [ATTENDED]}) == []


def test_scenario_toml_ami_tables(tmp_path: Path) -> None:
    tables = '[[expect.ami]]\npbx = "pbx1"\nmatch = { Event = "BlindTransfer" }\n'
    loaded = load_scenario(tmp_path, tables + 'carry = { Result = "Success", Cause = 21 }\n').check(AmiCheck)
    assert loaded is not None
    assert loaded.expectations == (
        Expectation("pbx1", (("Event", "BlindTransfer"),), (("Result", "Success"), ("Cause", "21"))),
    )
    assert loaded.unmet({"pbx1": [ATTENDED]}) == ["no AMI event on pbx1 with Event: BlindTransfer"]
    # The flat form of old (every field to find the event) says how to write it now.
    with pytest.raises(ValueError, match="takes pbx, match and carry, not Event"):
        load_scenario(tmp_path, '[[expect.ami]]\npbx = "pbx1"\nEvent = "BlindTransfer"\n')
    with pytest.raises(ValueError, match="needs `pbx` and a `match` table"):
        load_scenario(tmp_path, '[[expect.ami]]\npbx = "pbx1"\n')


def _wire(event: dict[str, str]) -> str:
    return "".join(f"{k}: {v}\r\n" for k, v in event.items()) + "\r\n"


LOGGED_IN = "Response: Success\r\nMessage: Authentication accepted\r\n\r\n"


def _one_shot_ami(reply: str) -> tuple[socket.socket, threading.Thread]:
    server = socket.create_server(("127.0.3.9", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"Asterisk Call Manager/11.0.0\r\n")
            conn.recv(4096)  # the Login action
            conn.sendall(reply.encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def test_recorder_logs_in_from_the_pbx_address_and_keeps_the_events() -> None:
    server, thread = _one_shot_ami(LOGGED_IN + _wire(ATTENDED))
    with server:
        recorder = ami.AmiRecorder("127.0.3.9", server.getsockname()[1], "referee", "secret")
        thread.join(5)
        recorder._thread.join(5)  # the server closed: the reader has everything
        assert recorder.close() == [ATTENDED]


def test_recorder_refuses_a_failed_login() -> None:
    server, thread = _one_shot_ami("Response: Error\r\nMessage: Authentication failed\r\n\r\n")
    with server, pytest.raises(RuntimeError, match="Authentication failed"):
        ami.AmiRecorder("127.0.3.9", server.getsockname()[1], "referee", "wrong")
    thread.join(5)


def test_a_value_ending_in_a_star_matches_by_prefix() -> None:
    event = {"Event": "BridgeEnter", "Channel": "PJSIP/1002-0000000a"}
    assert ami.matches(event, {"Event": "BridgeEnter", "Channel": "PJSIP/1002-*"})
    assert not ami.matches(event, {"Channel": "PJSIP/1003-*"})
    assert not ami.matches(event, {"Channel": "PJSIP/1002-"})  # no star: exact
    assert not ami.matches(event, {"BridgeNumChannels": "2"})  # a field the event lacks
    assert Expectation("pbx1", (("Channel", "PJSIP/*"),)).problem([event]) == ""


BOB_IN = {"Event": "BridgeEnter", "Channel": "PJSIP/1002-0000000a", "BridgeNumChannels": "1"}
ALICE_IN = {"Event": "BridgeEnter", "Channel": "PJSIP/pbx1-proxy-00000009", "BridgeNumChannels": "2"}
TRANSFER = ami.Action(
    pbx="pbx1",
    when=(
        (("Event", "BridgeEnter"), ("Channel", "PJSIP/1002-*")),
        (("Event", "BridgeEnter"), ("BridgeNumChannels", "2")),
    ),
    fields=(("Action", "BlindTransfer"), ("Channel", "{Channel}"), ("Exten", "09098790000")),
)


def test_an_action_waits_for_every_pattern_and_fills_in_the_first_events_fields() -> None:
    assert TRANSFER.ready([]) is None
    assert TRANSFER.ready([BOB_IN]) is None
    assert TRANSFER.ready([{"Event": "Newchannel"}, ALICE_IN]) is None
    sent = {"Action": "BlindTransfer", "Channel": "PJSIP/1002-0000000a", "Exten": "09098790000"}
    assert TRANSFER.ready([BOB_IN, ALICE_IN]) == sent
    assert TRANSFER.ready([ALICE_IN, BOB_IN]) == sent  # in any order
    with pytest.raises(KeyError):
        ami.fill({"Channel": "{DestChannel}"}, BOB_IN)


def test_action_problems_name_unsent_and_refused_actions() -> None:
    ok = ami.Sent({"Action": "BlindTransfer"}, {"Response": "Success"})
    refused = ami.Sent({"Action": "BlindTransfer"}, {"Response": "Error", "Message": "No such channel"})
    silent = ami.Sent({"Action": "Atxfer"}, {})
    assert ami.action_problems("pbx1", [ok], []) == []
    assert ami.action_problems("pbx1", [refused, silent], [TRANSFER], ["boom"]) == [
        "boom",
        "AMI action BlindTransfer on pbx1 never sent (no event Event: BridgeEnter, Channel: PJSIP/1002-* "
        "and Event: BridgeEnter, BridgeNumChannels: 2)",
        "AMI action BlindTransfer on pbx1: No such channel",
        "AMI action Atxfer on pbx1: no response",
    ]


def test_scenario_toml_actions(tmp_path: Path) -> None:
    tables = (
        '[[actions.ami]]\npbx = "pbx1"\n'
        'when = [{ Event = "BridgeEnter", Channel = "PJSIP/1002-*" }, { Event = "BridgeEnter", '
        'BridgeNumChannels = "2" }]\nAction = "BlindTransfer"\nChannel = "{Channel}"\nExten = "09098790000"\n'
        '[expect]\nno_invite_to = ["09098790000"]\n'
    )
    loaded = load_scenario(tmp_path, tables)
    assert loaded.check(AmiCheck) == AmiCheck(actions=(TRANSFER,))
    assert loaded.check(SipCheck) == SipCheck(no_invite_to=("09098790000",))
    with pytest.raises(ValueError, match="needs `when`"):
        load_scenario(tmp_path, tables.replace("when = ", "after = "))
    one = '[[actions.ami]]\npbx = "pbx1"\nwhen = { Event = "DialEnd" }\nAction = "Hangup"\n'
    assert _actions(load_scenario(tmp_path, one))[0].when == ((("Event", "DialEnd"),),)
    action = _actions(load_scenario(tmp_path, one + "delay = 0.5\n"))[0]
    assert action.delay == 0.5
    assert dict(action.fields) == {"Action": "Hangup"}


def _actions(loaded: scenario.Scenario) -> tuple[ami.Action, ...]:
    check = loaded.check(AmiCheck)
    assert check is not None
    return check.actions


@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_recorder_sends_the_action_once_its_events_came_and_keeps_the_response(delay: float) -> None:
    action = dataclasses.replace(TRANSFER, delay=delay)
    server = socket.create_server(("127.0.3.9", 0))
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"Asterisk Call Manager/11.0.0\r\n")
            conn.recv(4096)  # Login
            conn.sendall(b"Response: Success\r\nMessage: Authentication accepted\r\n\r\n")
            for event in (BOB_IN, ALICE_IN):
                conn.sendall(_wire(event).encode())
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            got.append(data)
            conn.sendall(
                b"Response: Success\r\nActionID: referee-lab-1\r\nMessage: Transfer succeeded\r\n\r\n"
            )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with server:
        recorder = ami.AmiRecorder(
            "127.0.3.9", server.getsockname()[1], "referee", "secret", actions=[action]
        )
        thread.join(5)
        recorder._thread.join(5)
        assert recorder.close() == [BOB_IN, ALICE_IN]
    assert got == [
        b"Action: BlindTransfer\r\nChannel: PJSIP/1002-0000000a\r\nExten: 09098790000\r\n"
        b"ActionID: referee-lab-1\r\n\r\n"
    ]
    assert [(s.action["Channel"], s.response["Message"]) for s in recorder.sent] == [
        ("PJSIP/1002-0000000a", "Transfer succeeded")
    ]
    assert recorder.unsent == [] and recorder.errors == []


def test_wait_for_returns_the_first_patterns_event_or_none_once_closed() -> None:
    server, thread = _one_shot_ami(LOGGED_IN + _wire(BOB_IN))
    with server:
        recorder = ami.AmiRecorder("127.0.3.9", server.getsockname()[1], "referee", "secret")
        thread.join(5)
        assert recorder.wait_for([{"Channel": "PJSIP/1002-*"}], 5) == BOB_IN
        # the server closed: nothing more can come, so no waiting out the timeout
        assert recorder.wait_for([{"Channel": "PJSIP/1002-*"}, {"BridgeNumChannels": "2"}], 60) is None
        recorder.close()
