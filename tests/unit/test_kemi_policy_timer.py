"""Kamailio's rtimer tick (``ksr_policy_timer``): a pushed policy is in force, and its version published for
``referee policy status``, before any REFER arrives (issue 10, "One policy push")."""

from __future__ import annotations

from pathlib import Path

from kemi_fixtures import defines

from referee.kemi import make_handler
from referee.policy import parse_policy
from referee.testing.fake_ksr import FakeKSR


def test_timer_publishes_a_reloaded_policy_without_a_refer(tmp_path: Path) -> None:
    shared: dict[str, str | int | None] = {"referee_reload": 0}
    fake = FakeKSR(defines=defines(tmp_path), shv=shared)  # REFEREE_POLICY_CHECK 0: only the RPC reloads
    timer = make_handler(fake)
    timer.child_init(1)
    policy = tmp_path / "policy.toml"
    old = parse_policy(policy.read_text(), str(policy)).version
    assert shared["referee_policy_version"] == old
    policy.write_text(policy.read_text().replace('"premium-rate (09)"', '"pushed"'))
    new = parse_policy(policy.read_text(), str(policy)).version
    assert new != old

    timer.ksr_policy_timer(None)
    assert shared["referee_policy_version"] == old  # no reload asked, no look at the file (check 0)

    shared["referee_reload"] = 1  # kamcmd pv.shvSet referee_reload int 1
    assert timer.ksr_policy_timer(None, "rtimer") == 1  # as app_python3 calls it: (msg, event name)
    assert shared["referee_policy_version"] == new
    assert fake.replies == []


def test_timer_keeps_the_version_in_force_when_the_file_is_bad(tmp_path: Path) -> None:
    shared: dict[str, str | int | None] = {"referee_reload": 0}
    timer = make_handler(FakeKSR(defines=defines(tmp_path), shv=shared))
    timer.child_init(1)
    before = shared["referee_policy_version"]
    (tmp_path / "policy.toml").write_text("[policy\nnot TOML\n")
    shared["referee_reload"] = 1
    assert timer.ksr_policy_timer(None) == 1
    assert shared["referee_policy_version"] == before


def test_the_native_drop_ins_timer_publishes_a_reloaded_policy_too(tmp_path: Path) -> None:
    # An operator's kamailio.cfg with referee.cfg: route[REFEREE_POLICY_TIMER] calls python_exec("policy_timer").
    from referee.kemi.native import make_native_hooks  # noqa: PLC0415

    shared: dict[str, str | int | None] = {"referee_reload": 0}
    native = make_native_hooks(FakeKSR(defines=defines(tmp_path), shv=shared))
    native.child_init(1)
    policy = tmp_path / "policy.toml"
    old = shared["referee_policy_version"]
    policy.write_text(policy.read_text().replace('"premium-rate (09)"', '"pushed"'))
    shared["referee_reload"] = 1
    assert native.policy_timer(None) == 1
    assert shared["referee_policy_version"] == parse_policy(policy.read_text(), str(policy)).version != old
