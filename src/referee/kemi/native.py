"""referee inside an operator's own (native) kamailio.cfg: the ``python_exec`` entry points.

The existing-mode drop-in (``ansible/roles/kamailio/templates/referee.cfg.j2``) loads app_python3
with ``kamailio/referee_native.py``, whose ``mod_init`` returns :func:`make_native_hooks`'s object,
and defines ``route[REFEREE]``; the operator's request route calls ``route(REFEREE);``. Python
runs only for what referee must see, everything else stays in the operator's native routing:

- a REFER: ``python_exec("route_refer")`` decides it; refused, it is answered here (``exit``),
  allowed, its Refer-To is rewritten and the operator's routing relays it;
- its final response: ``onreply_route[ksr_onreply_refer]`` (set by the check) records it;
- a NOTIFY of ``Event: refer``: ``python_exec("route_notify")`` records the outcome, holding the
  NOTIFY while its REFER is unanswered (:class:`referee.kemi.notify.ReferAnswers`).

Who the referrer is (``#!define REFEREE_REFERRER``): ``auth`` (default), the user the operator's
cfg authenticated (``$au``) at the domain ``REFEREE_DOMAIN``, and a REFER without credentials is
refused 403; ``avp``, the URI the calling cfg put in ``$avp(referee_referrer)`` (a proxy that knows
the sender some other way, e.g. from its own dialog map), refused 403 when empty; ``from``, the From
URI, only for an operator whose routing vouches for it (trusted sources only), since without
authentication there is no identity.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING

from referee.kemi.message import log, reason_phrase, text
from referee.kemi.notify import NotifyCapture
from referee.kemi.refer import ALLOWED, ANSWERED, Known, KnownReply, ReferCheck, make_refer_check
from referee.kemi.settings import BadRequest, Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from referee.kemi.ksr import KSR

REFERRER_SOURCES = ("auth", "avp", "from")
REFERRER_AVP = "$avp(referee_referrer)"
# python_exec returns 1 whatever the function returns (-1 only when it raises): the verdict goes back to
# route[REFEREE] in this variable, which the route sets to 0 before the call.
ALLOWED_VAR = "$var(referee_allowed)"
NOT_AUTHENTICATED = (403, "Referrer Not Authenticated")


def referrer_source(get_def: Callable[[str], object]) -> str:
    """``REFEREE_REFERRER`` (``auth`` when not defined)."""
    value = get_def("REFEREE_REFERRER")
    source = str(value).strip().strip('"') if value else "auth"
    if source not in REFERRER_SOURCES:
        raise ValueError(f"REFEREE_REFERRER is {source!r}, not one of {REFERRER_SOURCES}")
    return source


class NativeHooks:
    """The object ``mod_init`` returns for a native cfg. app_python3 calls its methods by name."""

    def __init__(
        self, ksr: KSR, settings: Settings, refers: ReferCheck, notifies: NotifyCapture, source: str
    ):
        self.k = ksr
        self.settings = settings
        self.refers = refers
        self.notifies = notifies
        self.source = source

    def child_init(self, rank: int) -> int:
        self.refers.policies.announce()  # the policy version, for `referee policy status`
        return 0

    def policy_timer(self, msg: object) -> int:
        """The drop-in's rtimer tick: a changed policy file is read without waiting for a REFER."""
        try:
            self.refers.refresh_policy()
        except Exception:  # the next tick retries
            log(self.k, "referee: policy timer: " + traceback.format_exc(), "err")
        return 1

    def route_refer(self, msg: object, args: object = None) -> int:
        """Decide the REFER; ``$var(referee_allowed)`` 1: Refer-To rewritten, the operator's routing relays;
        0: refused and answered (the cfg exits). Never raises: a REFER the check cannot handle is refused
        (fail closed), not dropped. ``args``: what route[REFEREE] read natively (refer.REFER_ARGS)."""
        verdict = self._decide(None if args is None else Known.parse(args))
        self.k.pv.seti(ALLOWED_VAR, 1 if verdict == ALLOWED else 0)
        return verdict

    def _decide(self, known: Known | None) -> int:
        k = self.k
        try:
            src = known.src if known is not None else text(k.kx.get_srcip())
            if self.source == "from":
                return ALLOWED if self.refers.check(src, known=known) else ANSWERED
            if self.source == "avp":
                referrer = text(k.pv.get(REFERRER_AVP))
            else:
                user = text(k.kx.get_au())
                referrer = f"sip:{user}@{self.settings.domain}" if user else ""
            if not referrer:
                self.refers.refuse(src, text(k.kx.get_furi()), *NOT_AUTHENTICATED, "no-identity")
                return ANSWERED
            return ALLOWED if self.refers.check(src, referrer, known) else ANSWERED
        except BadRequest as exc:
            self._answer(exc.status, exc.reason)
        except Exception:
            log(k, "referee: REFER check failed, refusing:\n" + traceback.format_exc(), "err")
            self._answer(500, "Server Internal Error")
        return ANSWERED

    def route_notify(self, msg: object) -> int:
        """Record a NOTIFY's transfer outcome; always 1: the operator's routing relays it."""
        try:
            return self.notifies.route_notify(msg)
        except Exception:
            log(self.k, "referee: NOTIFY capture failed:\n" + traceback.format_exc(), "err")
            return 1

    def ksr_onreply_refer(self, msg: object, args: object = None) -> int:
        """tm onreply of a relayed REFER (named by the check): its refer.response event. ``args``: what the
        onreply route read natively (refer.REPLY_ARGS)."""
        return self.refers.ksr_onreply_refer(msg, None if args is None else KnownReply.parse(args))

    def _answer(self, status: int, reason: str) -> None:
        try:
            self.k.sl.sl_send_reply(status, reason_phrase(reason))
        except Exception:
            log(self.k, "referee: could not answer the REFER:\n" + traceback.format_exc(), "err")


def make_native_hooks(ksr: KSR) -> NativeHooks:
    """The hooks from the drop-in's defines: ``mod_init``'s object in ``kamailio/referee_native.py``."""
    refers = make_refer_check(ksr)
    notifies = NotifyCapture(ksr, refers.events, refers.answers)
    return NativeHooks(ksr, refers.settings, refers, notifies, referrer_source(ksr.kx.get_def))
