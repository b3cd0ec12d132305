"""The REFER check: given a KSR, decide with referee.policy, rewrite or reply, write the event.

Any KEMI script can use it (:class:`referee.kemi.routing.ReferenceProxy` does), and so can a
native kamailio.cfg through app_python3's ``python_exec`` (:mod:`referee.kemi.native`, whose
``route[REFEREE]`` drop-in calls :meth:`ReferCheck.check` and names ``ksr_onreply_refer`` as the
REFER's onreply route). ``python_exec`` returns 1 whatever the function returns: a native cfg learns
the verdict from a variable the entry point sets, not from :meth:`ReferCheck.route_refer`'s value.
This module translates, the policy decides.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from referee import sip
from referee.events import ReferDecision, ReferResponse
from referee.kemi.dialogs import DialogRecord, DialogStore
from referee.kemi.event_log import EventLog
from referee.kemi.hep import HepLog
from referee.kemi.message import log, number, reason_phrase, single_header, text, user_of
from referee.kemi.notify import ReferAnswers
from referee.kemi.policy_holder import PolicyHolder, PvSlot
from referee.kemi.settings import BadRequest, Settings
from referee.policy import Decision, Dialog, parse_policy

if TYPE_CHECKING:
    from referee.kemi.ksr import KSR

# Shared variable an operator bumps to make every worker re-read the policy now.
RELOAD_PV = "$shv(referee_reload)"
# Shared variable holding the last good policy file a worker loaded (see policy_holder).
POLICY_PV = "$shv(referee_policy)"
# ... and that file's policy version, for `referee policy status` (kamcmd pv.shvGet).
POLICY_VERSION_PV = "$shv(referee_policy_version)"
ALLOWED, ANSWERED = 1, -1  # route_refer's return values (python_exec: < 0 means stop)
# The REFER's facts a native cfg reads before python_exec and passes as its argument string (the
# drop-in's route[REFEREE]): each one read natively is one crossing into Kamailio fewer. Only values
# that are ASCII whatever the message holds (numbers, the source address): app_python3 could not hand
# a non-UTF-8 string to Python, and the call would fail before the check could answer.
REFER_ARGS = (
    "$si $(cs{s.int}) $hdrc(Refer-To) $hdrc(Refer-Sub) $hdrc(Referred-By) "
    "$shv(referee_reload) $var(referee_dialog)"
)
REPLY_ARGS = "$rs $(cs{s.int}) $hdrc(Refer-Sub)"


@dataclass(frozen=True, slots=True)
class Known:
    """What the calling cfg read of the REFER natively (``REFER_ARGS``, space separated)."""

    src: str
    cseq: int
    refer_to_count: int
    refer_sub: bool  # a Refer-Sub header is present (its value is read only then)
    referred_by: bool
    reload_generation: int
    in_dialog: bool  # the REFER has a To tag

    @classmethod
    def parse(cls, args: object) -> Known | None:
        """None when ``args`` is not what the drop-in passes (then the check reads through KSR)."""
        try:
            src, cseq, refer_to, refer_sub, referred_by, generation, dialog = text(args).split(" ")
            return cls(
                src,
                int(cseq),
                int(refer_to),
                int(refer_sub) > 0,
                int(referred_by) > 0,
                int(generation),
                dialog == "1",
            )
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class KnownReply:
    """What the calling cfg read of the REFER's reply natively (``REPLY_ARGS``)."""

    status: int
    cseq: int
    refer_sub: bool

    @classmethod
    def parse(cls, args: object) -> KnownReply | None:
        try:
            status, cseq, refer_sub = text(args).split(" ")
            return cls(int(status), int(cseq), int(refer_sub) > 0)
        except ValueError:
            return None


@dataclass
class _Asked:
    """What the proxy learnt of the REFER so far: the fields of its ReferDecision event."""

    call_id: str
    cseq: int
    referrer: str
    src: str
    refer_to: str | None = None
    forwarded_refer_to: str | None = None
    subscription: bool = True
    replaces_pbx: str | None = None


class ReferCheck:
    """Decides each REFER; keeps, per worker, the policy and the shared reload counter seen."""

    def __init__(
        self,
        ksr: KSR,
        settings: Settings,
        policies: PolicyHolder,
        events: EventLog,
        dialogs: DialogStore,
        *,
        reply: Callable[[int, str], None] | None = None,
        answers: ReferAnswers | None = None,
    ) -> None:
        self.k = ksr
        self.settings = settings
        self.policies = policies
        self.events = events
        self.dialogs = dialogs
        self._reply = reply or self._send_reply
        self.answers = answers  # relayed REFERs pending / answered, for the NOTIFY order
        self.hep = HepLog(ksr, settings.hep)  # each decision to Homer too, when siptrace is on
        # The cfg's initial value (shvset referee_reload=i:0), not the first one this worker reads: a worker
        # that handled no REFER before a `kamcmd pv.shvSet referee_reload` must still reload on its first.
        self._reload_generation: object = 0
        # PBX holding the dialog the last allowed REFER's Replaces names (None: no Replaces)
        self.owner: str | None = None

    # -- KEMI entry points -------------------------------------------------------------------

    def route_refer(self, msg: object) -> int:
        """For ``python_exec``: ALLOWED (rewritten, the caller relays) or ANSWERED."""
        return ALLOWED if self.check(text(self.k.kx.get_srcip())) else ANSWERED

    def ksr_onreply_refer(self, msg: object, known: KnownReply | None = None) -> int:
        """tm onreply for relayed REFERs: record the answer (202, 4xx...) of the transfer."""
        k = self.k
        try:
            status = known.status if known is not None else k.kx.get_status()
            if status >= 200:
                call_id = text(k.kx.get_callid())
                cseq = known.cseq if known is not None else number(k.pv.get("$cs"))
                # RFC 4488: a 2xx with Refer-Sub: false says no subscription (and no NOTIFY) follows
                no_sub = (
                    status < 300
                    and (known is None or known.refer_sub)
                    and text(k.hdr.get("Refer-Sub")).strip().lower() == "false"
                )
                self.events.write(
                    ReferResponse(self.events.now(), call_id, cseq, status, subscription=not no_sub)
                )
                if self.answers is not None:
                    self.answers.replying(call_id)  # last: marked now or when tm sends it
        except Exception:
            self._log_failure("referee: REFER onreply failed")
        return 1

    # -- the check ---------------------------------------------------------------------------

    def check(
        self,
        src: str,
        referrer: str | None = None,
        known: Known | None = None,
        *,
        in_dialog: bool | None = None,
    ) -> bool:
        """Decide the current REFER. True: allowed, headers rewritten, caller relays. False: answered.

        ``referrer`` is the identity the proxy authenticated (a URI); without one (a REFER from a
        trusted PBX, or a native cfg that does its own authentication) the From URI is the referrer.
        ``known``: what the calling cfg already read natively; the rest is read through KSR, once.
        ``in_dialog``: whether the REFER has a To tag, when the caller knows (None: look the dialog up).
        """
        k = self.k
        self.owner = None
        asked = self._asked(src, referrer, None if known is None else known.cseq)
        if "\x00" in asked.call_id:
            # Kamailio cannot take it back (the htables are keyed by Call-ID): refused the way app_python3
            # refuses it (the callers' bad-input handling), before anything is decided or recorded.
            raise ValueError("embedded null character in the Call-ID")
        try:
            refer_to = single_header(k, "Refer-To", None if known is None else known.refer_to_count)
        except BadRequest as exc:
            return self._rejected(asked, exc.status, exc.reason, "bad-input")
        asked.refer_to = refer_to
        call_id, cseq, referrer = asked.call_id, asked.cseq, asked.referrer
        if known is None or known.refer_sub:
            asked.subscription = text(k.hdr.get("Refer-Sub")).strip().lower() != "false"

        dialogs: tuple[Dialog, ...] = ()
        replaces = _embedded_replaces(refer_to)
        owner: DialogRecord | None = None
        if replaces is not None:
            owner = self.dialogs.get(replaces.call_id)
            if owner is None or not owner.named_by(replaces.from_tag, replaces.to_tag):
                return self._rejected(asked, 481, "Replaced Dialog Unknown", "replaces-unknown")
            if owner.has_party(user_of(referrer)):
                # The tags as the Replaces gives them: named_by checked them (the To tag may be unknown).
                dialogs = (Dialog(owner.call_id, replaces.from_tag, replaces.to_tag),)
            asked.replaces_pbx = owner.pbx or None  # none in an existing Kamailio: its routing decides

        generation = k.pv.get(RELOAD_PV) if known is None else known.reload_generation
        policy = self.policies.check(force=self._reload_requested(generation))
        if policy is None:
            return self._rejected(asked, 500, "Transfer Policy Unavailable", "no-policy")
        if known is not None:
            in_dialog = known.in_dialog
        depth = 0 if in_dialog is False else self._depth(call_id)  # no dialog lookup outside a dialog
        decision: Decision = policy.decide(refer_to, referrer=referrer, dialogs=dialogs, depth=depth)
        if not decision.allowed:
            self._write(asked, decision)
            log(
                k,
                f"referee: REFER {call_id} cseq {cseq} from {referrer} to {refer_to!r} rejected "
                f"{decision.status} {decision.reason} (rule {decision.rule})",
                "notice",
            )
            self._reply(decision.status, decision.reason)
            return False
        new_refer_to = decision.refer_to or refer_to
        if owner is not None and owner.pbx:
            # Attended transfer: the INVITE with Replaces must reach the PBX holding that dialog.
            new_refer_to = _point_at(new_refer_to, self.settings.pbxs[owner.pbx])
        asked.forwarded_refer_to = new_refer_to
        self._write(asked, decision)
        log(
            k,
            f"referee: REFER {call_id} cseq {cseq} from {referrer} allowed (rule {decision.rule}), "
            f"Refer-To {new_refer_to}",
        )
        self._rewrite(refer_to, new_refer_to, referrer, None if known is None else known.referred_by)
        if owner is not None and owner.pbx:
            self.owner = owner.pbx
        k.tm.t_on_reply("ksr_onreply_refer")
        if self.answers is not None:
            self.answers.relayed(call_id)
        return True

    def refuse(self, src: str, referrer: str, status: int, reason: str, rule: str) -> None:
        """Answer the current REFER without asking the policy (recorded like any decision)."""
        self._rejected(self._asked(src, referrer), status, reason, rule)

    def _asked(self, src: str, referrer: str | None, cseq: int | None = None) -> _Asked:
        k = self.k
        return _Asked(
            call_id=text(k.kx.get_callid()),
            cseq=number(k.pv.get("$cs")) if cseq is None else cseq,
            referrer=referrer or text(k.kx.get_furi()),
            src=src,
        )

    def _rewrite(self, refer_to: str, new_refer_to: str, referrer: str, referred_by: bool | None) -> None:
        k = self.k
        if new_refer_to != refer_to:
            k.hdr.remove("Refer-To")
            k.hdr.append(f"Refer-To: {new_refer_to}\r\n")
        if referred_by is None:
            referred_by = k.hdr.is_present("Referred-By") > 0
        if not referred_by:
            k.hdr.append(f"Referred-By: <{referrer}>\r\n")
        if k.textopsx.msg_apply_changes() < 0:
            log(k, "referee: msg_apply_changes failed; changes are still applied on relay", "warn")

    def _depth(self, call_id: str) -> int:
        """Transfers that led to the REFER's dialog, as the proxy saw them (0 outside a dialog)."""
        record = self.dialogs.get(call_id)
        return record.depth if record is not None else 0

    def refresh_policy(self) -> None:
        """Read a changed policy file (or the one a ``referee_reload`` asks for) without a REFER."""
        self.policies.check(force=self._reload_requested(self.k.pv.get(RELOAD_PV)))

    def _reload_requested(self, generation: object) -> bool:
        """Whether ``kamcmd pv.shvSet referee_reload int N`` changed the shared reload counter."""
        if generation is None or generation == self._reload_generation:  # None: a cfg without the counter
            return False
        self._reload_generation = generation
        return True

    def _write(self, asked: _Asked, decision: Decision) -> None:
        # An allowed decision's rule trace can be replayed offline (referee policy check --explain);
        # leaving it out (not even turning it into dicts) halves the cost of the event on the hot path.
        summary = (decision._replace(trace=()) if decision.allowed else decision).to_dict()
        if decision.allowed:
            del summary["trace"]
        for copied in ("allowed", "status", "reason", "rule"):  # the event carries them as fields
            del summary[copied]
        self._event(asked, decision.allowed, decision.status, decision.reason, decision.rule, summary)

    def _event(
        self, asked: _Asked, allowed: bool, status: int, reason: str, rule: str, summary: dict[str, Any]
    ) -> None:
        event = ReferDecision(
            time=self.events.now(),
            call_id=asked.call_id,
            cseq=asked.cseq,
            referrer=asked.referrer,
            src=asked.src,
            allowed=allowed,
            status=status,
            reason=reason,
            rule=rule,
            refer_to=asked.refer_to,
            forwarded_refer_to=asked.forwarded_refer_to,
            subscription=asked.subscription,
            replaces_pbx=asked.replaces_pbx,
            decision=summary,
            policy_version=self.policies.policy_version,
        )
        self.events.write(event)
        self.hep.decision(event)

    def _rejected(self, asked: _Asked, status: int, reason: str, rule: str) -> bool:
        """A REFER the proxy answers itself, before or instead of the policy."""
        self._event(asked, False, status, reason, rule, {})
        log(
            self.k,
            f"referee: REFER {asked.call_id} cseq {asked.cseq} rejected {status} {reason} (rule {rule})",
            "notice",
        )
        self._reply(status, reason)
        return False

    def _log_failure(self, what: str) -> None:
        log(self.k, f"{what}:\n{traceback.format_exc()}", "err")

    def _send_reply(self, status: int, reason: str) -> None:
        self.k.sl.sl_send_reply(status, reason_phrase(reason))


def _point_at(refer_to: str, pbx_uri: str) -> str:
    target = sip.parse_refer_to(refer_to)
    pbx = sip.parse_uri(pbx_uri)
    return str(target.replace(uri=target.uri.replace(host=pbx.host, port=pbx.port)))


def _embedded_replaces(refer_to: str) -> sip.Replaces | None:
    if "replaces" not in refer_to.lower():  # the common case: no need to parse twice
        return None
    try:
        value = sip.parse_refer_to(refer_to).uri.header("Replaces")
        return None if value is None else sip.parse_replaces(value)
    except sip.SipSyntaxError:
        return None  # the policy rejects a malformed Refer-To with its own reason


def policy_holder(ksr: KSR, settings: Settings) -> PolicyHolder:
    """The worker's policy, re-read from ``REFEREE_POLICY``, shared with the other workers."""
    return PolicyHolder(
        settings.policy_path,
        parse_policy,
        lambda line, level: log(ksr, line, level),
        interval=settings.policy_check,
        shared=PvSlot(ksr, POLICY_PV),
        shared_version=PvSlot(ksr, POLICY_VERSION_PV),
    )


def make_refer_check(ksr: KSR) -> ReferCheck:
    """The REFER check alone, from the kamailio.cfg defines: ``mod_init``'s object for a native cfg."""
    settings = Settings.from_defines(ksr.kx.get_def)
    events = EventLog(settings.events_path, on_error=lambda line: log(ksr, line, "err"))
    return ReferCheck(
        ksr,
        settings,
        policy_holder(ksr, settings),
        events,
        DialogStore(ksr, settings.dialog_table),
        answers=ReferAnswers(ksr),
    )
