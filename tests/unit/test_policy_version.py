"""The policy version: a short hash of the compiled policy, in every decision event and guard result."""

from __future__ import annotations

import json
from pathlib import Path

from kemi_fixtures import POLICY, events, make, refer
from test_kemi_reload import Slot

from referee import events as ev
from referee.agi.guard import GuardSession
from referee.agi.policy_source import PolicySource
from referee.kemi.policy_holder import PolicyHolder
from referee.policy import load_policy, parse_policy
from referee.testing.fake_asterisk import agi_env

TEXT = POLICY.read_text()
DATA = Path(__file__).parent / "data" / "proxy"


def test_the_version_is_a_short_hash_of_the_canonical_content() -> None:
    version = parse_policy(TEXT).version
    assert len(version) == 12 and int(version, 16) >= 0
    # Comments, blank lines and the file's name do not make another version.
    assert parse_policy("# a comment\n\n" + TEXT + "\n# end\n", "/elsewhere.toml").version == version
    # Any value does.
    assert parse_policy(TEXT.replace('"premium-rate (09)"', '"premium"')).version != version


def test_the_same_file_has_the_same_version_for_every_reader(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(TEXT)
    version = load_policy(path).version
    holder = PolicyHolder(str(path), parse_policy, lambda text, level: None)
    source = PolicySource(str(path))
    source.load()
    assert holder.policy_version == version
    assert source.policy is not None and source.policy.version == version


def test_decision_events_carry_the_version_and_old_lines_still_read(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    version = load_policy(tmp_path / "policy.toml").version
    for refer_to in ("<sip:1003@lab.test>", "<sip:09001234567@lab.test>", "<sip:1003@lab.test"):
        fake.request(refer(refer_to))
        handler.ksr_request_route(None)
    written = events(tmp_path)
    assert [(e["decision"]["allowed"], e["policy_version"]) for e in written] == [
        (True, version),
        (False, version),
        (False, version),  # bad input, answered before the policy: the version in force all the same
    ]
    assert ev.from_dict(written[0]) == ev.from_json(json.dumps(written[0]))
    assert ev.from_dict(written[0]).policy_version == version  # type: ignore[union-attr]
    old = [json.loads(line) for f in sorted(DATA.glob("*.jsonl")) for line in f.read_text().splitlines()]
    decisions = [ev.from_dict(line) for line in old if line.get("event") == "refer.decision"]
    assert decisions and all(d.policy_version is None for d in decisions)  # type: ignore[union-attr]
    assert all("policy_version" not in d.to_dict() for d in decisions)


def test_without_a_policy_the_event_says_none(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text("[policy\n")
    fake, handler = make(tmp_path)
    fake.request(refer("<sip:1003@lab.test>"))
    handler.ksr_request_route(None)
    (written,) = events(tmp_path)
    assert written["decision"]["rule"] == "no-policy"
    assert "policy_version" not in written


def test_guard_results_carry_the_version_before_allowed() -> None:
    policy = parse_policy(TEXT)
    for exten, allowed in (("1003", "1"), ("09001234567", "0")):
        session = GuardSession(agi_env(exten))
        session.give("SIPREFERREDBYHDR", "<sip:1002@lab.test>")
        names = session.decide(policy)
        assert names[-2:] == [("REFEREE_POLICY_VERSION", policy.version), ("REFEREE_ALLOWED", allowed)]
    no_policy = GuardSession(agi_env("1003")).decide(None)
    assert no_policy[-2:] == [("REFEREE_POLICY_VERSION", ""), ("REFEREE_ALLOWED", "0")]


def test_workers_announce_and_publish_the_version(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(TEXT)
    shared, version = Slot(), Slot()
    worker = PolicyHolder(
        str(path), parse_policy, lambda text, level: None, shared=shared, shared_version=version
    )
    worker.announce()
    assert version.value == parse_policy(TEXT).version
    version.value = "from-another"
    worker.announce()  # a worker that already announced (or published) wins: nothing overwritten
    assert version.value == "from-another"

    edited = TEXT.replace('"premium-rate (09)"', '"premium"')
    path.write_text(edited)
    worker.check(force=True)
    assert version.value == parse_policy(edited).version == worker.policy_version


def test_fastagi_policy_source_reloads_on_change_and_keeps_a_good_one(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(TEXT)
    source = PolicySource(str(path))
    first = source.load().version
    assert not source.reload_if_changed()  # nothing changed: nothing read
    path.write_text("[policy\n")
    assert not source.reload_if_changed()
    assert source.policy is not None and source.policy.version == first
    assert "not valid TOML" in source.error
    edited = TEXT.replace('"premium-rate (09)"', '"premium"')
    path.write_text(edited)
    assert source.reload_if_changed()
    assert source.policy.version == parse_policy(edited).version and source.error == ""
