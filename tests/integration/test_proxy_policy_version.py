"""The proxy's policy version: in `referee policy status` (over kamcmd) and in every decision event."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from harness import Kamailio, refer_bytes, sip_request, status_of

from referee.cli import main
from referee.policy import load_policy


def status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["policy", "status", "--ctl", f"unix:{tmp_path}/kamailio_ctl"])
    return code, capsys.readouterr().out.strip()


def decide(refer_to: bytes) -> int:
    (answer,) = sip_request(refer_bytes([b"Refer-To: " + refer_to]))
    return status_of(answer)[0]


def test_the_version_follows_a_policy_edit(
    kamailio: Kamailio, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.toml"
    before = load_policy(policy).version
    # Known before any REFER: every worker announced the version it started with.
    assert status(tmp_path, capsys) == (0, f"proxy    unix:{tmp_path}/kamailio_ctl: version {before}")
    assert decide(b"<sip:09001234567@lab.test>") == 403

    policy.write_text(policy.read_text().replace('"premium-rate (09)"', '"premium numbers are off limits"'))
    after = load_policy(policy).version
    assert after != before
    time.sleep(1.2)  # the script looks at the file at most once a second
    assert decide(b"<sip:09001234567@lab.test>") == 403
    assert status(tmp_path, capsys) == (0, f"proxy    unix:{tmp_path}/kamailio_ctl: version {after}")

    policy.write_text("[policy\nnot TOML\n")  # a bad file: the good version stays in force
    time.sleep(1.2)
    assert decide(b"<sip:1003@lab.test") == 400  # decided by the version still in force
    assert status(tmp_path, capsys)[1].endswith(f"version {after}")

    decisions = kamailio.wait_events(3)
    assert [(e["decision"]["status"], e["policy_version"]) for e in decisions] == [
        (403, before),
        (403, after),
        (400, after),
    ]
