"""Kamailio KEMI adapter, in three parts (see docs/proxy.md):

- :mod:`referee.kemi.refer`: the REFER check, for any KEMI script or a native cfg (``python_exec``);
- :mod:`referee.kemi.notify`: the outcome of each NOTIFY of a REFER's implicit subscription;
- :mod:`referee.kemi.routing`: the reference proxy the lab runs (``mod_init`` returns its object).
"""

from referee.kemi.dialogs import DialogRecord, DialogStore
from referee.kemi.event_log import EventLog
from referee.kemi.notify import NotifyCapture
from referee.kemi.policy_holder import PolicyHolder, PolicyText, PvSlot
from referee.kemi.refer import ReferCheck, make_refer_check
from referee.kemi.routing import ReferenceProxy, make_handler
from referee.kemi.settings import BadRequest, Settings, User

__all__ = [
    "BadRequest",
    "DialogRecord",
    "DialogStore",
    "EventLog",
    "NotifyCapture",
    "PolicyHolder",
    "PolicyText",
    "PvSlot",
    "ReferCheck",
    "ReferenceProxy",
    "Settings",
    "User",
    "make_handler",
    "make_refer_check",
]
