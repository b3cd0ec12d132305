"""``referee policy status``: the proxy (kamcmd) and FastAGI servers (their policy-status route)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest
from test_fastagi_daemon import EXAMPLE, HOST, running

from referee.cli import main
from referee.policy import load_policy, parse_policy
from referee.policy_status import EXIT_DIFFERENT, EXIT_SAME, EXIT_UNREACHABLE, fastagi_status

VERSION = load_policy(EXAMPLE).version


def fake_kamcmd(tmp: Path, value: str, code: int = 0) -> str:
    """A kamcmd that answers pv.shvGet the way Kamailio 5.6 does (or fails with ``code``)."""
    script = tmp / "kamcmd"
    answer = f"{{\n\tname: referee_policy_version\n\ttype: string\n\tvalue: {value}\n}}"
    script.write_text(
        "#!/bin/sh\n"
        f'[ "$1 $2 $3 $4" = "-s unix:{tmp}/ctl pv.shvGet referee_policy_version" ] || exit 9\n'
        + (
            f"printf '%s\\n' '{answer}'\n"
            if code == 0
            else f"echo 'ERROR: connect_unix_sock' >&2; exit {code}\n"
        )
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def status(tmp: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["policy", "status", "--ctl", f"unix:{tmp}/ctl", *args])
    return code, capsys.readouterr().out


def test_proxy_and_fastagi_on_the_same_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kamcmd = fake_kamcmd(tmp_path, VERSION)

    async def ask() -> tuple[int, str]:
        async with running("--policy", str(EXAMPLE)) as daemon:
            where = f"{HOST}:{daemon.port}"
            args = ("--kamcmd", kamcmd, "--fastagi", where, "--policy", str(EXAMPLE))
            return await asyncio.to_thread(status, tmp_path, *args, capsys=capsys)

    code, out = asyncio.run(ask())
    assert code == EXIT_SAME, out
    lines = out.splitlines()
    assert lines[0] == f"proxy    unix:{tmp_path}/ctl: version {VERSION}"
    assert lines[1].startswith("fastagi  127.0.2.20:") and lines[1].endswith(f": version {VERSION}")
    assert lines[2] == f"file     {EXAMPLE}: version {VERSION}"


def test_a_server_on_another_version_and_an_unreachable_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = status(tmp_path, "--kamcmd", fake_kamcmd(tmp_path, "0123456789ab"), "--policy", str(EXAMPLE),
                       capsys=capsys)  # fmt: skip
    assert code == EXIT_DIFFERENT, out
    code, out = status(tmp_path, "--kamcmd", fake_kamcmd(tmp_path, VERSION, code=255), "--fastagi",
                       f"{HOST}:1", "--json", capsys=capsys)  # fmt: skip
    assert code == EXIT_UNREACHABLE
    proxy, fastagi = json.loads(out)
    assert proxy["error"] == "ERROR: connect_unix_sock" and proxy["version"] == ""
    assert fastagi["where"] == f"{HOST}:1" and fastagi["error"]
    code, out = status(tmp_path, "--kamcmd", str(tmp_path / "absent"), capsys=capsys)
    assert code == EXIT_UNREACHABLE and "UNREACHABLE" in out and "not found" in out


def test_a_fastagi_server_follows_its_file_and_keeps_the_last_good_version(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(EXAMPLE.read_text())
    edited = EXAMPLE.read_text().replace("max_depth = 3", "max_depth = 2")
    bad = EXAMPLE.read_text().replace("max_depth = 3", "max_depth = -2")

    async def until(address: str, version: str, error: bool) -> None:
        for _ in range(400):  # the server looks at the file every 0.05 s here
            found = await asyncio.to_thread(fastagi_status, address)
            if found.version == version and bool(found.note) == error:
                return
            await asyncio.sleep(0.025)
        raise AssertionError(f"{address} never ran {version} (last: {found})")

    async def main_() -> None:
        async with running("--policy", str(policy), "--policy-check", "0.05") as daemon:
            address = f"{HOST}:{daemon.port}"
            await until(address, VERSION, error=False)
            policy.write_text(edited)
            await until(address, parse_policy(edited).version, error=False)
            policy.write_text(bad)  # a bad file: the good version stays, and the status says why
            await until(address, parse_policy(edited).version, error=True)
            found = await asyncio.to_thread(fastagi_status, address)
            assert "policy.max_depth" in found.note
            os.replace(policy, tmp_path / "gone.toml")
            policy.write_text(edited)
            await until(address, parse_policy(edited).version, error=False)

    asyncio.run(main_())
