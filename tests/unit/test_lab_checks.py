"""The scenario's check plug-ins as the runner drives them (load/start/stop/problems/notes), and the proxy's
event file read back as typed events. No root, no lab: fakes stand in for the AMI connections."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from lab_fixtures import load_scenario

from referee.audit.ingest import EventFileIngest
from referee.audit.store import open_store
from referee.events import NotifyOutcome, ProxyReply, ReferDecision, ReferResponse, to_json
from referee_lab import ami, chroot, ladder, scenario, topology
from referee_lab.scenario import checks, proxy_log
from referee_lab.scenario.checks import audit as audit_check
from referee_lab.scenario.checks.ami import AmiCheck
from referee_lab.scenario.checks.audit import AuditCheck
from referee_lab.scenario.checks.operator import OperatorCheck
from referee_lab.scenario.checks.sip import SipCheck
from referee_lab.scenario.context import Run

CALL = "refer-call@lab"


def _decision(call_id: str = CALL, status: int = 202) -> ReferDecision:
    return ReferDecision(
        time=1.0,
        call_id=call_id,
        cseq=1,
        referrer="sip:1002@lab.test",
        src="127.0.0.32",
        allowed=status < 300,
        status=status,
        reason="Accepted" if status < 300 else "Forbidden",
        rule="pbx1-extensions",
        refer_to="<sip:1003@lab.test>",
        forwarded_refer_to="<sip:1003@127.0.0.20:5060>" if status < 300 else None,
    )


def _notify(cseq: int, status: int) -> NotifyOutcome:
    return NotifyOutcome(time=2.0, call_id=CALL, cseq=cseq, refer_cseq=1, status=status, reason="OK")


def test_every_module_of_the_package_is_a_check_plug_in() -> None:
    found = {m.__name__.rsplit(".", 1)[1]: m for m in checks.plugins()}
    assert set(found) == {"ami", "audit", "faults", "operator", "sip"}
    assert all(callable(m.load) and m.OWNS for m in found.values())
    assert "expect.audit" in checks.claimed() and "actions.ami" in checks.claimed()


def test_the_tables_present_choose_the_checks() -> None:
    chosen = {s.name: {type(c) for c in s.checks} for s in scenario.discover()}
    assert chosen["basic_call"] == {SipCheck}
    assert chosen["blind_transfer_rejected"] == {SipCheck, AuditCheck}
    assert chosen["fastagi_guard_rejects"] == {SipCheck, AmiCheck}
    assert chosen["operator_attended_transfer"] == {SipCheck, AmiCheck, OperatorCheck}
    assert chosen["refer_sub_false"] == {SipCheck, AmiCheck, AuditCheck}


@pytest.mark.parametrize(
    ("toml", "unknown"),
    [
        ("[expect]\nrefer_status = [202]\n", "expect.refer_status"),
        ('[operatr]\npbx = "pbx1"\n', "operatr"),
        ('[[expect.amis]]\npbx = "pbx1"\n', "expect.amis"),
    ],
)
def test_a_table_or_key_no_check_knows_fails_the_load(tmp_path: Path, toml: str, unknown: str) -> None:
    with pytest.raises(ValueError, match=f"no check knows {unknown}$"):
        load_scenario(tmp_path, toml)


def test_the_proxy_event_file_is_read_from_the_runs_start_as_typed_events(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    assert proxy_log.read(events, proxy_log.position(events)) == []  # no file yet
    events.write_text(to_json(_decision("earlier-run@lab", 403)) + "\n")
    start = proxy_log.position(events)
    response = ReferResponse(time=1.5, call_id=CALL, cseq=1, status=202)
    with events.open("a") as f:
        f.write(f"{to_json(_decision())}\nnot json\n{to_json(response)}\n" + '{"event": "refer.deci')
    assert proxy_log.read(events, start) == [_decision(), response]  # the torn last line is left out
    # Rotated (another inode): the new file is read from its start.
    events.rename(tmp_path / "events.jsonl.1")
    events.write_text(to_json(_notify(7, 200)) + "\n")
    assert os.stat(events).st_ino != start[0]
    assert proxy_log.read(events, start) == [_notify(7, 200)]


def test_a_decision_note_names_the_rule_and_where_it_went() -> None:
    assert proxy_log.describe(_decision()) == (
        "proxy: REFER from sip:1002@lab.test to <sip:1003@lab.test>: allowed 202 Accepted "
        "[rule pbx1-extensions] -> <sip:1003@127.0.0.20:5060>"
    )
    assert proxy_log.describe(_decision(status=403)).endswith("refused 403 Forbidden [rule pbx1-extensions]")
    assert proxy_log.describe(_notify(1, 200)) == ""


def test_refer_statuses_are_the_proxys_decisions_in_order() -> None:
    events = [_decision(), ReferResponse(time=1.5, call_id=CALL, cseq=1, status=202), _notify(5, 200)]
    assert SipCheck(refer_statuses=(202,)).check([], events) == []
    assert SipCheck(refer_statuses=(403,)).check([], events) == [
        "proxy REFER decisions [202], expected [403]"
    ]
    assert SipCheck(refer_statuses=()).check([], []) == []


def test_proxy_replies_are_the_proxys_own_answers_by_method_status_and_pbx() -> None:
    events = [
        _decision(),
        ProxyReply(2.0, "INVITE", 503, "Service Unavailable", "c2", 1, pbx="pbx1"),
        ProxyReply(3.0, "BYE", 408, "Request Timeout", CALL, 3),
    ]
    assert SipCheck(proxy_replies=("INVITE 503 pbx1", "BYE 408")).check([], events) == []
    assert SipCheck(proxy_replies=("INVITE 503 pbx2",)).check([], events) == [
        "no proxy.reply INVITE 503 pbx2 in the proxy's events (got ['INVITE 503 pbx1', 'BYE 408'])"
    ]


def _frag(cseq: int, sipfrag: str) -> ladder.Message:
    return ladder.Message(1.0 + cseq, "proxy", "bob", f"NOTIFY ({sipfrag})", True, CALL, cseq, sipfrag)


def test_the_whole_sipfrag_sequence_is_checked_in_cseq_order() -> None:
    messages = [_frag(3, "503 Service Unavailable"), _frag(2, "100 Trying"), _frag(2, "100 Trying")]
    check = SipCheck(notify_to="bob", notify_sipfrags=("100 Trying", "503 Service Unavailable"))
    assert check.check(messages, []) == []
    assert SipCheck(notify_to="bob", notify_sipfrags=("100 Trying",)).check(messages, []) == [
        "NOTIFY sipfrags to bob were ['100 Trying', '503 Service Unavailable'], expected ['100 Trying']"
    ]
    # none at all (a REFER without a subscription): the last one is "none", the sequence empty
    assert SipCheck(notify_to="bob", notify_final="none", notify_sipfrags=()).check([], []) == []


def test_invite_responses_name_the_hop_and_the_status() -> None:
    busy = ladder.Message(1.0, "proxy", "pbx1", "486 Busy Here (INVITE)", False, "c2", 1)
    bye_ok = ladder.Message(2.0, "proxy", "pbx1", "486 Busy Here (BYE)", False, "c2", 2)
    assert SipCheck(invite_responses=("proxy>pbx1 486",)).check([busy], []) == []
    assert SipCheck(invite_responses=("carol>proxy 486", "proxy>pbx1 48")).check([busy, bye_ok], []) == [
        "no 486 to an INVITE carol -> proxy",
        "no 48 to an INVITE proxy -> pbx1",
    ]


def test_registered_phones_are_registered_not_played(tmp_path: Path) -> None:
    (tmp_path / "bob.xml").write_text("<scenario/>")
    (tmp_path / "scenario.toml").write_text('registered = ["carol"]\n[[phones]]\nrole = "bob"\n')
    loaded = scenario.load(tmp_path)
    assert loaded.registered == ("carol",)
    assert [p.role for p in loaded.phones] == ["bob"]


@dataclass
class FakeRecorder:
    """What the AMI check uses of a PBX's connection."""

    scheduled: list[ami.Action] = field(default_factory=list)
    sent: list[ami.Sent] = field(default_factory=list)
    unsent: list[ami.Action] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def schedule(self, actions: list[ami.Action]) -> None:
        self.scheduled += actions


def _run(tmp_path: Path, name: str) -> Run:
    loaded = scenario.load(scenario.SCENARIOS_DIR / name)
    return Run(loaded, topology.load(), chroot.LabState(rootfs=str(tmp_path)), tmp_path)


def test_the_ami_check_schedules_its_actions_and_judges_the_pbxs_events(tmp_path: Path) -> None:
    run = _run(tmp_path, "fastagi_guard_rejects")
    check = run.scenario.check(AmiCheck)
    assert check is not None
    fake = FakeRecorder()
    run.recorders["pbx1"] = fake  # type: ignore[assignment]
    check.start(run)
    assert [dict(a.fields)["Action"] for a in fake.scheduled] == ["BlindTransfer"]
    fake.sent = [ami.Sent({"Action": "BlindTransfer", "ActionID": "referee-lab-1"}, {"Response": "Success"})]
    alice = "PJSIP/1001-00000001"
    run.ami_events["pbx1"] = [
        {"Event": "BlindTransfer", "Result": "Success", "Extension": "09098790000"},
        {"Event": "VarSet", "Channel": alice, "Variable": "REFEREE_RULE", "Value": "prefixes:deny:+449"},
        {"Event": "VarSet", "Channel": alice, "Variable": "REFEREE_STATUS", "Value": "403"},
        {"Event": "Hangup", "Channel": alice, "Cause": "16"},
    ]
    assert check.problems(run) == [
        "AMI pbx1: Event: Hangup, Channel: PJSIP/1001-* found, Cause was 16; expected Cause: 21"
    ]
    assert "AMI pbx1: sent BlindTransfer : Success" in check.notes(run)
    assert "AMI pbx1: BlindTransfer Success 09098790000" in check.notes(run)
    fake.sent = []
    fake.unsent = list(fake.scheduled)
    assert check.problems(run)[0].startswith("AMI action BlindTransfer on pbx1 never sent (no event Event:")


def test_the_audit_check_reads_the_record_the_ingest_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The site's audit database (an SQLite file standing in for the lab's PostgreSQL), filled by what
    the proxy host's ingest does; the check waits for it to reach the file's end, then reads."""
    db = tmp_path / "audit.sqlite3"
    monkeypatch.setattr(audit_check.database, "dsn", lambda: str(db))
    run = _run(tmp_path, "blind_transfer")
    check = run.scenario.check(AuditCheck)
    assert check is not None
    run.events_file.parent.mkdir(parents=True)
    run.events_file.write_text(to_json(_decision("earlier@lab", status=403)) + "\n")  # an earlier run's
    run.events_start = proxy_log.position(run.events_file)
    with run.events_file.open("a") as f:
        for event in (_decision(), _notify(6, 200), _notify(5, 100)):  # NOTIFYs out of CSeq order
            f.write(to_json(event) + "\n")
    store = open_store(str(db))
    EventFileIngest(store, str(run.events_file)).poll()
    store.close()
    run.messages = [ladder.Message(1.0, "bob", "proxy", "REFER", True, call_id=CALL)]
    assert check.problems(run) == []
    (note,) = check.notes(run)
    assert note.startswith("audit: record 2 blind completed") and "(proxy 202, last NOTIFY 200)" in note
    run.messages = []
    assert check.problems(run) == ["audit: no REFER captured, so no record to check"]
