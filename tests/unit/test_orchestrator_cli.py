"""``referee orchestrator`` as a real process (against a fake AMI) driven by ``referee transfer``;
its settings; and a committed record surviving a SIGKILL of the daemon."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
import time
from pathlib import Path

import pytest
from ami_traces import text
from orchestrator_fixture import getvar

from referee.api.access import AccessError, parse_api_address, read_or_create_token
from referee.api.client import call, readiness
from referee.audit import open_store
from referee.orchestrator.settings import Settings, SettingsError, check, load_file, parse_pbx_url
from referee.testing.fake_ami import FakeAmi, success

HOST = "127.0.3.6"
REFEREE = [sys.executable, "-m", "referee.cli"]


def test_pbx_urls() -> None:
    pbx = parse_pbx_url("pbx1=ami://referee:s%40cret@127.0.0.20:5038")
    assert (pbx.name, pbx.host, pbx.port, pbx.username, pbx.secret) == (
        "pbx1",
        "127.0.0.20",
        5038,
        "referee",
        "s@cret",
    )
    assert "s@cret" not in repr(pbx)
    assert pbx.source is None
    assert parse_pbx_url("p=ami://u:s@127.0.0.20?source=127.0.0.20").source == "127.0.0.20"
    for bad in (
        "pbx1",
        "pbx1=http://x",
        "=ami://u:p@h",
        "pbx1=ami://h:5038",
        "pbx1=ami://u:p@h:99999",
        "p=ami://u:p@h?x=1",
    ):
        with pytest.raises(SettingsError):
            parse_pbx_url(bad)


@pytest.mark.parametrize(
    "address", ["0.0.0.0:8088", "10.1.2.3:8088", "localhost:8088", "127.0.0.1", "127.0.0.1:x"]
)
def test_the_api_listens_on_loopback_only(address: str) -> None:
    with pytest.raises(AccessError):
        parse_api_address(address)
    with pytest.raises(SettingsError):
        check(Settings(pbxs=[parse_pbx_url("a=ami://u:p@127.0.0.1")], api=address))
    assert parse_api_address("127.0.3.9:0") == ("127.0.3.9", 0)


def test_settings_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    good = tmp_path / "o.toml"
    good.write_text(
        '[orchestrator]\napi = "127.0.0.1:9000"\nevents = ""\npolicy = "/etc/referee/policy.toml"\n'
        '[[pbx]]\nname = "pbx1"\nhost = "127.0.0.20"\nusername = "referee"\nsecret = "s"\n'
        f'[[pbx]]\nname = "pbx2"\nhost = "127.0.0.21"\nport = 5039\nusername = "referee"\nsecret_file = "{secret}"\n'
    )
    settings = load_file(str(good))
    check(settings)
    assert [(p.name, p.port, p.secret) for p in settings.pbxs] == [
        ("pbx1", 5038, "s"),
        ("pbx2", 5039, "from-a-file"),
    ]
    assert (settings.api, settings.events, settings.policy) == (
        "127.0.0.1:9000",
        "",
        "/etc/referee/policy.toml",
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[orchestrator]\napi = 1\n", "orchestrator.api: unknown key or not a string"),
        ("[orchestrator]\nlisten = 'x'\n", "orchestrator.listen"),
        ("[pbxs]\n", "unknown section(s) pbxs"),
        ("[[pbx]]\nname = 'a'\nhost = 'h'\nusername = 'u'\n", "needs secret or secret_file"),
        ("[[pbx]]\nname = 'a'\nhost = 'h'\nusername = 'u'\nsecret = 's'\nport = 0\n", "pbx[0].port"),
        (
            "[[pbx]]\nname = 'a'\nhost = 'h'\nusername = 'u'\nsecret = 's'\ncolour = 1\n",
            "unknown key(s) colour",
        ),
        ("[[pbx]]\nhost = 'h'\nusername = 'u'\nsecret = 's'\n", "pbx[0].name: required"),
        ("not toml [", "o.toml"),
    ],
)
def test_settings_file_errors_name_the_key(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "o.toml"
    path.write_text(content)
    with pytest.raises(
        SettingsError, match=problem.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        load_file(str(path))


def test_settings_need_unique_pbxs() -> None:
    with pytest.raises(SettingsError, match="no PBX"):
        check(Settings())
    pbx = parse_pbx_url("a=ami://u:p@127.0.0.1")
    with pytest.raises(SettingsError, match="unique"):
        check(Settings(pbxs=[pbx, pbx]))


def test_the_token_file_is_created_private_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    token = read_or_create_token(str(path))
    assert len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create_token(str(path)) == token


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *REFEREE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def until(probe: object, predicate: object) -> object:
    """Ask again until the answer is right (the whole test has a guard timeout)."""
    while True:
        answer = await asyncio.to_thread(probe)  # type: ignore[arg-type]
        if predicate(answer):  # type: ignore[operator]
            return answer
        await asyncio.sleep(0.05)


def test_daemon_and_transfer_cli_end_to_end_then_sigkill(tmp_path: Path) -> None:
    db, events, token_file = tmp_path / "audit.db", tmp_path / "events.jsonl", tmp_path / "token"
    events.write_text(
        json.dumps(
            {
                "time": time.time(),  # a REFER of now: one NOTIFY_TIMEOUT old would be failed
                "event": "refer.decision",
                "call_id": "other@h",
                "cseq": "2",
                "decision": {"allowed": True, "status": 202},
            }
        )
        + "\n"
    )

    async def main() -> None:
        ami = FakeAmi(host=HOST)
        ami.answers.update(
            {
                "CoreShowChannels": text("core_show_channels.txt"),
                "BridgeList": text("bridge_list.txt"),
                "Getvar": getvar,
                "BlindTransfer": success("Transfer succeeded"),
            }
        )
        await ami.start()
        daemon = await asyncio.create_subprocess_exec(
            *REFEREE,
            "orchestrator",
            "--pbx",
            f"pbx1=ami://referee:secret@{HOST}:{ami.port}",
            "--db",
            str(db),
            "--events",
            str(events),
            "--api",
            f"{HOST}:0",
            "--token-file",
            str(token_file),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            assert daemon.stdout is not None
            ready = (await daemon.stdout.readline()).decode()
            assert ready.startswith(f"referee orchestrator: API on http://{HOST}:"), ready
            base = ready.split(" on ")[1].split(",")[0]
            token = token_file.read_text().strip()
            await until(lambda: readiness(base), lambda r: r["pbxs"]["pbx1"]["ready"])
            common = ["--api", base, "--token-file", str(token_file)]
            code, out, err = await run_cli(
                "transfer", "blind", "--pbx", "pbx1", "--channel", "PJSIP/1002", "--exten", "1003", *common
            )
            assert code == 0, err
            assert out.startswith("transfer ") and ": starting (blind) PJSIP/1002-00000001 -> 1003" in out
            transfer_id = int(out.split()[1].rstrip(":"))
            code, out, err = await run_cli(
                "transfer", "attended", "--pbx", "pbx1", "--channel", "PJSIP/1002", "--exten", "1004", *common
            )
            assert code == 1
            assert f"PJSIP/1002 already has transfer {transfer_id} running (starting) (HTTP 409)" in err
            code, _, err = await run_cli(
                "transfer",
                "complete",
                str(transfer_id),
                "--api",
                base,
                "--token-file",
                str(tmp_path / "none"),
            )
            assert code == 2 and "token file" in err
            env = {**os.environ, "REFEREE_API_TOKEN": "not-the-right-token"}
            code, _, err = await run_cli("transfer", "cancel", str(transfer_id), "--api", base, env=env)
            assert code == 1 and "wrong token (HTTP 401)" in err
            await ami.push(text("blind_ami.txt"))
            shown = await until(
                lambda: call(base, token, "GET", f"/transfers/{transfer_id}"),
                lambda t: t["state"] == "completed",
            )
            assert shown["call_id"] == "bob-dialog@127.0.0.32"  # type: ignore[index]
            listed = await until(
                lambda: call(base, token, "GET", "/transfers"), lambda t: len(t["transfers"]) == 2
            )
            assert "other@h" in [t["call_id"] for t in listed["transfers"]]  # type: ignore[index]
        finally:
            os.kill(daemon.pid, signal.SIGKILL)
            await daemon.wait()
            await ami.close()
        assert daemon.returncode == -signal.SIGKILL
        code, out, _ = await run_cli("transfers", "--db", str(db), "show", str(transfer_id))
        assert code == 0 and out.startswith(f"transfer {transfer_id}: completed (the recipient answered)")

    asyncio.run(asyncio.wait_for(main(), 60))
    store = open_store(str(db))
    assert {r.state for r in store.records()} == {"completed", "starting"}


def test_sigterm_stops_the_daemon_cleanly(tmp_path: Path) -> None:
    async def main() -> None:
        daemon = await asyncio.create_subprocess_exec(
            *REFEREE,
            "orchestrator",
            "--pbx",
            f"pbx1=ami://u:p@{HOST}:9",  # nothing listens: the daemon keeps retrying
            "--db",
            str(tmp_path / "audit.db"),
            "--events",
            "",
            "--api",
            f"{HOST}:0",
            "--token-file",
            str(tmp_path / "token"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert daemon.stdout is not None
        assert (await daemon.stdout.readline()).startswith(b"referee orchestrator: API on")
        daemon.send_signal(signal.SIGTERM)
        assert await daemon.wait() == 0

    asyncio.run(asyncio.wait_for(main(), 30))


def test_daemon_usage_errors(tmp_path: Path) -> None:
    async def main() -> None:
        code, _, err = await run_cli(
            "orchestrator", "--db", str(tmp_path / "a.db"), "--token-file", str(tmp_path / "t")
        )
        assert code == 2 and "no PBX" in err
        code, _, err = await run_cli(
            "orchestrator",
            "--pbx",
            "p=ami://u:p@127.0.0.1",
            "--api",
            "0.0.0.0:1",
            "--token-file",
            str(tmp_path / "t"),
        )
        assert code == 2 and "not loopback" in err
        code, _, err = await run_cli(
            "orchestrator",
            "--pbx",
            "p=ami://u:p@127.0.0.1",
            "--db",
            "postgresql://x@127.0.4.2:9/y",
            "--token-file",
            str(tmp_path / "t"),
        )
        assert code == 2 and "postgresql://x@127.0.4.2:9/y: cannot connect" in err
        bad_policy = tmp_path / "policy.toml"
        bad_policy.write_text("[policy]\nmax_depth = -2\n")
        code, _, err = await run_cli(
            "orchestrator",
            "--pbx",
            "p=ami://u:p@127.0.0.1",
            "--policy",
            str(bad_policy),
            "--token-file",
            str(tmp_path / "t"),
        )
        assert code == 2 and f"policy {bad_policy}: policy.max_depth: must be at least 0" in err

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_test_beds_pbxs_come_from_a_settings_file_it_writes(tmp_path: Path) -> None:
    """The lab's PBX list is not in the runtime: the lab writes [[pbx]] tables and passes --config."""
    path = tmp_path / "lab.toml"
    path.write_text(
        '[[pbx]]\nname = "pbx1"\nhost = "127.0.0.20"\nusername = "referee"\nsecret = "s"\nsource = "127.0.0.20"\n'
    )
    (pbx,) = load_file(str(path)).pbxs
    assert (pbx.name, pbx.host, pbx.port, pbx.username, pbx.source) == (
        "pbx1",
        "127.0.0.20",
        5038,
        "referee",
        "127.0.0.20",
    )

    async def main() -> None:
        code, _, err = await run_cli("orchestrator", "--lab")
        assert code == 2 and "unrecognized arguments: --lab" in err

    asyncio.run(asyncio.wait_for(main(), 30))
