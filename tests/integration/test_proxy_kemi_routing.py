"""The same proxy with ``kamailio__routing: kemi``: the whole routing is the Python script.

Every other module here runs the default, native routing (kamailio.cfg blocks, Python only for
transfers and the dialog map). These run a test of each kind of routing again on the KEMI script,
which operators may still choose: registration, both directions of a call, authentication, the
dialog map and an attended transfer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import test_proxy_attended as attended
import test_proxy_auth as auth
import test_proxy_routing as routing
from harness import Kamailio


@pytest.fixture
def kamailio(start_kamailio: Callable[..., Kamailio]) -> Kamailio:
    return start_kamailio(kamailio__routing="kemi")


def test_register_needs_the_right_password(kamailio: Kamailio, tmp_path: Path) -> None:
    routing.test_register_needs_the_right_password(kamailio, tmp_path)


def test_pbx_reaches_registered_phone_and_cancel_is_relayed(kamailio: Kamailio, tmp_path: Path) -> None:
    routing.test_pbx_reaches_registered_phone_and_cancel_is_relayed(kamailio, tmp_path)


def test_phone_call_goes_to_its_home_pbx(kamailio: Kamailio, tmp_path: Path) -> None:
    routing.test_phone_call_goes_to_its_home_pbx(kamailio, tmp_path)


def test_from_other_than_the_credentials_user_gets_403(kamailio: Kamailio, tmp_path: Path) -> None:
    auth.test_from_other_than_the_credentials_user_gets_403(kamailio, tmp_path)


def test_in_dialog_request_outside_the_proxys_dialogs_is_refused(kamailio: Kamailio, tmp_path: Path) -> None:
    auth.test_in_dialog_request_outside_the_proxys_dialogs_is_refused(kamailio, tmp_path)


def test_in_dialog_refer_with_replaces_points_at_the_pbx_holding_the_dialog(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    attended.test_in_dialog_refer_with_replaces_points_at_the_pbx_holding_the_dialog(kamailio, tmp_path)


def test_an_early_dialog_is_known_by_its_provisional_to_tag(kamailio: Kamailio, tmp_path: Path) -> None:
    routing.test_an_early_dialog_is_known_by_its_provisional_to_tag(kamailio, tmp_path)
