"""What the REFER fuzz against the real proxy found (tests/fuzz/refer_proxy.py), kept fixed."""

from __future__ import annotations

from pathlib import Path

import pytest
from kemi_fixtures import make, refer

from referee.kemi.message import has_nul, log, reason_phrase
from referee.testing.fake_ksr import FakeKSR


def test_a_decoded_crlf_in_a_reason_does_not_reach_the_reply(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(refer("<sip:12%0D%0AX-Evil:%201@lab.test>"))
    handler.ksr_request_route(None)
    ((status, reason),) = fake.replies
    assert status == 404 and "\r" not in reason and "\n" not in reason and "%0D%0A" in reason


def test_a_nul_handed_back_to_kamailio_is_bad_input_not_a_bug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, handler = make(tmp_path)

    def refuses_nul(table: str, key: str) -> None:
        # app_python3: PyArg_ParseTuple fails on the NUL; the next call reports the pending error.
        try:
            raise ValueError("embedded null character")
        except ValueError as err:
            raise SystemError("<built-in function sht_get> returned a result with an exception set") from err

    monkeypatch.setattr(fake.htable, "sht_get", refuses_nul)
    fake.request(refer("<sip:1003@lab.test>", call_id="call-\x00@test"))
    handler.ksr_request_route(None)
    assert fake.replies == [(400, "Bad Request (NUL)")]
    assert not any("Traceback" in text for _, text in fake.log)


def test_helpers() -> None:
    assert reason_phrase("Transfer to +44900\x00567 denied") == "Transfer to +44900%00567 denied"
    assert has_nul(SystemError("x").with_traceback(None)) is False
    fake = FakeKSR()
    log(fake, "to 1\x003")
    assert fake.log[-1][1] == "to 1\\x003\n"
