"""Kamailio KEMI adapter: the proxy's routing logic, with every REFER decided by referee.policy.

Runs inside Kamailio's embedded python3 (app_python3, ``cfgengine "python"``): stdlib only,
no virtualenv. ``kamailio/referee_kemi.py`` puts this package on ``sys.path`` and returns
:func:`make_handler`'s object from ``mod_init``. Unit tests pass the in-memory fake from
:mod:`referee.testing.fake_ksr` instead of the real ``KSR`` module.

This module translates, the policy decides: SIP in, :meth:`referee.policy.Policy.decide`
called, the decision applied (reply or rewrite and relay), and one JSON line written per
REFER and per NOTIFY of its implicit subscription.

Settings come from ``#!define`` names in kamailio.cfg (read with ``KSR.kx.get_def``):

=====================  ===========================================================
REFEREE_POLICY         policy TOML file (re-read when its mtime/size/inode change)
REFEREE_POLICY_CHECK   seconds between two looks at the policy file (0: never, RPC only)
                       ``kamcmd pv.shvSet referee_reload int N`` (any new N) forces a re-read
REFEREE_EVENTS         JSON-lines event file (decision and outcome per transfer)
REFEREE_DOMAIN         SIP domain and digest realm
REFEREE_PBXS           ``name=sip:host:port`` items, space separated
REFEREE_USERS          ``user:password:pbxname`` items, space separated
REFEREE_DIALOG_TABLE   htable name of the dialog -> PBX map (default ``referee_dlg``)
=====================  ===========================================================
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from referee import sip
from referee.kemi.dialogs import DialogRecord, DialogStore
from referee.kemi.events import EventLog
from referee.kemi.policy_holder import PolicyHolder
from referee.kemi.settings import BadRequest, Settings
from referee.policy import Decision, Dialog, Policy, load_policy

if TYPE_CHECKING:
    from referee.kemi_types import KSR

# Upper bound on a Refer-To (or Replaces) header value the proxy will look at.
MAX_HEADER_VALUE = 2048
SCANNER_UA_WORDS = ("friendly-scanner", "sipcli", "sipvicious", "vaxsipuseragent", "sundayddr", "pplsip")
MAX_FORWARDS = 10
# Shared variable an operator bumps to make every worker re-read the policy now.
RELOAD_PV = "$shv(referee_reload)"
_UNSEEN = object()
REFER_RATE_REPLY = (503, "Too Many Transfers")


# --- helpers -------------------------------------------------------------------------------


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _user_of(uri: str) -> str:
    try:
        return sip.parse_uri(uri).user or ""
    except sip.SipSyntaxError:
        return ""


def _is_scanner(ua: str) -> bool:
    lowered = ua.lower()
    return any(word in lowered for word in SCANNER_UA_WORDS)


# --- the routing logic ---------------------------------------------------------------------


class Referee:
    """The object ``mod_init`` returns. app_python3 calls its ``ksr_*`` methods by name."""

    def __init__(
        self,
        ksr: KSR,
        settings: Settings,
        loader: Callable[[str], Policy],
        *,
        reload_interval: float = 1.0,
    ) -> None:
        self.k = ksr
        self.settings = settings
        self.policies = PolicyHolder(settings.policy_path, loader, self._log, interval=reload_interval)
        self.events = EventLog(settings.events_path, on_error=lambda text: self._log(text, "err"))
        self.dialogs = DialogStore(ksr, settings.dialog_table)
        self._pbx_hosts = settings.pbx_hosts
        self._replied = False
        self._refer_owner: str | None = None  # PBX holding the dialog a REFER's Replaces names
        self._reload_generation: object = _UNSEEN
        self.method = ""  # of the request being routed
        self.srcip = ""

    def _log(self, text: str, level: str = "info") -> None:
        """Log one line (KSR log functions do not add the newline)."""
        log: Callable[[str], None] = getattr(self.k, level)
        log(text if text.endswith("\n") else text + "\n")

    # -- entry points (never let an exception escape: app_python3 would log it and the error
    #    state would leak into the next KSR call) -----------------------------------------

    def child_init(self, rank: int) -> int:
        return 0

    def ksr_request_route(self, msg: object) -> int:
        self._replied = False
        self._refer_owner = None
        self.method = ""
        self.srcip = ""
        try:
            self.route_request()
        except BadRequest as exc:
            self.reply(exc.status, exc.reason)
        except UnicodeDecodeError as exc:
            # Bad input, not a bug: a header value app_python3 cannot decode.
            self._log(f"referee: request with bytes that are not UTF-8 rejected ({exc.reason})", "notice")
            if not self._replied and self.method != "ACK":
                self.reply(400, "Bad Request (not UTF-8)")
        except Exception:
            self._fail(500, "Server Internal Error")
        return 1

    def ksr_reply_route(self, msg: object) -> int:
        return 1

    def ksr_onsend_route(self, msg: object) -> int:
        return 1

    def ksr_onreply_invite(self, msg: object) -> int:
        """tm onreply for initial INVITEs: learn the to-tag of the dialog."""
        try:
            status = self.k.kx.get_status()
            if 100 < status < 300:
                to_tag = _str(self.k.pv.get("$tt"))
                if to_tag:
                    self.dialogs.set_to_tag(_str(self.k.kx.get_callid()), to_tag)
        except Exception:
            self._log("referee: onreply failed:\n" + traceback.format_exc(), "err")
        return 1

    def ksr_onreply_refer(self, msg: object) -> int:
        """tm onreply for relayed REFERs: record the answer (202, 4xx...) of the transfer."""
        try:
            status = self.k.kx.get_status()
            if status >= 200:
                self.events.write(
                    {
                        "event": "refer.response",
                        "call_id": _str(self.k.kx.get_callid()),
                        "cseq": _str(self.k.pv.get("$cs")),
                        "status": status,
                    }
                )
        except Exception:
            self._log("referee: REFER onreply failed:\n" + traceback.format_exc(), "err")
        return 1

    def _fail(self, status: int, reason: str) -> None:
        self._log("referee: request route failed, rejecting:\n" + traceback.format_exc(), "err")
        try:
            if not self._replied and self.method != "ACK":
                self.reply(status, reason)
        except Exception:
            self._log("referee: could not send the failure reply:\n" + traceback.format_exc(), "err")

    def reply(self, status: int, reason: str) -> None:
        self._replied = True
        self.k.sl.sl_send_reply(status, reason)

    def relay(self) -> None:
        if self.k.tm.t_relay() < 0:
            self.k.sl.sl_send_reply(500, "Relay Failed")
        self._replied = True

    # -- routing ------------------------------------------------------------------------

    def route_request(self) -> None:
        k = self.k
        # Read once: every KSR call crosses from Python into Kamailio.
        self.method = method = _str(k.kx.get_method()).upper()
        self.srcip = _str(k.kx.get_srcip())
        if method == "KDMQ":
            k.dmq.handle_message()
            return
        if k.maxfwd.process_maxfwd(MAX_FORWARDS) < 0:
            self.reply(483, "Too Many Hops")
            return
        if k.sanity.sanity_check_defaults() < 0:
            self._log("referee: malformed request dropped by sanity checks")
            return
        if _is_scanner(_str(k.kx.get_ua())):
            self._log(f"referee: scanner user agent from {self.srcip} dropped")
            k.set_drop()
            return
        from_pbx = self.source_pbx() is not None
        if method == "REFER" and not from_pbx and k.pike.pike_check_req() < 0:
            self.reply(*REFER_RATE_REPLY)
            return
        if method == "CANCEL":
            if k.tm.t_check_trans() > 0:
                self.relay()
            return
        if method != "ACK":
            if k.tmx.t_precheck_trans() > 0:  # retransmission of a request being handled
                k.tm.t_check_trans()
                return
            if k.tm.t_check_trans() == 0:
                return
        if k.siputils.has_totag() > 0:
            self.route_in_dialog()
            return
        if method == "ACK":
            if k.tm.t_check_trans() > 0:
                self.relay()
            return
        k.hdr.remove("Route")
        if method == "REGISTER":
            self.route_register()
            return
        if method == "OPTIONS" and not _str(k.kx.get_ruri()).partition("@")[1]:
            self.reply(200, "OK")  # keepalive to the proxy itself
            return
        if method == "REFER":
            # record_route after the Refer-To rewrite: msg_apply_changes refuses to run
            # once a Record-Route lump is in place.
            if self.handle_refer():
                k.rr.record_route()
                self.route_out_of_dialog_refer()
            return
        if method in ("INVITE", "SUBSCRIBE"):
            k.rr.record_route()
        if method == "INVITE" and k.hdr.is_present("Replaces") > 0:
            self.route_replaces()
            return
        self.route_initial()

    def route_in_dialog(self) -> None:
        k = self.k
        method = self.method
        if k.rr.loose_route() > 0:
            if method == "REFER":
                if not self.handle_refer():
                    return
            elif method == "NOTIFY":
                self.handle_notify()
            elif method == "BYE":
                self.dialogs.forget(_str(k.kx.get_callid()))
            self.relay()
            return
        if method == "ACK":
            if k.tm.t_check_trans() > 0:
                self.relay()
            return
        self.reply(404, "Not Here")

    def route_register(self) -> None:
        k = self.k
        realm = self.settings.domain
        user = self.settings.users.get(_str(k.kx.get_au()))
        if user is None or k.auth.pv_auth_check(realm, user.password, 0, 1) < 0:
            k.auth.auth_challenge(realm, 1)
            self._replied = True
            return
        k.auth.consume_credentials()
        if k.registrar.save("location", 0) < 0:
            self.reply(500, "Registration Failed")
        self._replied = True

    def source_pbx(self) -> str | None:
        return self._pbx_hosts.get(self.srcip)

    def home_pbx(self, user: str) -> str | None:
        found = self.settings.users.get(user)
        return found.pbx if found else None

    def route_initial(self) -> None:
        """A new request: from a PBX to a registered phone, or from a phone to its PBX."""
        k = self.k
        source = self.source_pbx()
        if source is not None:
            if k.registrar.lookup("location") < 0:
                self.reply(404, "Not Found")
                return
            pbx = source
        else:
            home = self.home_pbx(_str(k.kx.get_fuser()))
            if home is None:
                self.reply(403, "Unknown Caller")
                return
            pbx = home
            k.setdsturi(self.settings.pbxs[pbx])
        if self.method == "INVITE":
            self.remember_dialog(pbx)
            k.tm.t_on_reply("ksr_onreply_invite")
        self.relay()

    def remember_dialog(self, pbx: str) -> None:
        k = self.k
        self.dialogs.put(
            DialogRecord(
                call_id=_str(k.kx.get_callid()),
                pbx=pbx,
                from_tag=_str(k.pv.get("$ft")),
                to_tag="",
                from_user=_str(k.kx.get_fuser()),
                to_user=_user_of(_str(k.kx.get_turi())),
            )
        )

    def route_replaces(self) -> None:
        """INVITE with Replaces: to the PBX holding the replaced dialog, or 481."""
        k = self.k
        value = self.single_header("Replaces")
        try:
            replaces = sip.parse_replaces(value)
        except sip.SipSyntaxError as exc:
            raise BadRequest(400, f"Bad Replaces ({exc.reason})") from None
        record = self.dialogs.get(replaces.call_id)
        if record is None or not record.has_tags(replaces.from_tag, replaces.to_tag):
            self._log(f"referee: INVITE Replaces unknown dialog {replaces.call_id!r}")
            self.reply(481, "Call/Transaction Does Not Exist")
            return
        source = self.source_pbx()
        if source == record.pbx:
            # The owning PBX replaces a dialog of its own with a phone: to the phone.
            if k.registrar.lookup("location") < 0:
                self.reply(404, "Not Found")
                return
        else:
            k.setdsturi(self.settings.pbxs[record.pbx])
        self._log(f"referee: INVITE Replaces {replaces.call_id!r} routed to {record.pbx}")
        self.remember_dialog(record.pbx)
        k.tm.t_on_reply("ksr_onreply_invite")
        self.relay()

    # -- REFER --------------------------------------------------------------------------

    def single_header(self, name: str) -> str:
        """The one value of header ``name``; BadRequest when missing, repeated, too long."""
        k = self.k
        count = k.pv.get(f"$hdrc({name})")
        if not count:
            raise BadRequest(400, f"Missing {name}")
        if isinstance(count, int) and count > 1:
            raise BadRequest(400, f"Multiple {name} Headers")
        try:
            value = k.hdr.get(name)
        except UnicodeDecodeError:  # app_python3 cannot hand a non-UTF-8 value to Python
            raise BadRequest(400, f"{name} Not UTF-8") from None
        if not isinstance(value, str):
            raise BadRequest(400, f"Unreadable {name}")
        if "," in value and name == "Refer-To" and "<" not in value:
            raise BadRequest(400, f"Multiple {name} Values")
        if len(value) > MAX_HEADER_VALUE:
            raise BadRequest(400, f"{name} Too Long")
        return value.strip()

    def handle_refer(self) -> bool:
        """Decide a REFER. True: allowed, headers rewritten, caller relays. False: answered."""
        k = self.k
        call_id = _str(k.kx.get_callid())
        cseq = _str(k.pv.get("$cs"))
        referrer = _str(k.kx.get_furi())
        event: dict[str, Any] = {
            "event": "refer.decision",
            "call_id": call_id,
            "cseq": cseq,
            "from": referrer,
            "src": self.srcip,
        }
        try:
            refer_to = self.single_header("Refer-To")
        except BadRequest as exc:
            return self._refer_rejected(event, exc.status, exc.reason, "bad-input")
        event["refer_to"] = refer_to
        refer_sub = _str(k.hdr.get("Refer-Sub")).strip().lower()
        event["subscription"] = refer_sub != "false"

        dialogs: tuple[Any, ...] = ()
        replaces = self._embedded_replaces(refer_to)
        owner: DialogRecord | None = None
        if replaces is not None:
            owner = self.dialogs.get(replaces.call_id)
            if owner is None or not owner.has_tags(replaces.from_tag, replaces.to_tag):
                return self._refer_rejected(event, 481, "Replaced Dialog Unknown", "replaces-unknown")
            if owner.has_party(_user_of(referrer)):
                dialogs = (Dialog(owner.call_id, owner.from_tag, owner.to_tag),)
            event["replaces_pbx"] = owner.pbx

        policy = self.policies.check(force=self._reload_requested())
        if policy is None:
            return self._refer_rejected(event, 500, "Transfer Policy Unavailable", "no-policy")
        decision: Decision = policy.decide(refer_to, referrer=referrer, dialogs=dialogs)
        event["decision"] = summary = decision.to_dict()
        if not decision.allowed:
            self.events.write(event)
            self._log(
                f"referee: REFER {call_id} cseq {cseq} from {referrer} to {refer_to!r} rejected "
                f"{decision.status} {decision.reason} (rule {decision.rule})",
                "notice",
            )
            self.reply(decision.status, decision.reason)
            return False
        new_refer_to = decision.refer_to or refer_to
        if owner is not None:
            # Attended transfer: the INVITE with Replaces must reach the PBX holding that dialog.
            new_refer_to = self._point_at(new_refer_to, self.settings.pbxs[owner.pbx])
        event["forwarded_refer_to"] = new_refer_to
        # An allowed decision's rule trace can be replayed offline (referee policy check
        # --explain); leaving it out halves the cost of the event on the hot path.
        summary.pop("trace", None)
        self.events.write(event)
        self._log(
            f"referee: REFER {call_id} cseq {cseq} from {referrer} allowed (rule {decision.rule}), "
            f"Refer-To {new_refer_to}"
        )
        if new_refer_to != refer_to:
            k.hdr.remove("Refer-To")
            k.hdr.append(f"Refer-To: {new_refer_to}\r\n")
        if k.hdr.is_present("Referred-By") < 0:
            k.hdr.append(f"Referred-By: <{referrer}>\r\n")
        if k.textopsx.msg_apply_changes() < 0:
            self._log("referee: msg_apply_changes failed; changes are still applied on relay", "warn")
        if owner is not None:
            self._refer_owner = owner.pbx
        k.tm.t_on_reply("ksr_onreply_refer")
        return True

    def _reload_requested(self) -> bool:
        """Whether ``kamcmd pv.shvSet referee_reload int N`` changed the shared reload counter."""
        generation = self.k.pv.get(RELOAD_PV)
        if generation == self._reload_generation:
            return False
        first = self._reload_generation is _UNSEEN
        self._reload_generation = generation
        return not first

    def _refer_rejected(self, event: dict[str, Any], status: int, reason: str, rule: str) -> bool:
        event["decision"] = {"allowed": False, "status": status, "reason": reason, "rule": rule}
        self.events.write(event)
        self._log(
            f"referee: REFER {event['call_id']} cseq {event['cseq']} rejected {status} {reason} "
            f"(rule {rule})",
            "notice",
        )
        self.reply(status, reason)
        return False

    @staticmethod
    def _point_at(refer_to: str, pbx_uri: str) -> str:
        target = sip.parse_refer_to(refer_to)
        pbx = sip.parse_uri(pbx_uri)
        return str(target.replace(uri=target.uri.replace(host=pbx.host, port=pbx.port)))

    @staticmethod
    def _embedded_replaces(refer_to: str) -> sip.Replaces | None:
        if "replaces" not in refer_to.lower():  # the common case: no need to parse twice
            return None
        try:
            value = sip.parse_refer_to(refer_to).uri.header("Replaces")
            return None if value is None else sip.parse_replaces(value)
        except sip.SipSyntaxError:
            return None  # the policy rejects a malformed Refer-To with its own reason

    def route_out_of_dialog_refer(self) -> None:
        """An allowed REFER outside a dialog: to the Replaces owner, the phone, or the home PBX."""
        k = self.k
        owner = self._refer_owner
        if owner is not None:
            k.setdsturi(self.settings.pbxs[owner])
        elif self.source_pbx() is not None:
            if k.registrar.lookup("location") < 0:
                self.reply(404, "Not Found")
                return
        else:
            home = self.home_pbx(_str(k.kx.get_fuser()))
            if home is None:
                self.reply(403, "Unknown Referrer")
                return
            k.setdsturi(self.settings.pbxs[home])
        self.relay()

    # -- NOTIFY of the implicit subscription -------------------------------------------

    def handle_notify(self) -> None:
        """Record the sipfrag status of a refer NOTIFY. Never blocks the NOTIFY."""
        k = self.k
        event_hdr = _str(k.hdr.get("Event")).strip()
        package, _, params = event_hdr.partition(";")
        if package.strip().lower() != "refer":
            return
        refer_cseq = ""
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "id":
                refer_cseq = value.strip()
        event: dict[str, Any] = {
            "event": "refer.outcome",
            "call_id": _str(k.kx.get_callid()),
            "cseq": _str(k.pv.get("$cs")),
            "refer_cseq": refer_cseq,
            "subscription_state": _str(k.hdr.get("Subscription-State")).strip(),
        }
        content_type = _str(k.hdr.get("Content-Type")).split(";")[0].strip().lower()
        body = _str(k.kx.get_body())
        if content_type == "message/sipfrag" and body:
            try:
                status = sip.parse_sipfrag(body)
                event.update(status=status.code, reason=status.reason, final=status.code >= 200)
            except sip.SipSyntaxError as exc:
                event["error"] = exc.reason
        else:
            event["error"] = f"no message/sipfrag body (Content-Type {content_type or 'absent'})"
        self.events.write(event)
        self._log(f"referee: transfer {event['call_id']} outcome {event.get('status', event.get('error'))}")


def make_handler(ksr: KSR) -> Referee:
    """Build the handler from the kamailio.cfg defines; called from ``mod_init``."""
    settings = Settings.from_defines(ksr.kx.get_def)
    return Referee(ksr, settings, load_policy, reload_interval=settings.policy_check)
