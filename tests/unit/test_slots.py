"""referee.slots: the connection caps the API and FastAGI share."""

from __future__ import annotations

import pytest

from referee.slots import Slots, peer_address


def test_one_address_takes_at_most_its_share_and_others_still_get_in() -> None:
    slots = Slots.of(8)  # a quarter each by default
    assert slots.per_address == 2
    assert [slots.take("a") for _ in range(3)] == [None, None, "2 connections open from a"]
    assert slots.take("b") is None


def test_the_caps_take_and_give_back() -> None:
    slots = Slots(total=3, per_address=2)
    assert slots.take("a") is None and slots.take("a") is None
    assert slots.take("a") == "2 connections open from a"
    assert slots.take("b") is None
    assert slots.take("c") == "3 connections open"
    slots.give("a")
    assert slots.take("c") is None
    assert (slots.open, slots.held) == (3, {"a": 1, "b": 1, "c": 1})
    for peer in ("a", "b", "c"):
        slots.give(peer)
    assert (slots.open, slots.held) == (0, {})
    with pytest.raises(ValueError, match="no slot held by a"):
        slots.give("a")


def test_a_refused_take_takes_nothing() -> None:
    slots = Slots(total=2, per_address=1)
    assert slots.take("a") is None
    assert slots.take("a") is not None
    assert (slots.open, slots.held) == (1, {"a": 1})


def test_an_allow_list_refuses_other_addresses_before_anything() -> None:
    slots = Slots.of(4, allow={"127.0.0.20"})
    assert slots.take("127.0.0.99") == "127.0.0.99 is not an allowed peer"
    assert slots.take("127.0.0.20") is None
    assert slots.open == 1


@pytest.mark.parametrize(("total", "per_address"), [(0, 1), (4, 0), (2, 3)])
def test_impossible_caps_are_refused(total: int, per_address: int) -> None:
    with pytest.raises(ValueError):
        Slots(total, per_address)


def test_peer_address_of_ipv4_and_ipv6_peernames() -> None:
    assert peer_address(("127.0.0.1", 5000)) == "127.0.0.1"
    assert peer_address(("::1", 5000, 0, 0)) == "::1"
