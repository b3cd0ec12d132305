"""``[[expect.ami]]``: the events a PBX must report during a scenario. No root, no lab needed."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from referee.lab import ami, scenario

ATTENDED = {"Event": "AttendedTransfer", "Result": "Success", "TransferTargetChannel": "PJSIP/1003-01"}


def test_unmet_names_the_expectations_no_event_matches() -> None:
    events = {"pbx1": [{"Event": "Newchannel"}, ATTENDED]}
    want = {"pbx": "pbx1", "Event": "AttendedTransfer", "Result": "Success"}
    assert ami.unmet([want], events) == []
    assert ami.unmet([{**want, "Result": "Fail"}], events) == [
        "no AMI event on pbx1 with Event: AttendedTransfer, Result: Fail"
    ]
    assert ami.unmet([{**want, "pbx": "pbx2"}], events) == [
        "no AMI event on pbx2 with Event: AttendedTransfer, Result: Success"
    ]


def test_scenario_toml_ami_tables(tmp_path: Path) -> None:
    (tmp_path / "bob.xml").write_text("<scenario/>")
    (tmp_path / "scenario.toml").write_text(
        '[[phones]]\nrole = "bob"\n[[expect.ami]]\npbx = "pbx1"\nEvent = "BlindTransfer"\nResult = "Success"\n'
    )
    loaded = scenario.load(tmp_path)
    assert loaded.expect.ami == ((("pbx", "pbx1"), ("Event", "BlindTransfer"), ("Result", "Success")),)
    assert scenario._check(loaded.expect, [], [], {"pbx1": [ATTENDED]}) == [
        "no AMI event on pbx1 with Event: BlindTransfer, Result: Success"
    ]


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
    event = "".join(f"{k}: {v}\r\n" for k, v in ATTENDED.items()) + "\r\n"
    server, thread = _one_shot_ami("Response: Success\r\nMessage: Authentication accepted\r\n\r\n" + event)
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
