"""The REFER check reads only what it needs: an out-of-dialog REFER looks no dialog up (depth 0, no
htable or SQLite read), an in-dialog one does; a NUL in the Call-ID is refused before any event."""

from __future__ import annotations

from pathlib import Path

import pytest
from kemi_fixtures import events, make, refer


def dialog_reads(tmp: Path, monkeypatch: pytest.MonkeyPatch, **message: object) -> list[str]:
    fake, handler = make(tmp)
    reads: list[str] = []
    real = fake.htable.sht_get

    def sht_get(table: str, key: str) -> object:
        reads.append(table)
        return real(table, key)

    monkeypatch.setattr(fake.htable, "sht_get", sht_get)
    fake.request(refer("<sip:1003@lab.test>", **message))
    handler.ksr_request_route(None)
    return [table for table in reads if table == handler.dialogs.table]


def test_out_of_dialog_refer_looks_no_dialog_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert dialog_reads(tmp_path, monkeypatch) == []
    assert events(tmp_path)[-1]["decision"]["allowed"] is True


def test_in_dialog_refer_looks_its_dialog_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert dialog_reads(tmp_path, monkeypatch, to="<sip:1001@lab.test>;tag=t1", route=True) != []


def test_nul_in_the_call_id_is_bad_input_before_any_event(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(refer("<sip:1003@lab.test>", call_id="call-\x00@test"))
    handler.ksr_request_route(None)
    assert fake.replies == [(400, "Bad Request (NUL)")]
    assert events(tmp_path) == []
