"""Kamailio KEMI adapter: see :mod:`referee.kemi.proxy`."""

from referee.kemi.dialogs import DialogRecord, DialogStore
from referee.kemi.events import EventLog
from referee.kemi.policy_holder import PolicyHolder
from referee.kemi.proxy import Referee, make_handler
from referee.kemi.settings import BadRequest, Settings, User

__all__ = [
    "BadRequest",
    "DialogRecord",
    "DialogStore",
    "EventLog",
    "PolicyHolder",
    "Referee",
    "Settings",
    "User",
    "make_handler",
]
