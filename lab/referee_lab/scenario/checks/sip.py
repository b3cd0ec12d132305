"""The SIP side of a run: the proxy's REFER decisions and the capture's ladder (keys of ``[expect]``).

Always chosen (every scenario has phones): it notes the proxy's decisions even when ``[expect]`` asks
nothing. Its keys, each optional:

- ``refer_statuses``: the proxy's REFER decisions in order (202 allowed, 403 refused...), from its event
  file (:mod:`referee.events` ``ReferDecision``);
- ``notify_to`` / ``notify_final``: the last NOTIFY sipfrag the phone got from the proxy, in CSeq order
  (NOTIFYs may overtake each other through the proxy's workers; their CSeq numbers cannot); ``none``
  when it got none;
- ``notify_sipfrags`` (with ``notify_to``): all of those sipfrags, in CSeq order;
- ``invite_responses``: hops and statuses (``"proxy>pbx1 486"``...) of final responses to an INVITE that
  the capture must hold (what the transfer's new call was answered, hop by hop);
- ``no_invite_after_refer_from``: nodes (``pbx1``...) that send no INVITE once the first REFER was
  captured (a refused transfer calls nobody);
- ``invite_after_refer``: hops (``"pbx1>proxy"``...) that each carry an INVITE once the first REFER was
  captured (where the transfer's new call went);
- ``no_invite_to``: Request-URI users (``09098790000``...) that no INVITE of the capture names (a
  transfer the PBX refused calls nobody, even one that never passed the proxy);
- ``proxy_replies``: the proxy's own final answers (``"INVITE 503 pbx1"``: method, status, the PBX it
  went to) its event file must hold (:mod:`referee.events` ``ProxyReply``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from referee.events import Event, ProxyReply, ReferDecision
from referee_lab import ladder
from referee_lab.scenario import proxy_log
from referee_lab.scenario.context import Run

KEYS = (
    "refer_statuses",
    "notify_to",
    "notify_final",
    "notify_sipfrags",
    "invite_responses",
    "no_invite_after_refer_from",
    "invite_after_refer",
    "no_invite_to",
    "proxy_replies",
)
OWNS = tuple(f"expect.{key}" for key in KEYS)


@dataclass(frozen=True)
class SipCheck:
    refer_statuses: tuple[int, ...] | None = None
    notify_to: str = ""
    notify_final: str = ""
    notify_sipfrags: tuple[str, ...] | None = None
    invite_responses: tuple[str, ...] = ()
    no_invite_after_refer_from: tuple[str, ...] = ()
    invite_after_refer: tuple[str, ...] = ()
    no_invite_to: tuple[str, ...] = ()
    proxy_replies: tuple[str, ...] = ()

    def start(self, run: Run) -> None:
        pass

    def stop(self, run: Run) -> None:
        pass

    def problems(self, run: Run) -> list[str]:
        return self.check(run.messages, run.proxy_events)

    def check(self, messages: list[ladder.Message], events: Sequence[Event]) -> list[str]:
        """Problems with the expectations (empty when they hold)."""
        problems = []
        if self.refer_statuses is not None:
            got = tuple(e.status for e in events if isinstance(e, ReferDecision))
            if got != self.refer_statuses:
                problems.append(f"proxy REFER decisions {list(got)}, expected {list(self.refer_statuses)}")
        if self.notify_to:
            outcomes = ladder.notify_outcomes(messages, "proxy", self.notify_to)
            final = outcomes[-1] if outcomes else "none"
            if self.notify_final and final != self.notify_final:
                problems.append(f"last NOTIFY to {self.notify_to} was {final}, expected {self.notify_final}")
            if self.notify_sipfrags is not None and tuple(outcomes) != self.notify_sipfrags:
                want = list(self.notify_sipfrags)
                problems.append(f"NOTIFY sipfrags to {self.notify_to} were {outcomes}, expected {want}")
        for hop in self.invite_responses:
            path, _, status = hop.partition(" ")
            src, _, dst = path.partition(">")
            if not any(
                not m.is_request
                and m.src == src
                and m.dst == dst
                and m.label.startswith(f"{status} ")
                and m.label.endswith("(INVITE)")
                for m in messages
            ):
                problems.append(f"no {status} to an INVITE {src} -> {dst}")
        wants_refer = bool(self.no_invite_after_refer_from or self.invite_after_refer)
        if wants_refer and not any(m.is_request and m.label == "REFER" for m in messages):
            problems.append("no REFER captured")
        for hop in self.invite_after_refer:
            src, _, dst = hop.partition(">")
            if not any(m.dst == dst for m in ladder.requests_after(messages, "REFER", "INVITE", src)):
                problems.append(f"no INVITE {src} -> {dst} after the REFER")
        for node in self.no_invite_after_refer_from:
            if sent := ladder.requests_after(messages, "REFER", "INVITE", node):
                problems.append(f"{node} sent {len(sent)} INVITE(s) after the REFER (to {sent[0].dst} first)")
        for user in self.no_invite_to:
            if sent := [
                m for m in messages if m.is_request and m.label == "INVITE" and ladder.uri_user(m.uri) == user
            ]:
                problems.append(f"{len(sent)} INVITE(s) to {user} ({sent[0].src} -> {sent[0].dst} first)")
        replies = [f"{e.method} {e.status} {e.pbx}".strip() for e in events if isinstance(e, ProxyReply)]
        for wanted in self.proxy_replies:
            if wanted not in replies:
                problems.append(f"no proxy.reply {wanted} in the proxy's events (got {replies})")
        return problems

    def notes(self, run: Run) -> list[str]:
        notes = [line for e in run.proxy_events if (line := proxy_log.describe(e))]
        if self.notify_to:
            outcomes = ladder.notify_outcomes(run.messages, "proxy", self.notify_to)
            notes.append(f"NOTIFY sipfrags to {self.notify_to}, by CSeq: {', '.join(outcomes) or 'none'}")
        return notes


def load(scenario: str, data: Mapping[str, Any]) -> SipCheck:
    raw = data.get("expect", {})
    statuses = raw.get("refer_statuses")
    return SipCheck(
        refer_statuses=tuple(int(s) for s in statuses) if statuses is not None else None,
        notify_to=str(raw.get("notify_to", "")),
        notify_final=str(raw.get("notify_final", "")),
        notify_sipfrags=tuple(str(f) for f in frags)
        if (frags := raw.get("notify_sipfrags")) is not None
        else None,
        invite_responses=tuple(str(h) for h in raw.get("invite_responses", ())),
        no_invite_after_refer_from=tuple(str(n) for n in raw.get("no_invite_after_refer_from", ())),
        invite_after_refer=tuple(str(h) for h in raw.get("invite_after_refer", ())),
        no_invite_to=tuple(str(u) for u in raw.get("no_invite_to", ())),
        proxy_replies=tuple(str(r) for r in raw.get("proxy_replies", ())),
    )
