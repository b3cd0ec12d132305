"""The full proxy with native routing: kamailio.cfg routes, Python is called only where referee decides.

``kamailio__routing: native`` (kamailio.cfg.j2) renders the proxy's routing as native kamailio.cfg
blocks, the same shape as an operator's cfg with referee's drop-in. INVITE, ACK, BYE, CANCEL,
REGISTER, OPTIONS... are authenticated and routed natively and never enter Python, except to change
the dialog map (an initial INVITE or SUBSCRIBE, a BYE; an answer's To tag is written natively), which stays
Python's :class:`referee.kemi.dialogs.DialogStore` so that it is written through to SQLite as before.
What referee decides runs in Python: a REFER once the cfg has checked what needs no policy (the
credentials, the dialog: :meth:`NativeRoutedProxy.refer`), and the whole Python route
(:meth:`ReferenceProxy.ksr_request_route`) for a NOTIFY of ``Event: refer`` and an INVITE with Replaces.

At ``mod_init`` (before Kamailio forks) the object publishes what the native routing needs in
htables of its own, from the same settings Python uses: ``referee_users`` (user -> ``HA1:PBX:SET``,
from the credentials file, which stays the only place the HA1s are kept), ``referee_pbxs`` (PBX
address -> ``PBX:SET``) and ``referee_dmq`` (DMQ peer address -> ``1``).

Every method here is a ``python_exec`` entry point: app_python3 passes the message and, where the cfg
gives one, a string of what it read natively. Each returns 1 and never raises (a raise would fail the
whole route); what the cfg must know comes back in a ``$var``.
"""

from __future__ import annotations

import math
import traceback
from typing import TYPE_CHECKING

from referee.kemi.message import log, text
from referee.kemi.refer import Known, KnownReply
from referee.kemi.routing import ReferenceProxy

if TYPE_CHECKING:
    from referee.kemi.ksr import KSR
    from referee.kemi.policy_holder import PolicyHolder
    from referee.kemi.settings import Settings

USERS_TABLE, PBXS_TABLE, DMQ_TABLE = "referee_users", "referee_pbxs", "referee_dmq"
IN_DIALOG_VAR = "$var(referee_in_dialog)"  # dialog_check: 1, the request's tags are a known dialog's
SEND_AS_VAR = "$var(referee_send_as)"  # send_as: 1, the policy lets the user send with that From
SEND_AS_NOT_UTF8 = 2  # send_as: the From user is not UTF-8
# A NOTIFY held for its REFER's answer waits suspended (async_ms_route), not in a SIP worker: the cfg waits
# this many milliseconds (0: relay it), then asks notify_held again; the hold's start travels with the
# suspended transaction in an AVP.
HOLD_MS_VAR, HOLD_STARTED_AVP = "$var(referee_hold_ms)", "$avp(referee_hold_started)"


class NativeRoutedProxy(ReferenceProxy):
    """The reference proxy's Python side when kamailio.cfg routes natively."""

    def __init__(self, ksr: KSR, settings: Settings, policies: PolicyHolder) -> None:
        super().__init__(ksr, settings, policies)
        self.notifies.defer = self.defer_notify
        self.publish()

    def publish(self) -> None:
        """Users, PBX addresses and DMQ peers into the htables the native routing reads."""
        sets = self.k.htable.sht_sets
        for user in self.settings.users.values():
            sets(USERS_TABLE, user.name, f"{user.ha1}:{user.pbx}:{self.settings.pbx_set(user.pbx)}")
        for host, pbx in self.settings.pbx_hosts.items():
            sets(PBXS_TABLE, host, f"{pbx}:{self.settings.pbx_set(pbx)}")
        for host in self.settings.dmq_hosts:
            sets(DMQ_TABLE, host, "1")

    # -- a REFER ---------------------------------------------------------------------------------

    def refer(self, msg: object, args: object = None) -> int:
        """route[REFER], once the native blocks have checked what needs no policy (max-forwards, sanity,
        the rate limit, retransmissions, the route set, the dialog or the credentials): ``REFER_ARGS`` and
        the authenticated user ("" for an in-dialog REFER or one from a PBX). Decided, then answered here
        or relayed, as the KEMI route does."""
        self._guarded(lambda: self._refer(msg, text(args)), method="REFER")
        return 1

    def _refer(self, msg: object, args: str) -> None:
        fields = args.split(" ")
        known = Known.parse(" ".join(fields[:7]))
        if known is None:
            raise ValueError(f"route[REFER] passed {args!r}, not REFER_ARGS and a user")
        self.srcip = known.src
        self.identity = fields[7] if len(fields) > 7 else ""
        if not known.in_dialog:
            self.route_refer(msg, known)
            return
        # From a phone, route[DIALOG_CHECK] found the dialog: the REFER is decided for its party.
        record = self.dialogs.get(text(self.k.kx.get_callid())) if self.source_pbx() is None else None
        self.route_refer_in_dialog(msg, record, known)

    # -- the dialog map ------------------------------------------------------------------------

    def dialog_opened(self, msg: object, args: object = None) -> int:
        """route[LOCATION], before relaying an initial INVITE or SUBSCRIBE: ``PBX DEPTH [PARTY]``."""
        try:
            pbx, depth, party = [*text(args).split(" ", 2), ""][:3]
            self.remember_dialog(pbx, depth=int(depth), party=party)
        except Exception:
            log(self.k, "referee: dialog not recorded:\n" + traceback.format_exc(), "err")
        return 1

    def dialog_closed(self, msg: object) -> int:
        """A BYE that passed the in-dialog check, before it is relayed."""
        try:
            self.dialogs.forget(text(self.k.kx.get_callid()))
        except Exception:
            log(self.k, "referee: dialog not forgotten:\n" + traceback.format_exc(), "err")
        return 1

    def dialog_check(self, msg: object) -> int:
        """route[DIALOG_CHECK] when the htable cannot answer natively (no record: read back from
        SQLite after a restart; a record in the JSON form): ``$var(referee_in_dialog)`` 1 or 0."""
        k = self.k
        found = 0
        try:
            found = int(self._in_dialog(self.dialogs.get(text(k.kx.get_callid()))))
        except Exception:
            log(k, "referee: dialog check failed, refusing:\n" + traceback.format_exc(), "err")
        k.pv.seti(IN_DIALOG_VAR, found)
        return 1

    # -- NOTIFYs held without a worker ------------------------------------------------------------

    def defer_notify(self, call_id: str, started: float, wait: float) -> None:
        """NotifyCapture's ``defer``: the request route suspends the NOTIFY for ``wait`` seconds."""
        self.k.pv.sets(HOLD_STARTED_AVP, repr(started))
        self.k.pv.seti(HOLD_MS_VAR, max(1, math.ceil(wait * 1000)))

    def notify_held(self, msg: object) -> int:
        """route[REFEREE_NOTIFY_HELD], in an async worker after a wait: ``$var(referee_hold_ms)`` the next
        wait, or 0 and the cfg relays the NOTIFY. Any failure relays it: the hold only orders."""
        k = self.k
        wait = 0.0
        try:
            call_id = text(k.kx.get_callid())
            started = float(text(k.pv.get(HOLD_STARTED_AVP)))
            wait = self.answers.remaining(call_id, started)
            if wait <= 0:
                self.notifies.released(call_id, self.answers.now() - started)
        except Exception:
            log(k, "referee: NOTIFY relayed unheld:\n" + traceback.format_exc(), "err")
            wait = 0.0
        k.pv.seti(HOLD_MS_VAR, max(1, math.ceil(wait * 1000)) if wait > 0 else 0)
        return 1

    # -- who may send what ---------------------------------------------------------------------

    def send_as(self, msg: object) -> int:
        """route[AUTH]: the authenticated user sent a From user not its own. ``$var(referee_send_as)`` 1
        when the policy's ``send_as`` allows it, 0 when not, 2 when the From user is not UTF-8 (the cfg
        answers 400, as the Python route does for bytes it cannot decode)."""
        k = self.k
        verdict = 0
        try:
            self.identity = text(k.kx.get_au())
            verdict = int(self._may_send_as(text(k.kx.get_fuser())))
        except UnicodeDecodeError as exc:
            log(k, f"referee: request with bytes that are not UTF-8 rejected ({exc.reason})", "notice")
            verdict = SEND_AS_NOT_UTF8
        except Exception:
            log(k, "referee: send_as check failed, refusing:\n" + traceback.format_exc(), "err")
        k.pv.seti(SEND_AS_VAR, verdict)
        return 1

    # -- the proxy's own answers -----------------------------------------------------------------

    def pbx_down(self, msg: object, args: object = None) -> int:
        """route[TO_PBX] answered 503 (the PBX, ``args``, does not answer its probes): the event."""
        try:
            self.method = text(self.k.kx.get_method()).upper()
            self.srcip = text(self.k.kx.get_srcip())
            pbx, call_id = text(args), text(self.k.kx.get_callid())
            log(self.k, f"referee: {self.method} {call_id} not relayed, PBX {pbx} is down", "warn")
            self.local_answer(503, "Service Unavailable", pbx=pbx)
        except Exception:
            log(self.k, "referee: PBX-down event not written:\n" + traceback.format_exc(), "err")
        return 1

    def relay_failed(self, msg: object) -> int:
        """route[RELAY]: t_relay failed and the request was answered 500: the event."""
        try:
            self.method = text(self.k.kx.get_method()).upper()
            self.srcip = text(self.k.kx.get_srcip())
            self.local_answer(500, "Relay Failed", self.destination_pbx())
        except Exception:
            log(self.k, "referee: relay-failure event not written:\n" + traceback.format_exc(), "err")
        return 1

    def ksr_onreply_refer(self, msg: object, args: object = None) -> int:
        """onreply_route[ksr_onreply_refer], final replies only: ``STATUS CSEQ REFER_SUB_COUNT``."""
        return self.refers.ksr_onreply_refer(msg, None if args is None else KnownReply.parse(args))
