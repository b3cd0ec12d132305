"""``referee transfers [show ID]`` and ``referee watch`` over an audit database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from referee.audit import open_store
from referee.cli import main
from referee.events import NotifyOutcome, OperatorAction, PbxEvent, ReferDecision


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "audit.db")
    store = open_store(path, clock=iter(float(t) for t in range(1_700_000_000, 1_700_000_100)).__next__)
    tid = store.create(
        "refer",
        call_id="c1",
        refer_cseq="7",
        flow="blind",
        parties={"referrer": "sip:1002@lab.test", "target": "<sip:1003@lab.test>"},
    )
    t0 = 1_700_000_000.0
    store.add_entry(
        tid,
        ReferDecision(
            t0 + 1,
            "c1",
            7,
            "sip:1002@lab.test",
            "127.0.1.32",
            allowed=True,
            status=202,
            reason="Accepted",
            rule="pbx1-extensions",
            refer_to="<sip:1003@lab.test>",
            forwarded_refer_to="<sip:1003@127.0.0.20:5060>",
        ),
    )
    store.add_entry(tid, NotifyOutcome(t0 + 2, "c1", 12, 7, status=200, reason="OK"))
    store.add_entry(tid, NotifyOutcome(t0 + 3, "c1", 10, 7, status=100, reason="Trying"))
    store.update(tid, state="completed", result="NOTIFY 200 OK", when=t0 + 4)
    store.create("operator", flow="attended", parties={"initiator": "PJSIP/1001"})
    store.close()
    return path


def test_list(capsys: pytest.CaptureFixture[str], db: str) -> None:
    code, out, _ = run(capsys, "transfers", "--db", db)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["ID", "CREATED", "(UTC)", "STATE", "FLOW"]
    assert lines[1].split()[0:1] == ["2"] and "starting" in lines[1]
    assert "completed" in lines[2] and "sip:1002@lab.test -> <sip:1003@lab.test>" in lines[2]
    assert "NOTIFY 200 OK" in lines[2]
    code, out, _ = run(capsys, "transfers", "--db", db, "--state", "completed", "--json")
    assert [r["id"] for r in json.loads(out)] == [1]


def test_show_prints_the_ladder_with_notifies_in_cseq_order(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    code, out, _ = run(capsys, "transfers", "--db", db, "show", "1")
    assert code == 0
    assert out.startswith("transfer 1: completed (NOTIFY 200 OK)")
    assert "Call-ID c1, REFER CSeq 7" in out
    ladder = out.split("ladder:\n", 1)[1].splitlines()
    assert "REFER cseq 7 ALLOW rule pbx1-extensions Refer-To <sip:1003@127.0.0.20:5060>" in ladder[1]
    assert "NOTIFY cseq 10 sipfrag 100 Trying" in ladder[2]
    assert "NOTIFY cseq 12 sipfrag 200 OK" in ladder[3]
    assert "starting -> completed (NOTIFY 200 OK)" in ladder[4]
    code, out, _ = run(capsys, "transfers", "show", "1", "--json", "--db", db)
    assert [e["cseq"] for e in json.loads(out)["entries"] if e["source"] == "notify"] == [10, 12]


def test_show_unknown_id(capsys: pytest.CaptureFixture[str], db: str) -> None:
    code, _, err = run(capsys, "transfers", "--db", db, "show", "99")
    assert (code, err.strip()) == (1, "referee: no transfer 99")


def test_an_unreachable_postgresql_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    # nothing listens on 127.0.4.2:9 (test_audit_store runs these against a real server)
    code, _, err = run(capsys, "transfers", "--db", "postgresql://referee:secret@127.0.4.2:9/audit")
    assert code == 3
    assert err.startswith("referee: audit database postgresql://referee@127.0.4.2:9/audit: cannot connect")
    assert "Connection refused" in err and "secret" not in err
    assert "Traceback" not in err


def test_watch_prints_entries_and_stops_after_max(capsys: pytest.CaptureFixture[str], db: str) -> None:
    code, out, _ = run(capsys, "watch", "--db", db, "--from-start", "--max", "3")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3
    assert "#1" in lines[0] and "state" in lines[0]
    assert "REFER cseq 7 ALLOW" in lines[1]
    assert "NOTIFY cseq 12 sipfrag 200 OK" in lines[2]  # live order: as recorded
    code, out, _ = run(capsys, "watch", "--db", db, "--from-start", "--max", "1", "--json")
    assert json.loads(out)["transfer_id"] == 1


def test_watch_usage_errors(capsys: pytest.CaptureFixture[str], db: str) -> None:
    code, _, err = run(capsys, "watch", "--db", db, "--interval", "0")
    assert code == 2 and "--interval" in err


def test_show_says_what_the_pbx_and_the_operator_did(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = str(tmp_path / "audit.db")
    store = open_store(db, clock=lambda: 1_700_000_000.0)
    tid = store.create("operator", pbx="pbx1")
    action = {"Action": "BlindTransfer", "Channel": "PJSIP/1002-01", "Exten": "1003", "Context": "t"}
    store.add_entry(tid, OperatorAction(1_700_000_001.0, "pbx1", action, "Success", "Transfer succeeded"))
    store.add_entry(
        tid, PbxEvent(1_700_000_002.0, "pbx1", "DialEnd", {"DialStatus": "BUSY", "Uniqueid": "1.2"})
    )
    store.add_entry(
        tid, PbxEvent(1_700_000_003.0, "pbx1", "resync", {"gone": "transferred", "uniqueid": "1.2"})
    )
    store.close()
    code, out, _ = run(capsys, "transfers", "--db", db, "show", str(tid))
    assert code == 0
    ladder = out.split("ladder:\n", 1)[1].splitlines()
    assert ladder[1].endswith(
        "oper    BlindTransfer Channel=PJSIP/1002-01 Context=t Exten=1003 response=Success message=Transfer succeeded"
    )
    assert ladder[2].endswith("pbx     DialEnd DialStatus=BUSY")
    assert ladder[3].endswith("pbx     resync gone=transferred uniqueid=1.2")
