"""scripts/record_ami_trace.py records what an AMI sends, in the format the traces use."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from ami_traces import text

from referee.orchestrator.amitext import parse_messages
from referee.testing.fake_ami import FakeAmi

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "record_ami_trace.py"
HOST = "127.0.3.7"


def test_records_answers_and_events_until_the_stop_event(tmp_path: Path) -> None:
    out = tmp_path / "trace.txt"

    async def main() -> int:
        ami = FakeAmi(host=HOST)
        ami.answers["CoreShowChannels"] = text("core_show_channels.txt")
        await ami.start()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            "--host",
            HOST,
            "--port",
            str(ami.port),
            "--user",
            "referee",
            "--secret",
            "secret",
            "--out",
            str(out),
            "--action",
            "CoreShowChannels",
            "--until",
            "Hangup:2",
        )
        await ami.until(lambda: bool(ami.named("CoreShowChannels")))
        await ami.push(text("call_hangup.txt"))
        code = await proc.wait()
        await ami.close()
        return code

    assert asyncio.run(asyncio.wait_for(main(), 30)) == 0
    recorded = out.read_text()
    assert recorded.startswith(f"# RECORDED from Asterisk Call Manager/11.0.0 at {HOST}:")
    messages = parse_messages(recorded)
    assert messages[0] == {"Event": "FullyBooted", "Privilege": "system,all", "Status": "Fully Booted"}
    assert messages[1:5] == parse_messages(text("core_show_channels.txt"))  # ActionID back to {ActionID}
    assert messages[5:] == parse_messages(text("call_hangup.txt"))  # up to and including the 2nd Hangup


def test_a_refused_login_is_an_error(tmp_path: Path) -> None:
    async def main() -> int:
        ami = FakeAmi(host=HOST)
        await ami.start()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            "--host",
            HOST,
            "--port",
            str(ami.port),
            "--secret",
            "wrong",
            "--out",
            str(tmp_path / "t.txt"),
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        await ami.close()
        assert b"login refused: Authentication failed" in err
        return proc.returncode or 0

    assert asyncio.run(asyncio.wait_for(main(), 30)) == 1
