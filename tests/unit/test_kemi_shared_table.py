"""htable values are read under their slot's lock (referee.kemi.shared_table), and a NOTIFY whose
hold fails is relayed all the same."""

from __future__ import annotations

from pathlib import Path

import pytest
from kemi_fixtures import make, refer, request

from referee.kemi import shared_table
from referee.testing.fake_ksr import FakeKSR

NOTIFY = ["Event: refer", "Subscription-State: active", "Content-Type: message/sipfrag"]


def test_a_value_is_read_while_its_slot_is_locked() -> None:
    fake = FakeKSR(tables={"t": {"k": "v"}})
    seen: list[list[tuple[str, str]]] = []
    real = fake.htable.sht_get

    def sht_get(table: str, key: str) -> object:
        seen.append(list(fake.locked))
        return real(table, key)

    fake.htable.sht_get = sht_get  # type: ignore[method-assign]
    assert shared_table.read(fake, "t", "k") == "v"
    assert shared_table.read(fake, "t", "absent") is None
    assert seen == [[("t", "k")], [("t", "absent")]]
    assert fake.locked == []  # each lock released


def torn_read(table: str, key: str) -> object:
    """What an unlocked read returned under load: bytes app_python3 cannot decode."""
    raise UnicodeDecodeError("utf-8", b"\xc3", 0, 1, "unexpected end of data")


def test_the_lock_is_released_when_the_read_fails() -> None:
    fake = FakeKSR()
    fake.htable.sht_get = torn_read  # type: ignore[method-assign]
    with pytest.raises(UnicodeDecodeError):
        shared_table.read(fake, "t", "k")
    assert fake.locked == []  # a slot left locked would stop every worker touching it


def test_an_unlocked_get_fails_in_the_fake_as_it_may_on_kamailio() -> None:
    with pytest.raises(AssertionError, match="outside sht_lock"):
        FakeKSR().htable.sht_get("t", "k")


def test_a_notify_whose_hold_fails_is_still_relayed(tmp_path: Path) -> None:
    fake, handler = make(tmp_path)
    fake.request(refer("<sip:1003@lab.test>"))
    handler.ksr_request_route(None)  # the REFER relayed: its NOTIFYs are held until it is answered
    fake.htable.sht_get = torn_read  # type: ignore[method-assign]
    notify = request(
        "NOTIFY", to="<sip:1002@lab.test>;tag=ft1", headers=NOTIFY, body="SIP/2.0 100 Trying\r\n", route=True
    )
    fake.request(notify, src_ip="127.0.1.20")
    handler.ksr_request_route(None)
    assert len(fake.relays) == 1 and fake.replies == []  # relayed, not answered 400
    assert any("relayed unheld" in line for _, line in fake.log)
    assert fake.locked == []
