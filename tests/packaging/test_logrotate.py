"""The packaged logrotate rule against the proxy's real event writer (referee.kemi.event_log).

logrotate renames events.jsonl and creates a new one; the writer, which looks at the file's inode
at most once a second, writes the lines of that second to the renamed file and then reopens the
name. Nothing is lost, and delaycompress keeps the renamed file uncompressed until the next rotation.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
from pathlib import Path

from referee.assets import path
from referee.events import ReferResponse
from referee.kemi.event_log import EventLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _rule_for(events: Path) -> str:
    """The packaged rule, for a file in a temporary folder and owned by whoever runs the test."""
    text = path("logrotate/referee").read_text()
    assert "/var/log/referee/events.jsonl {" in text
    assert "create 0640 kamailio kamailio" in text
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    text = text.replace("/var/log/referee/events.jsonl", str(events))
    return text.replace("create 0640 kamailio kamailio", f"create 0640 {user} {group}")


def _rotate(config: Path, state: Path) -> None:
    done = subprocess.run(
        ["logrotate", "--force", "--state", str(state), str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _cseqs(file: Path) -> list[int]:
    return [json.loads(line)["cseq"] for line in file.read_text().splitlines()]


def test_the_writer_survives_two_rotations(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    config = tmp_path / "referee.logrotate"
    config.write_text(_rule_for(events))
    mono = Clock()
    log = EventLog(str(events), clock=lambda: 1.0, monotonic=mono)

    def write(cseq: int) -> None:
        log.write(ReferResponse(1.0, "c1", cseq, 202))

    write(1)
    _rotate(config, tmp_path / "state")
    assert events.stat().st_size == 0 and oct(events.stat().st_mode & 0o777) == "0o640"  # created anew
    write(2)  # within the second: the renamed file
    mono.now += 1.5
    write(3)  # the writer noticed the new inode
    assert _cseqs(tmp_path / "events.jsonl.1") == [1, 2]
    assert _cseqs(events) == [3]
    _rotate(config, tmp_path / "state")
    mono.now += 1.5
    write(4)
    assert _cseqs(tmp_path / "events.jsonl.1") == [3]
    assert (tmp_path / "events.jsonl.2.gz").exists()  # compressed one rotation late
    assert _cseqs(events) == [4]
