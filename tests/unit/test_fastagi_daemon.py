"""``referee fastagi`` as a process: startup, the guard over TCP, SIGHUP reloads, SIGTERM.

The daemon listens on 127.0.2.20 with a free port (``--port 0``) and prints where.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from referee.testing.fake_asterisk import Channel, agi_env, call

HOST = "127.0.2.20"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy.toml"
TWO_TENANTS = Path(__file__).parent / "data" / "agi" / "two_tenants.toml"
BOB = {"SIPREFERREDBYHDR": "<sip:1002@lab.test>"}
PBX1 = 'pattern = "1[0-9]{3}"\n  pbx = "sip:127.0.0.20:5060"'


class Daemon:
    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.log: list[str] = []
        assert proc.stderr is not None
        self._stderr = asyncio.create_task(self._collect(proc.stderr))

    async def _collect(self, stream: asyncio.StreamReader) -> None:
        for _ in range(100_000):
            line = await stream.readline()
            if not line:
                return
            self.log.append(line.decode(errors="replace"))

    async def logged(self, text: str, rounds: int = 400) -> bool:
        for _ in range(rounds):
            if any(text in line for line in self.log):
                return True
            await asyncio.sleep(0.025)
        return False

    async def guard(self, exten: str) -> Channel:
        return await call(HOST, self.port, agi_env(exten), BOB)


async def start(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "referee.cli", "fastagi", "--listen", HOST, "--port", "0", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip


@asynccontextmanager
async def running(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[Daemon]:
    proc = await start(*args, env=env)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert "listening on" in line, line
        daemon = Daemon(proc, int(line.rsplit(":", 1)[1]))
        yield daemon
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def test_guard_over_tcp_and_reload_on_sighup(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(EXAMPLE.read_text())

    async def main() -> int | None:
        async with running("--policy", str(policy)) as daemon:
            channel = await daemon.guard("1003")
            assert channel.allowed == "1"
            assert channel.variables["REFEREE_TARGET"] == "sip:1003@127.0.0.20:5060"
            assert (await daemon.guard("09001234567")).allowed == "0"

            # A new policy: pbx1's extensions move to 127.0.0.22.
            policy.write_text(EXAMPLE.read_text().replace(PBX1, PBX1.replace("0.20", "0.22")))
            daemon.proc.send_signal(signal.SIGHUP)
            assert await daemon.logged("reloaded")
            assert (await daemon.guard("1003")).variables["REFEREE_TARGET"] == "sip:1003@127.0.0.22:5060"

            # A broken policy: the one in force stays, and the log says why.
            policy.write_text(EXAMPLE.read_text().replace("max_depth = 3", "max_depth = -2"))
            daemon.proc.send_signal(signal.SIGHUP)
            assert await daemon.logged("not reloaded")
            assert any("policy.max_depth: must be at least 0" in line for line in daemon.log)
            channel = await daemon.guard("1003")
            assert channel.allowed == "1"
            assert channel.variables["REFEREE_TARGET"] == "sip:1003@127.0.0.22:5060"

            daemon.proc.send_signal(signal.SIGTERM)
            return await asyncio.wait_for(daemon.proc.wait(), 30)

    assert asyncio.run(main()) == 0


def test_policy_from_the_environment(tmp_path: Path) -> None:
    env = dict(os.environ, REFEREE_POLICY=str(EXAMPLE))

    async def main() -> None:
        async with running(env=env) as daemon:
            assert (await daemon.guard("2001")).variables["REFEREE_TARGET"] == "sip:2001@127.0.0.21:5060"

    asyncio.run(main())


@pytest.mark.parametrize("problem", ["missing", "broken"])
def test_a_policy_that_cannot_load_at_startup_is_a_clear_error_exit(tmp_path: Path, problem: str) -> None:
    policy = tmp_path / "policy.toml"
    if problem == "broken":
        policy.write_text(EXAMPLE.read_text().replace("max_depth = 3", "max_depth = -2"))

    async def main() -> tuple[int | None, str, str]:
        proc = await start("--policy", str(policy))
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        return proc.returncode, out.decode(), err.decode()

    code, out, err = asyncio.run(main())
    assert code == 3
    assert "listening" not in out
    assert "Traceback" not in err
    assert f"referee: policy {policy}:" in err
    assert ("max_depth: must be at least 0" if problem == "broken" else "cannot read") in err


def test_a_domain_the_policy_does_not_serve_is_a_clear_error_exit() -> None:
    async def main() -> tuple[int | None, str, str]:
        proc = await start("--policy", str(EXAMPLE), "--domain", "typo.example")
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        return proc.returncode, out.decode(), err.decode()

    code, out, err = asyncio.run(main())
    assert code == 2
    assert "listening" not in out
    assert f"--domain typo.example is no tenant of policy {EXAMPLE} (it serves lab.test)" in err


def test_the_domain_comes_from_the_policy_unless_given() -> None:
    # b.example is the policy's default tenant; --domain a.example sends bare extensions to a.example's PBX.
    # The referrer is the transferer's channel, 1002 in that same domain.
    transferer = {"BLINDTRANSFER": "PJSIP/1002-00000001"}

    async def main() -> tuple[Channel, Channel]:
        async with running("--policy", str(TWO_TENANTS)) as daemon:
            by_policy = await call(HOST, daemon.port, agi_env("1003"), transferer)
        async with running("--policy", str(TWO_TENANTS), "--domain", "A.example") as daemon:
            given = await call(HOST, daemon.port, agi_env("1003"), transferer)
        return by_policy, given

    by_policy, given = asyncio.run(main())
    assert by_policy.variables["REFEREE_TENANT"] == "b.example"
    assert by_policy.variables["REFEREE_TARGET"] == "sip:1003@127.0.0.2:5060"
    assert given.variables["REFEREE_TENANT"] == "a.example"
    assert given.variables["REFEREE_TARGET"] == "sip:1003@127.0.0.1:5060"


@pytest.mark.parametrize(
    ("choice", "expected"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")]
)
def test_the_event_loop_is_uvloop_when_installed_unless_asyncio_is_asked_for(
    choice: str, expected: str
) -> None:
    async def main() -> tuple[Channel, int | None, list[str]]:
        async with running("--policy", str(EXAMPLE), "--loop", choice) as daemon:
            channel = await daemon.guard("1003")
            daemon.proc.send_signal(signal.SIGTERM)  # the signal handlers work on either loop
            code = await asyncio.wait_for(daemon.proc.wait(), 30)
            assert await daemon.logged("FastAGI stopped")
            return channel, code, daemon.log

    channel, code, log = asyncio.run(main())
    assert channel.allowed == "1" and channel.variables["REFEREE_TARGET"] == "sip:1003@127.0.0.20:5060"
    assert code == 0
    assert any(f"({expected} event loop)" in line for line in log)


def test_without_uvloop_auto_runs_on_asyncio_and_uvloop_is_a_clear_error_exit(tmp_path: Path) -> None:
    # A uvloop that fails to import, first on the path: as on a host without referee[fast].
    (tmp_path / "uvloop").mkdir()
    (tmp_path / "uvloop" / "__init__.py").write_text("raise ImportError('no uvloop on this host')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))

    async def main() -> tuple[Channel, list[str], int | None, str]:
        async with running("--policy", str(EXAMPLE), env=env) as daemon:
            channel = await daemon.guard("1003")
            assert await daemon.logged("(asyncio event loop)")
            log = daemon.log
        proc = await start("--policy", str(EXAMPLE), "--loop", "uvloop", env=env)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        return channel, log, proc.returncode, err.decode()

    channel, log, code, err = asyncio.run(main())
    assert channel.allowed == "1"
    assert not any("uvloop event loop" in line for line in log)
    assert code == 2
    assert "referee: fastagi: --loop uvloop: uvloop is not installed (no uvloop on this host)" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("log_decisions", [True, False])
def test_decisions_are_logged_unless_asked_not_to(log_decisions: bool) -> None:
    option = "--log-decisions" if log_decisions else "--no-log-decisions"

    async def main() -> tuple[Channel, list[str]]:
        async with running("--policy", str(EXAMPLE), option) as daemon:
            channel = await daemon.guard("1003")
            daemon.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(daemon.proc.wait(), 30)
            assert await daemon.logged("FastAGI stopped")
            return channel, daemon.log

    channel, log = asyncio.run(main())
    assert channel.allowed == "1"
    decision = "transfer <sip:1002@lab.test> -> <sip:1003@lab.test> on PJSIP/referee-proxy-00000007: ALLOW"
    assert any(decision in line for line in log) == log_decisions
    assert any("FastAGI listening on" in line for line in log)  # the other INFO lines stay
