"""The reference proxy: the routing script the lab and the integration tests run in Kamailio.

Runs inside Kamailio's embedded python3 (app_python3, ``cfgengine "python"``): stdlib only,
no virtualenv. ``kamailio/referee_kemi.py`` puts this package on ``sys.path`` and returns
:func:`make_handler`'s object from ``mod_init``. Unit tests pass the in-memory fake from
:mod:`referee.testing.fake_ksr` instead of the real ``KSR`` module.

Its methods are the route blocks of Kamailio's own KEMI example
(``misc/examples/kemi/kamailio-basic-kemi-python.py``): :meth:`ReferenceProxy.ksr_request_route`
calls ``route_reqinit``, ``route_withindlg``, ``route_registrar``, ``route_refer`` and
``route_location``, which end in ``route_relay``. A block returns :data:`EXIT` when it has
dealt with the request. Every REFER goes through :class:`referee.kemi.refer.ReferCheck`,
every NOTIFY of a REFER through :class:`referee.kemi.notify.NotifyCapture`.

Settings come from ``#!define`` names in kamailio.cfg (read with ``KSR.kx.get_def``):

=====================  ===========================================================
REFEREE_POLICY         policy TOML file (re-read when its mtime/size/inode change)
REFEREE_POLICY_CHECK   seconds between two looks at the policy file (0: never, RPC only)
                       ``kamcmd pv.shvSet referee_reload int N`` (any new N) forces a re-read
REFEREE_EVENTS         JSON-lines event file (decision and outcome per transfer)
REFEREE_DOMAIN         SIP domain and digest realm
REFEREE_PBXS           ``name=sip:host:port`` items, space separated
REFEREE_CREDENTIALS    file of ``user:ha1:pbxname`` lines (HA1 = MD5(user:realm:password)), mode 0600
REFEREE_DMQ_PEERS      sip URIs of the other proxies, space separated: the only KDMQ senders
REFEREE_OUT_OF_DIALOG_REFER  a phone's REFER outside a dialog: ``refuse`` (403, default) or ``relay``
REFEREE_DIALOG_TABLE   htable name of the dialog -> PBX map (default ``referee_dlg``)
REFEREE_DIALOG_DB      SQLite file the dialog map is written through to (``-``: none)
REFEREE_PBX_PROBING    the dispatcher's OPTIONS interval to the PBXs (0: no probing)
=====================  ===========================================================

Requests go to a PBX through the ``dispatcher`` module (one set per PBX, in REFEREE_PBXS order):
a PBX that stopped answering its probes gets no request, the caller gets ``503`` with
``Retry-After`` at once. A relayed request that times out marks its PBX down until a probe is
answered again (``ksr_failure_relay``); the dispatcher's up/down events are written as
``pbx.health`` events (``ksr_dispatcher_event``).

Who may send what: the PBXs (by source address, ``REFEREE_PBXS``) are trusted; every other new
request is challenged (407) and relayed only with valid digest credentials, as the authenticated
user, whose From must be its own (403 unless the policy's ``send_as`` lets it). In-dialog requests
from anyone but a PBX must belong to a dialog in the dialog map; a REFER there is decided for the
phone the proxy authenticated (or delivered the call to) when the dialog was set up.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

from referee import sip
from referee.events import PbxHealth, ProxyReply, ReferResponse
from referee.kemi.dialogs import DialogDatabase, DialogRecord, DialogStore
from referee.kemi.event_log import EventLog
from referee.kemi.message import has_nul, log, number, reason_phrase, single_header, text, user_of
from referee.kemi.metrics import MeteredEventLog, proxy_metrics
from referee.kemi.notify import NotifyCapture, ReferAnswers
from referee.kemi.policy_holder import PolicyHolder
from referee.kemi.refer import Known, ReferCheck, policy_holder
from referee.kemi.settings import BadRequest, Settings

if TYPE_CHECKING:
    from referee.kemi.ksr import KSR

SCANNER_UA_WORDS = ("friendly-scanner", "sipcli", "sipvicious", "vaxsipuseragent", "sundayddr", "pplsip")
MAX_FORWARDS = 10
REFER_RATE_REPLY = (503, "Too Many Transfers")
FROM_MISMATCH = (403, "From Does Not Match Credentials")
NOT_OUR_DIALOG = (403, "Not A Dialog Of This Proxy")
NOT_A_PEER = (403, "Not A DMQ Peer")
OUT_OF_DIALOG_REFER = (403, "Out-Of-Dialog REFER Not Accepted")
AUTH_HA1 = 1  # pv_auth_check flags: the password given is the HA1
AUTH_QOP, AUTH_STALE = 1, 16  # auth_challenge flags: qop=auth; stale=true after an expired nonce
NONCE_EXPIRED = -4
PBX_DOWN_REPLY = (503, "Service Unavailable")
RETRY_AFTER = 10  # seconds: a few probe intervals, time for a restarted PBX to be seen up
EXIT, NEXT = -255, 1  # a route block dealt with the request / routing goes on


def _is_scanner(ua: str) -> bool:
    lowered = ua.lower()
    return any(word in lowered for word in SCANNER_UA_WORDS)


class ReferenceProxy:
    """The object ``mod_init`` returns. app_python3 calls its ``ksr_*`` methods by name."""

    def __init__(self, ksr: KSR, settings: Settings, policies: PolicyHolder) -> None:
        self.k = ksr
        self.settings = settings
        self.policies = policies
        self.metrics = proxy_metrics(ksr)  # Prometheus counters, when the cfg serves them (kemi/metrics.py)
        self.events: EventLog = MeteredEventLog(
            settings.events_path, self.metrics, on_error=lambda line: log(ksr, line, "err")
        )
        database = DialogDatabase(settings.dialog_db) if settings.dialog_db else None
        self.dialogs = DialogStore(ksr, settings.dialog_table, database)
        self.answers = answers = ReferAnswers.from_cfg(
            ksr
        )  # a NOTIFY waits for its REFER's 202 (kemi/notify.py)
        self.refers = ReferCheck(
            ksr, settings, policies, self.events, self.dialogs, reply=self.reply, answers=answers
        )
        self.notifies = NotifyCapture(ksr, self.events, answers)
        self._pbx_hosts = settings.pbx_hosts
        self._replied = False
        self.method = ""  # of the request being routed
        self.srcip = ""
        self.identity = ""  # the user the request authenticated as ("" from a PBX)

    # -- entry points (never let an exception escape: app_python3 would log it and the error
    #    state would leak into the next KSR call) -----------------------------------------

    def child_init(self, rank: int) -> int:
        self.policies.announce()  # the policy version, for `referee policy status`
        self.metrics.started(self.policies.policy_version)
        if self.dialogs.database is not None:
            self.dialogs.database.after_fork()
        return 0

    def ksr_request_route(self, msg: object) -> int:
        self._guarded(lambda: self._route(msg))
        return 1

    def _guarded(self, route: Callable[[], object], method: str = "") -> None:
        """Run a request route (fresh state) and turn what it raises into an answer."""
        self._replied = False
        self.method = method
        self.srcip = ""
        self.identity = ""
        try:
            route()
        except BadRequest as exc:
            self.reply(exc.status, exc.reason)
        except UnicodeDecodeError as exc:
            # Bad input, not a bug: a header value app_python3 cannot decode.
            log(self.k, f"referee: request with bytes that are not UTF-8 rejected ({exc.reason})", "notice")
            if not self._replied and self.method != "ACK":
                self.reply(400, "Bad Request (not UTF-8)")
        except Exception as exc:
            if not has_nul(exc):
                self._fail(500, "Server Internal Error")
            else:  # bad input, found by tests/fuzz/refer_proxy.py
                log(self.k, "referee: request with a NUL in a header value rejected", "notice")
                if not self._replied and self.method != "ACK":
                    self.reply(400, "Bad Request (NUL)")

    def ksr_reply_route(self, msg: object) -> int:
        return 1

    def ksr_onsend_route(self, msg: object) -> int:
        """Core onsend_route: every request relayed and, with ``onsend_route_reply=yes``, every reply,
        right before it is sent. Marks a REFER's answer sent (ReferAnswers.sending); 1: send it."""
        try:
            self.answers.sending()
        except Exception:
            log(self.k, "referee: onsend route failed:\n" + traceback.format_exc(), "err")
        return 1

    def ksr_onreply_invite(self, msg: object) -> int:
        """tm onreply for initial INVITEs: learn the to-tag of the dialog."""
        try:
            status = self.k.kx.get_status()
            if 100 < status < 300:
                to_tag = text(self.k.pv.get("$tt"))
                if to_tag:
                    self.dialogs.set_to_tag(text(self.k.kx.get_callid()), to_tag)
        except Exception:
            log(self.k, "referee: onreply failed:\n" + traceback.format_exc(), "err")
        return 1

    def ksr_onreply_refer(self, msg: object) -> int:
        """tm onreply for relayed REFERs (named by ReferCheck): the refer.response event."""
        return self.refers.ksr_onreply_refer(msg)

    def ksr_failure_relay(self, msg: object) -> int:
        """tm failure route of relayed requests: a branch that timed out without any reply is the
        proxy's own 408, written as an event (a REFER's as its refer.response); the PBX it went to
        (when the dispatcher chose it) is marked down and probed until it answers again."""
        k = self.k
        try:
            if k.tm.t_branch_timeout() < 0 or k.tm.t_branch_replied() > 0:
                return 1
            self.method = text(k.kx.get_method()).upper()
            self.srcip = text(k.kx.get_srcip())
            self.local_answer(408, "Request Timeout", self.destination_pbx())
            if self.settings.pbx_probing and k.dispatcher.ds_mark_dst_state("ip") > 0:
                log(k, f"referee: {self.method} {text(k.kx.get_callid())} timed out, its PBX is marked down")
        except Exception:
            log(k, "referee: failure route failed:\n" + traceback.format_exc(), "err")
        return 1

    def ksr_xhttp_event(self, msg: object, name: str = "") -> int:
        """xhttp's ``event_callback``: Prometheus scrapes ``GET /metrics`` (kemi/metrics.py)."""
        try:
            return self.metrics.serve()
        except Exception:
            log(self.k, "referee: metrics request failed:\n" + traceback.format_exc(), "err")
            return 1

    def ksr_policy_timer(self, msg: object, name: str = "") -> int:
        """rtimer's tick (kamailio.cfg, every second, its own process; rtimer passes the event name): a pushed
        policy is read and its version published for ``referee policy status`` before any REFER arrives;
        once a minute, expired dialogs leave the dialog database."""
        try:
            self.refers.refresh_policy()
            self.dialogs.prune_when_due()
        except Exception:  # a timer that raises is not called again; the next tick retries
            log(self.k, "referee: policy timer: " + traceback.format_exc(), "err")
        return NEXT

    def ksr_dispatcher_event(self, msg: object, name: str = "") -> int:
        """The dispatcher's ``event_callback``: a PBX went down (``dispatcher:dst-down``) or came back
        up (``dispatcher:dst-up``). ``$ru`` is the destination."""
        k = self.k
        try:
            uri = text(k.pv.get("$ru"))
            up = name.endswith("dst-up")
            pbx = self.settings.pbx_of_uri(uri) or ""
            self.events.write(PbxHealth(self.events.now(), pbx, uri, up))
            log(k, f"referee: PBX {pbx or uri} is {'up' if up else 'down'}", "notice" if up else "warn")
        except Exception:
            log(k, "referee: dispatcher event failed:\n" + traceback.format_exc(), "err")
        return 1

    def _fail(self, status: int, reason: str) -> None:
        log(self.k, "referee: request route failed, rejecting:\n" + traceback.format_exc(), "err")
        try:
            if not self._replied and self.method != "ACK":
                self.reply(status, reason)
                self.local_answer(status, reason)
        except Exception:
            log(self.k, "referee: could not send the failure reply:\n" + traceback.format_exc(), "err")

    def reply(self, status: int, reason: str) -> None:
        self._replied = True
        self.k.sl.sl_send_reply(status, reason_phrase(reason))

    def local_answer(self, status: int, reason: str, pbx: str = "") -> None:
        """The proxy answered a relayed (or to be relayed) request itself: written like any other final
        answer, a REFER's as its refer.response marked ``local``, any other method's as a proxy.reply
        (``pbx``: the PBX it went or was to go to). Not an OPTIONS: keepalives and qualify pings carry
        no call, and one to a phone that is off would write a line every qualify interval."""
        if self.method in ("", "ACK", "CANCEL", "OPTIONS"):
            return
        k = self.k
        call_id, cseq = text(k.kx.get_callid()), number(k.pv.get("$cs"))
        now = self.events.now()
        if self.method == "REFER":
            self.events.write(ReferResponse(now, call_id, cseq, status, reason, local=True))
        else:
            reply = ProxyReply(now, self.method, status, reason, call_id, cseq or None, pbx, self.srcip)
            self.events.write(reply)

    # -- the request route -------------------------------------------------------------------

    def _route(self, msg: object) -> None:
        k = self.k
        # Read once: every KSR call crosses from Python into Kamailio.
        self.method = method = text(k.kx.get_method()).upper()
        self.srcip = text(k.kx.get_srcip())
        if method == "KDMQ":
            if self.srcip in self.settings.dmq_hosts:
                k.dmq.handle_message()
            else:
                log(k, f"referee: KDMQ from {self.srcip}, no DMQ peer, refused", "notice")
                self.reply(*NOT_A_PEER)
            return
        if self.route_reqinit(msg) == EXIT:
            return
        if method == "CANCEL":
            if k.tm.t_check_trans() > 0:
                self.route_relay(msg)
            return
        if method != "ACK":
            if k.tmx.t_precheck_trans() > 0:  # retransmission of a request being handled
                k.tm.t_check_trans()
                return
            if k.tm.t_check_trans() == 0:
                return
        if self.route_withindlg(msg) == EXIT:
            return
        if method == "ACK":
            if k.tm.t_check_trans() > 0:
                self.route_relay(msg)
            return
        k.hdr.remove("Route")
        if self.route_registrar(msg) == EXIT:
            return
        if method == "OPTIONS" and not text(k.kx.get_ruri()).partition("@")[1]:
            self.reply(200, "OK")  # keepalive to the proxy itself
            return
        if self.route_auth(msg) == EXIT:
            return
        if method == "REFER":
            self.route_refer(msg)
            return
        if method in ("INVITE", "SUBSCRIBE"):
            k.rr.record_route()
        if method == "INVITE" and k.hdr.is_present("Replaces") > 0:
            self.route_replaces(msg)
            return
        self.route_location(msg)

    def route_reqinit(self, msg: object) -> int:
        """Per-request checks: max-forwards, sanity, scanners, the REFER rate limit."""
        k = self.k
        if k.maxfwd.process_maxfwd(MAX_FORWARDS) < 0:
            self.reply(483, "Too Many Hops")
            return EXIT
        if k.sanity.sanity_check_defaults() < 0:
            log(k, "referee: malformed request dropped by sanity checks")
            return EXIT
        if _is_scanner(text(k.kx.get_ua())):
            log(k, f"referee: scanner user agent from {self.srcip} dropped")
            k.set_drop()
            return EXIT
        if self.method == "REFER" and self.source_pbx() is None and k.pike.pike_check_req() < 0:
            self.reply(*REFER_RATE_REPLY)
            return EXIT
        return NEXT

    def route_withindlg(self, msg: object) -> int:
        """Requests with a to-tag follow the route set; REFER and NOTIFY are looked at first."""
        k = self.k
        if k.siputils.has_totag() <= 0:
            return NEXT
        method = self.method
        if k.rr.loose_route() > 0:
            record: DialogRecord | None = None
            if self.source_pbx() is None:
                record = self.dialogs.get(text(k.kx.get_callid()))
                if not self._in_dialog(record):
                    log(k, f"referee: in-dialog {method} from {self.srcip} outside a known dialog refused")
                    if method != "ACK":
                        self.reply(*NOT_OUR_DIALOG)
                    return EXIT
            if method == "REFER":
                return self.route_refer_in_dialog(msg, record)
            if method == "NOTIFY" and self.notifies.capture():
                return EXIT  # held: the cfg relays it once its REFER is answered (native_routing)
            if method == "BYE":
                self.dialogs.forget(text(k.kx.get_callid()))
            self.route_relay(msg)
            return EXIT
        if method == "ACK":
            if k.tm.t_check_trans() > 0:
                self.route_relay(msg)
            return EXIT
        self.reply(404, "Not Here")
        return EXIT

    def route_registrar(self, msg: object) -> int:
        """REGISTER: digest auth against the configured users, then save the contact."""
        k = self.k
        if self.method != "REGISTER":
            return NEXT
        if self._authenticate(checks=1) is None:  # 1: the credentials' user must be the To user
            return EXIT
        if k.registrar.save("location", 0) < 0:
            self.reply(500, "Registration Failed")
        self._replied = True
        return EXIT

    def route_auth(self, msg: object) -> int:
        """A new request from anyone but a PBX: digest credentials, and a From user that is theirs."""
        if self.source_pbx() is not None:
            return NEXT
        user = self._authenticate(checks=0)
        if user is None:
            return EXIT
        self.identity = user
        from_user = text(self.k.kx.get_fuser())
        if from_user != user and not self._may_send_as(from_user):
            log(
                self.k, f"referee: {self.method} authenticated as {user} with From user {from_user!r} refused"
            )
            self.reply(*FROM_MISMATCH)
            return EXIT
        return NEXT

    def route_refer_in_dialog(
        self, msg: object, record: DialogRecord | None, known: Known | None = None
    ) -> int:
        """A REFER in a dialog its route set led here: from a phone, decided for the phone the proxy vouched
        for in that dialog (``record``; none: 403), from a PBX for its From; relayed when allowed.
        ``known``: what a native route read of it (native_routing)."""
        referrer: str | None = None
        if self.source_pbx() is None:
            referrer = None if record is None else self._dialog_referrer(record)
            if referrer is None:
                self.reply(*NOT_OUR_DIALOG)
                return EXIT
        if self.refers.check(self.srcip, referrer, known):
            self.route_relay(msg)
        return EXIT

    def route_refer(self, msg: object, known: Known | None = None) -> int:
        """A REFER outside a dialog: checked, then to the Replaces owner, the phone, or the home PBX.
        ``known``: what a native route read of it (native_routing)."""
        k = self.k
        if self.source_pbx() is None and self.settings.out_of_dialog_refer == "refuse":
            self.refers.refuse(self.srcip, self.identity_uri(), *OUT_OF_DIALOG_REFER, "out-of-dialog")
            return EXIT
        if not self.refers.check(self.srcip, self.identity_uri() or None, known, in_dialog=False):
            return EXIT
        # record_route after the Refer-To rewrite: msg_apply_changes refuses to run once a
        # Record-Route lump is in place.
        k.rr.record_route()
        owner = self.refers.owner
        if owner is not None:
            if not self.to_pbx(owner):
                return EXIT
        elif self.source_pbx() is not None:
            if k.registrar.lookup("location") < 0:
                self.reply(404, "Not Found")
                return EXIT
        else:
            home = self.home_pbx(self.identity)
            if home is None:
                self.reply(403, "Unknown Referrer")
                return EXIT
            if not self.to_pbx(home):
                return EXIT
        return self.route_relay(msg)

    def route_location(self, msg: object) -> int:
        """A new request: from a PBX to a registered phone, or from a phone to its PBX."""
        k = self.k
        source = self.source_pbx()
        party = self.identity or user_of(text(k.kx.get_ruri()))  # the caller, or the phone called
        if source is not None:
            if k.registrar.lookup("location") < 0:
                self.reply(404, "Not Found")
                return EXIT
            pbx = source
        else:
            home = self.home_pbx(self.identity)
            if home is None:
                self.reply(403, "Unknown Caller")
                return EXIT
            pbx = home
            if not self.to_pbx(pbx):
                return EXIT
        if self.method in ("INVITE", "SUBSCRIBE"):  # a SUBSCRIBE dialog's in-dialog requests need it too
            self.remember_dialog(pbx, depth=1 if k.hdr.is_present("Referred-By") > 0 else 0, party=party)
            k.tm.t_on_reply("ksr_onreply_invite")
        return self.route_relay(msg)

    def route_replaces(self, msg: object) -> int:
        """INVITE with Replaces: to the PBX holding the replaced dialog, or 481."""
        k = self.k
        value = single_header(k, "Replaces")
        try:
            replaces = sip.parse_replaces(value)
        except sip.SipSyntaxError as exc:
            raise BadRequest(400, f"Bad Replaces ({exc.reason})") from None
        record = self.dialogs.get(replaces.call_id)
        # named_by: both tags, or the From tag of a record whose To tag is not known (read back from SQLite
        # after a restart, where the native routing keeps the INVITE's record); the PBX checks them too.
        if record is None or not record.named_by(replaces.from_tag, replaces.to_tag):
            log(k, f"referee: INVITE Replaces unknown dialog {replaces.call_id!r}")
            self.reply(481, "Call/Transaction Does Not Exist")
            return EXIT
        party = self.identity or user_of(text(k.kx.get_ruri()))
        if self.source_pbx() == record.pbx:
            # The owning PBX replaces a dialog of its own with a phone: to the phone.
            if k.registrar.lookup("location") < 0:
                self.reply(404, "Not Found")
                return EXIT
        elif not self.to_pbx(record.pbx):
            return EXIT
        log(k, f"referee: INVITE Replaces {replaces.call_id!r} routed to {record.pbx}")
        # an attended transfer of that dialog
        self.remember_dialog(record.pbx, depth=record.depth + 1, party=party)
        k.tm.t_on_reply("ksr_onreply_invite")
        return self.route_relay(msg)

    def route_relay(self, msg: object) -> int:
        k = self.k
        if self.method not in ("ACK", "CANCEL"):
            k.tm.t_on_failure("ksr_failure_relay")
        if k.tm.t_relay() < 0:
            k.sl.sl_send_reply(500, "Relay Failed")
            self.local_answer(500, "Relay Failed", self.destination_pbx())
        self._replied = True
        return EXIT

    def to_pbx(self, name: str) -> bool:
        """Send the request to PBX ``name`` (the dispatcher's set of it). False, answered ``503``
        with ``Retry-After``, when the PBX does not answer its probes."""
        k = self.k
        if k.dispatcher.ds_select_dst(self.settings.pbx_set(name), 0) > 0:
            return True
        log(k, f"referee: {self.method} {text(k.kx.get_callid())} not relayed, PBX {name} is down", "warn")
        k.hdr.append_to_reply(f"Retry-After: {RETRY_AFTER}\r\n")
        self.reply(*PBX_DOWN_REPLY)
        self.local_answer(*PBX_DOWN_REPLY, pbx=name)
        return False

    # -- helpers -------------------------------------------------------------------------------

    def destination_pbx(self) -> str:
        """The PBX the request is sent to, by the host of its next hop (``$du``: the dispatcher's
        choice, a loose route; else the request URI, an in-dialog request to the PBX's Contact); ""
        when it goes to a phone."""
        k = self.k
        try:
            host = sip.parse_uri(text(k.pv.get("$du")) or text(k.kx.get_ruri())).host
        except sip.SipSyntaxError:
            return ""
        return self._pbx_hosts.get(host, "")

    def source_pbx(self) -> str | None:
        return self._pbx_hosts.get(self.srcip)

    def home_pbx(self, user: str) -> str | None:
        found = self.settings.users.get(user)
        return found.pbx if found else None

    def identity_uri(self) -> str:
        """The authenticated user as the policy's referrer ("" for a request from a PBX)."""
        return f"sip:{self.identity}@{self.settings.domain}" if self.identity else ""

    def _authenticate(self, *, checks: int) -> str | None:
        """The user whose digest credentials the request carries, or None once challenged."""
        k = self.k
        realm = self.settings.domain
        user = self.settings.users.get(text(k.kx.get_au()))
        result = -1 if user is None else k.auth.pv_auth_check(realm, user.ha1, AUTH_HA1, checks)
        if user is None or result < 0:
            k.auth.auth_challenge(realm, AUTH_QOP | (AUTH_STALE if result == NONCE_EXPIRED else 0))
            self._replied = True
            return None
        k.auth.consume_credentials()  # the PBX gets no Proxy-Authorization
        return user.name

    def _may_send_as(self, from_user: str) -> bool:
        policy = self.policies.check()
        return policy is not None and policy.may_send_as(self.identity_uri(), from_user)

    def _in_dialog(self, record: DialogRecord | None) -> bool:
        """Whether the request's tags are those of a dialog the proxy routed."""
        if record is None:
            return False
        tags = {text(self.k.pv.get("$ft")), text(self.k.pv.get("$tt"))}
        if record.to_tag:
            return tags == {record.from_tag, record.to_tag}
        return record.from_tag in tags  # answer not seen yet: the request names the dialog's from-tag

    def _dialog_referrer(self, record: DialogRecord) -> str | None:
        """The phone the proxy vouched for in this dialog, as a URI; None when it cannot say."""
        if record.party:
            return f"sip:{record.party}@{self.settings.domain}"
        from_user = text(self.k.kx.get_fuser())  # a record older than the party field
        return text(self.k.kx.get_furi()) if record.has_party(from_user) else None

    def remember_dialog(self, pbx: str, *, depth: int, party: str = "") -> None:
        k = self.k
        self.dialogs.put(
            DialogRecord(
                call_id=text(k.kx.get_callid()),
                pbx=pbx,
                from_tag=text(k.pv.get("$ft")),
                to_tag="",
                from_user=text(k.kx.get_fuser()),
                to_user=user_of(text(k.kx.get_turi())),
                depth=depth,
                party=party,
            )
        )


def make_handler(ksr: KSR) -> ReferenceProxy:
    """Build the proxy from the kamailio.cfg defines; called from ``mod_init``. ``#!define
    REFEREE_ROUTING "native"``: the cfg routes natively and calls in with ``python_exec``
    (:mod:`referee.kemi.native_routing`); otherwise this object is the whole KEMI routing script."""
    settings = Settings.from_defines(ksr.kx.get_def)
    if text(ksr.kx.get_def("REFEREE_ROUTING")).strip().strip('"') == "native":
        from referee.kemi.native_routing import NativeRoutedProxy  # noqa: PLC0415 - it subclasses this module's

        return NativeRoutedProxy(ksr, settings, policy_holder(ksr, settings))
    return ReferenceProxy(ksr, settings, policy_holder(ksr, settings))
