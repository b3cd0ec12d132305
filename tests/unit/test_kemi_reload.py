"""Every Kamailio worker applies the same policy once the file settles, bad files included.

Issue 9: a worker that saw no REFER while a second version was in place kept the *first*
version when a bad third file arrived, while the others kept the second. Each fake below
stands for one worker process (its own interpreter, its own PolicyHolder); workers given the
same ``shv`` dict share Kamailio's shared memory.
"""

from __future__ import annotations

import os
from pathlib import Path

from kemi_fixtures import Clock, defines, refer

from referee.kemi import PolicyHolder, PolicyText, ReferenceProxy, make_handler
from referee.policy import parse_policy
from referee.testing.fake_ksr import FakeKSR

PREMIUM = "<sip:09001234567@lab.test>"


class Slot:
    def __init__(self) -> None:
        self.value: str | None = None

    def get(self) -> str | None:
        return self.value

    def set(self, value: str) -> None:
        self.value = value


def write(path: Path, text: str, mtime: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(mtime, mtime))  # distinct mtimes whatever the file system's clock tick


def first_version(tmp_path: Path) -> tuple[Path, str]:
    """The test policy file, written at t=1 s; and its text."""
    path = tmp_path / "policy.toml"
    defines(tmp_path)
    first = path.read_text()
    write(path, first, 1_000_000_000)
    return path, first


def reason(path: Path, holder: PolicyHolder) -> str:
    assert holder.policy is not None
    return holder.policy.decide(PREMIUM, referrer="sip:1002@lab.test").reason


def test_worker_that_missed_the_good_version_takes_it_when_the_file_turns_bad(tmp_path: Path) -> None:
    path, first = first_version(tmp_path)
    clock, shared = Clock(), Slot()
    logs: list[str] = []
    seen, missed = (
        PolicyHolder(
            str(path), parse_policy, lambda text, level: logs.append(text), clock=clock, shared=shared
        )
        for _ in range(2)
    )
    write(path, first.replace('"premium-rate (09)"', '"second"'), 2_000_000_000)
    clock.now = 1.5
    seen.check()  # this worker handles a REFER while the second version is on disk; the other does not
    write(path, "[policy\nnot TOML\n", 3_000_000_000)
    clock.now = 3.0
    seen.check()
    missed.check()
    assert reason(path, seen) == reason(path, missed) == "Transfer to +449001234567 denied: second"
    assert seen.error is not None and missed.error is not None
    assert any("another worker loaded" in line and "keeping the previous policy" in line for line in logs)


def test_worker_converges_when_the_good_version_is_published_after_it_looked(tmp_path: Path) -> None:
    path, first = first_version(tmp_path)
    clock, shared = Clock(), Slot()
    missed = PolicyHolder(str(path), parse_policy, lambda text, level: None, clock=clock, shared=shared)
    second = first.replace('"premium-rate (09)"', '"second"')
    write(path, "[policy\n", 3_000_000_000)
    clock.now = 1.5
    missed.check()  # bad file, nothing published yet: the first version stays
    assert reason(path, missed).endswith("premium-rate (09)")
    # Another worker read the second version before the bad file landed and publishes it now.
    shared.set(PolicyText.of(second.encode(), 2_000_000_000).encode())
    clock.now = 3.0
    missed.check()  # the file did not change, but it is still bad: the published copy is looked at
    assert reason(path, missed).endswith("second")


def test_older_published_copy_neither_replaces_nor_overwrites_a_newer_one(tmp_path: Path) -> None:
    path, first = first_version(tmp_path)
    shared, clock = Slot(), Clock()
    older = PolicyText.of(first.encode(), 1_000_000_000)
    shared.set(older.encode())
    holder = PolicyHolder(str(path), parse_policy, lambda text, level: None, clock=clock, shared=shared)
    write(path, first.replace('"premium-rate (09)"', '"newest"'), 5_000_000_000)
    clock.now = 1.5
    holder.check()
    decoded = PolicyText.decode(shared.get())
    assert decoded is not None and decoded.mtime_ns == 5_000_000_000  # the newer file was published
    shared.set(older.encode())  # a slow worker publishes the old version after all
    write(path, "[bad", 6_000_000_000)
    clock.now = 3.0
    holder.check()
    assert reason(path, holder).endswith("newest")
    assert holder.version is not None
    assert not older.newer_than(holder.version)  # so a slow worker's _publish leaves a newer copy


def test_first_load_before_the_fork_touches_no_shared_memory(tmp_path: Path) -> None:
    path, _ = first_version(tmp_path)
    shared = Slot()
    holder = PolicyHolder(str(path), parse_policy, lambda text, level: None, shared=shared)
    assert holder.policy is not None and shared.get() is None


def test_published_copy_round_trips_and_foreign_values_are_ignored() -> None:
    copy = PolicyText.of("[policy]\nx = 'é'\n".encode(), 42)
    assert PolicyText.decode(copy.encode()) == copy
    for raw in (None, "", "garbage", "12 short\ntext", "x " + "a" * 64 + "\ntext"):
        assert PolicyText.decode(raw) is None


def workers(tmp_path: Path, count: int) -> list[tuple[FakeKSR, ReferenceProxy]]:
    shared: dict[str, str | int | None] = {"referee_reload": 0}
    made = []
    for _ in range(count):
        fake = FakeKSR(defines=defines(tmp_path), shv=shared)
        made.append((fake, make_handler(fake)))
    return made


def answer(fake: FakeKSR, proxy: ReferenceProxy, call_id: str) -> tuple[int, str]:
    fake.request(refer(PREMIUM, call_id=call_id))
    proxy.ksr_request_route(None)
    (reply,) = fake.replies
    return reply


def test_proxy_workers_agree_after_a_bad_file_follows_a_reload(tmp_path: Path) -> None:
    (fake_a, a), (fake_b, b) = workers(tmp_path, 2)
    policy = tmp_path / "policy.toml"
    assert answer(fake_a, a, "r0") == answer(fake_b, b, "r1")  # both have seen reload counter 0
    policy.write_text(policy.read_text().replace('"premium-rate (09)"', '"second"'))
    fake_a.shv["referee_reload"] = 1  # kamcmd pv.shvSet referee_reload int 1
    assert answer(fake_a, a, "r2")[1].endswith("second")  # only worker A handles a REFER
    policy.write_text("[policy\nnot TOML\n")
    fake_a.shv["referee_reload"] = 2
    assert (
        answer(fake_a, a, "r3")
        == answer(fake_b, b, "r4")
        == (
            403,
            "Transfer to +449001234567 denied: second",
        )
    )
    assert fake_b.shv["referee_policy"] == fake_a.shv["referee_policy"]


def test_a_worker_that_saw_no_refer_before_an_rpc_reload_reloads_on_its_first(tmp_path: Path) -> None:
    """Worker B answers its first REFER after `kamcmd pv.shvSet referee_reload int 7`: it must not take 7 as
    its starting point and keep the policy loaded at start (the integration test failed 1 run in 4 on it)."""
    (fake_a, a), (fake_b, b) = workers(tmp_path, 2)  # REFEREE_POLICY_CHECK 0: only the RPC reloads
    policy = tmp_path / "policy.toml"
    assert answer(fake_a, a, "r0")[1].endswith("premium-rate (09)")
    policy.write_text(policy.read_text().replace('"premium-rate (09)"', '"reloaded by rpc"'))
    fake_a.shv["referee_reload"] = 7
    assert answer(fake_b, b, "r1")[1].endswith("reloaded by rpc")
    assert answer(fake_a, a, "r2")[1].endswith("reloaded by rpc")
