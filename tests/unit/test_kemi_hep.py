"""Each REFER decision as a HEP log (siptrace's hlog) when kamailio.cfg defines REFEREE_HEP, never otherwise."""

from __future__ import annotations

from pathlib import Path

from kemi_fixtures import defines, make, refer

from referee.kemi import make_handler, make_refer_check
from referee.testing.fake_ksr import FakeKSR


def event_lines(tmp: Path) -> list[str]:
    return (tmp / "events.jsonl").read_text().splitlines()


def test_every_decision_goes_out_with_its_call_id_as_the_event_line(tmp_path: Path) -> None:
    fake = FakeKSR(defines={**defines(tmp_path), "REFEREE_HEP": '"1"'})
    handler = make_handler(fake)
    fake.request(refer("<sip:1003@lab.test>", call_id="allowed@test"))
    handler.ksr_request_route(None)
    fake.request(refer("<sip:09001234567@lab.test>", call_id="denied@test"))
    handler.ksr_request_route(None)
    fake.request(refer(None, call_id="no-refer-to@test"))  # refused before the policy runs
    handler.ksr_request_route(None)
    assert [status for status, _ in fake.replies] == [400]  # the last REFER's answer
    lines = event_lines(tmp_path)
    assert len(lines) == 3
    assert fake.hep_logs == [
        ("allowed@test", lines[0]),
        ("denied@test", lines[1]),
        ("no-refer-to@test", lines[2]),
    ]


def test_no_hep_log_without_the_define(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(refer("<sip:1003@lab.test>"))
    handler.ksr_request_route(None)
    assert len(event_lines(tmp_path)) == 1
    assert fake.hep_logs == []


def test_the_native_cfg_refer_check_sends_them_too(tmp_path: Path) -> None:
    fake = FakeKSR(defines={**defines(tmp_path), "REFEREE_HEP": '"1"'})
    check = make_refer_check(fake)
    fake.request(refer("<sip:09001234567@lab.test>", call_id="native@test"))
    assert check.route_refer(None) == -1
    assert fake.hep_logs == [("native@test", event_lines(tmp_path)[0])]
