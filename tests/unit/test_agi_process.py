"""The process AGI script (pyst2), run as Asterisk runs it: a process talking AGI on its pipes."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from referee.testing.fake_asterisk import Channel, agi_env, play

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "ansible" / "roles" / "referee" / "files" / "referee_transfer_guard.py"
EXAMPLE = ROOT / "examples" / "policy.toml"
BOB = {"SIPREFERREDBYHDR": "<sip:1002@lab.test>"}
TWO_TENANTS = Path(__file__).parent / "data" / "agi" / "two_tenants.toml"


def run_agi(
    exten: str,
    variables: dict[str, str],
    policy: Path | str = EXAMPLE,
    domain: str | None = None,
    **env_extra: str,
) -> tuple[Channel, int, str]:
    """Start the script with the AGI environment of ``exten``; the channel, exit code and stderr."""
    env = {k: v for k, v in os.environ.items() if k not in {"REFEREE_POLICY", "REFEREE_DOMAIN"}}
    env["REFEREE_POLICY"] = str(policy)
    if domain is not None:
        env["REFEREE_DOMAIN"] = domain

    async def main() -> tuple[Channel, int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(SCRIPT), cwd="/",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            agi = agi_env(exten, script="", **env_extra)
            channel = await play(proc.stdout, proc.stdin, agi, variables, encoding="latin-1")
            proc.stdin.close()
            err = await asyncio.wait_for(proc.stderr.read(), 30)
            code = await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        return channel, code, err.decode()

    return asyncio.run(main())


def test_script_is_executable_and_runs_the_system_python() -> None:
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().startswith("#!/usr/bin/python3\n")


def test_allowed_transfer_sets_the_decision_allowed_last() -> None:
    channel, code, err = run_agi("1003", BOB)
    assert code == 0, err
    assert channel.variables["REFEREE_ALLOWED"] == "1"
    assert channel.variables["REFEREE_TARGET"] == "sip:1003@127.0.0.20:5060"
    assert channel.variables["REFEREE_TARGET_USER"] == "1003"
    assert channel.set_order[-1] == "REFEREE_ALLOWED"
    assert "ALLOW rule pbx1-extensions" in err
    assert "ENV LINE" not in err  # pyst2's debug output stays out of Asterisk's log


def test_rejected_transfer_with_the_reason() -> None:
    channel, code, _ = run_agi("09001234567", BOB)
    assert code == 0
    assert channel.variables["REFEREE_ALLOWED"] == "0"
    assert channel.variables["REFEREE_STATUS"] == "403"
    assert channel.variables["REFEREE_RULE"] == "prefixes:deny:+449"


def test_quotes_in_values_reach_asterisk_intact() -> None:
    channel, _, _ = run_agi('10"03', BOB)
    assert channel.variables["REFEREE_ALLOWED"] == "0"
    assert channel.variables["REFEREE_REASON"] == 'No such extension 10"03 in lab.test'
    # Every command was one well-formed AGI command: two words, then the quoted arguments.
    assert all(words[:2] in (["GET", "VARIABLE"], ["SET", "VARIABLE"]) for words in channel.commands)


@pytest.mark.parametrize("policy", ["missing", "broken"])
def test_a_policy_that_cannot_load_refuses_the_transfer(tmp_path: Path, policy: str) -> None:
    path = tmp_path / "policy.toml"
    if policy == "broken":
        path.write_text(EXAMPLE.read_text().replace("max_depth = 3", "max_depth = -2"))
    channel, code, err = run_agi("1003", BOB, path)
    assert code == 0
    assert channel.variables["REFEREE_ALLOWED"] == "0"
    assert channel.variables["REFEREE_STATUS"] == "503"
    assert "refusing transfers" in err


def test_external_replaces_through_the_process_agi() -> None:
    variables = dict(BOB, SIPREFERTOHDR="sip:2001@lab.test?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2")
    channel, code, _ = run_agi("external_replaces", variables)
    assert code == 0
    assert channel.variables["REFEREE_ALLOWED"] == "1"
    assert channel.variables["REFEREE_TARGET"] == "sip:2001@127.0.0.21:5060"


def test_a_latin1_caller_id_name_does_not_cost_the_transfer() -> None:
    channel, code, err = run_agi("1003", BOB, agi_calleridname="José Müller")
    assert code == 0, err
    assert channel.variables["REFEREE_ALLOWED"] == "1"


@pytest.mark.parametrize(
    ("domain", "tenant", "pbx"), [(None, "b.example", "127.0.0.2"), ("a.example", "a.example", "127.0.0.1")]
)
def test_the_domain_is_referee_domain_else_the_policys_default(
    domain: str | None, tenant: str, pbx: str
) -> None:
    channel, code, err = run_agi("1003", {"BLINDTRANSFER": "PJSIP/1002-00000001"}, TWO_TENANTS, domain)
    assert code == 0, err
    assert channel.variables["REFEREE_TENANT"] == tenant
    assert channel.variables["REFEREE_TARGET"] == f"sip:1003@{pbx}:5060"
