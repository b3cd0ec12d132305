"""Policy changes take effect without restarting Kamailio; a broken file keeps the old policy."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import Kamailio, refer_bytes, sip_request, status_of

PREMIUM = [b"Refer-To: <sip:09001234567@lab.test>"]


def premium_answer() -> tuple[int, str]:
    (answer,) = sip_request(refer_bytes(PREMIUM))
    return status_of(answer)


def answers_from_all_workers() -> set[tuple[int, str]]:
    # Several REFERs, so that every UDP worker (each has its own interpreter) answers.
    return {premium_answer() for _ in range(6)}


def test_policy_file_change_is_picked_up_and_bad_file_keeps_old_policy(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    assert answers_from_all_workers() == {(403, "Transfer to +449001234567 denied: premium-rate (09)")}

    policy.write_text(policy.read_text().replace('"premium-rate (09)"', '"premium numbers are off limits"'))
    time.sleep(1.2)  # the script looks at the file at most once a second
    assert answers_from_all_workers() == {
        (403, "Transfer to +449001234567 denied: premium numbers are off limits")
    }
    assert "loaded" in kamailio.log()

    policy.write_text("[policy\nthis is not TOML\n")
    time.sleep(1.2)
    assert answers_from_all_workers() == {
        (403, "Transfer to +449001234567 denied: premium numbers are off limits")
    }
    log = kamailio.log()
    assert "failed to load" in log
    assert "keeping the previous policy" in log


def test_policy_reload_through_kamcmd(start_kamailio: Callable[..., Kamailio], tmp_path: Path) -> None:
    start_kamailio(kamailio__policy_check=0)  # no mtime checks: only the RPC can reload
    policy = tmp_path / "policy.toml"
    assert premium_answer()[0] == 403
    text = policy.read_text().replace('"premium-rate (09)"', '"reloaded by rpc"')
    policy.write_text(text)
    time.sleep(1.2)
    assert answers_from_all_workers() == {(403, "Transfer to +449001234567 denied: premium-rate (09)")}
    out = subprocess.run(
        ["kamcmd", "-s", f"unix:{tmp_path}/kamailio_ctl", "pv.shvSet", "referee_reload", "int", "7"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert answers_from_all_workers() == {(403, "Transfer to +449001234567 denied: reloaded by rpc")}


def test_missing_policy_fails_closed_until_the_file_appears(
    start_kamailio: Callable[..., Kamailio], tmp_path: Path
) -> None:
    later = tmp_path / "later.toml"
    proxy = start_kamailio(kamailio__policy_file=str(later))
    assert answers_from_all_workers() == {(500, "Transfer Policy Unavailable")}
    assert "no policy loaded, REFER fails closed" in proxy.log()
    later.write_text((tmp_path / "policy.toml").read_text())
    time.sleep(1.2)
    assert answers_from_all_workers() == {(403, "Transfer to +449001234567 denied: premium-rate (09)")}


def test_kamailio_refuses_to_start_with_a_bad_user_list(start_kamailio: Callable[..., Kamailio]) -> None:
    with pytest.raises(RuntimeError, match="names unknown PBX 'pbx9'"):
        start_kamailio(kamailio__users=[{"name": "1001", "password": "x", "pbx": "pbx9"}])
