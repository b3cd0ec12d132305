"""The transfer guard: channel variables in, a :mod:`referee.policy` decision, channel variables out.

Thin on purpose: it builds the Refer-To and the referrer the policy expects from what the
dialplan knows, asks :meth:`Policy.decide`, and writes the answer back as variables. It is
sans-I/O, so the process AGI (a stdlib loop) and the FastAGI server (asyncio) drive the same code:

    session = GuardSession(env, domain)
    while (name := session.wanted()) is not None:
        session.give(name, <GET VARIABLE name>)
    for name, value in session.answer(policy):
        <SET VARIABLE name value>

One round trip: the dialplan (``[referee-guard]``) passes every input in the request itself,
``agi://HOST:PORT/transfer-guard?target=1003&referred_by=...`` (FastAGI), or ``?target=...`` as the
process AGI's first argument: each value ``URIENCODE``d, keys as in :data:`QUERY_VARIABLES`. Then
nothing is asked (``wanted()`` is None at once) and the answer is one ``SET VARIABLE REFEREE_RESULT``:
the output variables in :data:`OUTPUT_VARIABLES` order, each percent-encoded, joined by ``|``; the
dialplan splits it with ``CUT`` and ``URIDECODE`` (:func:`decode_result` does the same in Python). Its
last field is ``REFEREE_ALLOWED``: a value cut short allows nothing. A request without a query is
the older dialplan's, answered as before: ``GET VARIABLE`` per input, one ``SET VARIABLE`` per output.

Inputs, in the transfer context (``TRANSFER_CONTEXT``):

- the target: the AGI's first argument, else ``${EXTEN}`` (``agi_extension``), asked about
  as ``<sip:EXTEN@DOMAIN>`` (escaped); for ``external_replaces`` it is ``${SIPREFERTOHDR}``;
- the referrer, the first of: the REFER's ``Referred-By`` (``SIPREFERREDBYHDR``, set by
  res_pjsip_refer), the transferer's channel (``TRANSFERERNAME``, ``BLINDTRANSFER``,
  ``ATTENDEDTRANSFER``, set by the bridging core: ``PJSIP/1002-0000001a`` -> ``1002``), or
  the caller ID number; as ``sip:USER@DOMAIN`` unless it is already a URI;
- the tenant domain: ``${REFEREE_DOMAIN}`` if the channel sets it, else the domain the adapter
  was configured with (``referee fastagi --domain``, ``$REFEREE_DOMAIN`` of the process AGI),
  else the policy's ``default_tenant``. A policy always has a default tenant (its first
  ``[[tenants]]`` when it names none), so a single-tenant PBX needs no domain setting, and
  there is no built-in domain that could silently match a policy it was never meant for.

Outputs: ``REFEREE_STATUS``, ``REFEREE_REASON``, ``REFEREE_RULE``, ``REFEREE_TARGET`` (the
rewritten Refer-To URI), ``REFEREE_TARGET_USER`` (its user part, what the dialplan dials),
``REFEREE_TENANT``, ``REFEREE_POLICY_VERSION`` (the short hash of the policy that decided, as in
the proxy's ``refer.decision`` events; empty with no policy), and last ``REFEREE_ALLOWED``
(``1``/``0``): a session cut short never leaves a stale allow behind. Any failure inside the
guard fails closed: ``REFEREE_ALLOWED=0`` with status 500 and the traceback in the log.

``external_replaces``: the dialog a Replaces names lives on another PBX, so this PBX cannot
know whether the referrer is a party to it; the proxy, which saw the REFER, checks that. The
guard asks the policy about the target only (the Refer-To without its Replaces header), and
the dialplan dials ``${SIPREFERTOHDR}`` unchanged, Replaces included.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from urllib.parse import quote, unquote

from referee.agi.quoting import MAX_VALUE, agi_quote
from referee.policy import Decision, Policy
from referee.sip import SipSyntaxError, Uri, parse_name_addr

log = logging.getLogger("referee.agi.guard")

EXTERNAL_REPLACES = "external_replaces"

#: Where the referrer comes from, best first. The first non-empty one is used.
REFERRER_VARIABLES = ("SIPREFERREDBYHDR", "TRANSFERERNAME", "BLINDTRANSFER", "ATTENDEDTRANSFER")

#: Output variables, in the order they are set; REFEREE_ALLOWED is always last.
OUTPUT_VARIABLES = (
    "REFEREE_STATUS",
    "REFEREE_REASON",
    "REFEREE_RULE",
    "REFEREE_TARGET",
    "REFEREE_TARGET_USER",
    "REFEREE_TENANT",
    "REFEREE_POLICY_VERSION",
    "REFEREE_ALLOWED",
)

#: The one-round-trip request's query keys, and the channel variable each carries; ``target`` is the
#: transfer target (what ``agi_arg_1``/``${EXTEN}`` is otherwise). Unknown keys are ignored.
QUERY_VARIABLES = {
    "domain": "REFEREE_DOMAIN",
    "refer_to": "SIPREFERTOHDR",
    "referred_by": "SIPREFERREDBYHDR",
    "transferer": "TRANSFERERNAME",
    "blind": "BLINDTRANSFER",
    "attended": "ATTENDEDTRANSFER",
}

#: The one variable a one-round-trip answer sets; and the longest value it may have. res_agi reads a
#: command line of 2,048 bytes in older Asterisks: a longer answer would be cut, so it is a refusal.
RESULT_VARIABLE = "REFEREE_RESULT"
MAX_RESULT = 1800
_RESULT_SEPARATOR = "|"
# Kept as they are in the encoded fields, for legible VarSet events; the rest is %XX. Never "|", "%",
# nor anything the dialplan parses ("," "(" ")" '"' "\\" "$" "[" "]" "{" "}"); URIDECODE leaves "+" alone.
_RESULT_SAFE = ":/@;=+"

# "PJSIP/1002-0000001a", "SIP/bob-00000001", "Local/1002@ctx-00000001;2": tech/RESOURCE-sequence.
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9_]+/(?P<resource>[^/]+?)-[0-9a-fA-F]{8}(?:;[12])?")


class GuardSession:
    """The inputs one guard call collects, and the variables it answers with."""

    def __init__(self, env: Mapping[str, str], domain: str | None = None) -> None:
        """``domain``: the tenant domain the adapter was configured with, if any."""
        self.callerid = env.get("agi_callerid", "")
        self.channel = env.get("agi_channel", "")
        self.configured_domain = domain or ""
        self.policy_domain = ""  # the policy's default tenant: decide() fills it in
        self.values: dict[str, str] = {}
        self._wanted: list[str] = []
        self.query = request_query(env)
        if self.query is not None:  # one round trip: everything came with the request
            self.exten = self.query.get("target", "").strip()
            self.values = {var: self.query.get(key, "").strip() for key, var in QUERY_VARIABLES.items()}
            return
        # AGI(url,TARGET) from a Gosub passes ${EXTEN} as the first argument.
        self.exten = env.get("agi_arg_1") or env.get("agi_extension", "")
        self._wanted = ["REFEREE_DOMAIN"]
        if self.exten == EXTERNAL_REPLACES:
            self._wanted.append("SIPREFERTOHDR")
        self._wanted += REFERRER_VARIABLES

    @property
    def external_replaces(self) -> bool:
        return self.exten == EXTERNAL_REPLACES

    def wanted(self) -> str | None:
        """The next channel variable to read, or None once the inputs are known."""
        if not self._wanted:
            return None
        name = self._wanted[0]
        if name in REFERRER_VARIABLES and any(self.values.get(v) for v in REFERRER_VARIABLES):
            self._wanted.clear()  # the referrer is known: stop asking
            return None
        return name

    def give(self, name: str, value: str | None) -> None:
        """The value of a channel variable (None or "" when unset)."""
        if self._wanted and self._wanted[0] == name:
            self._wanted.pop(0)
        self.values[name] = (value or "").strip()

    @property
    def domain(self) -> str:
        """The domain of bare extensions and channel names: the channel's, the adapter's, the policy's."""
        return self.values.get("REFEREE_DOMAIN") or self.configured_domain or self.policy_domain

    def refer_to(self) -> str:
        """The Refer-To value the policy is asked about."""
        if not self.external_replaces:
            return f"<{Uri('sip', user=self.exten, host=self.domain)}>"
        header = self.values.get("SIPREFERTOHDR", "")
        if not header:
            return ""
        addr = parse_name_addr(header if header[0] in '<"' else f"<{header}>")
        uri = addr.uri.replace(headers=tuple((k, v) for k, v in addr.uri.headers if k.lower() != "replaces"))
        return str(addr.replace(uri=uri))

    def referrer(self) -> str:
        """The referrer URI the policy is asked about ("" when nothing names one)."""
        for name in REFERRER_VARIABLES:
            value = self.values.get(name, "")
            if not value:
                continue
            if name == "SIPREFERREDBYHDR":
                return value
            match = _CHANNEL_NAME.fullmatch(value)
            user = match.group("resource").split("@", 1)[0] if match else ""
            if user:
                return str(Uri("sip", user=user, host=self.domain))
        if self.callerid and self.callerid.lower() != "unknown":
            return str(Uri("sip", user=self.callerid, host=self.domain))
        return ""

    def answer(self, policy: Policy | None) -> list[tuple[str, str]]:
        """The SET VARIABLEs to send: :data:`RESULT_VARIABLE` alone for a one-round-trip request, else
        :meth:`decide`'s variables one by one."""
        return self.package(self.decide(policy))

    def package(self, variables: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """:meth:`decide`'s variables as they are sent: one encoded result for a one-round-trip request."""
        if self.query is None:
            return variables
        result = encode_result(variables)
        if len(result) > MAX_RESULT:
            log.error("transfer guard answer of %d characters on %s: refusing", len(result), self.channel)
            version = dict(variables)["REFEREE_POLICY_VERSION"]
            result = encode_result(_refused(500, "Transfer guard answer too long", "error", version))
        return [(RESULT_VARIABLE, result)]

    def decide(self, policy: Policy | None) -> list[tuple[str, str]]:
        """The output variables, in order. Never raises: a failure is a 500 and a refusal."""
        try:
            if policy is None:
                return _refused(503, "No transfer policy loaded", "unavailable")
            self.policy_domain = policy.default_tenant.domain
            version = _version_of(policy)
            try:
                refer_to = self.refer_to()
            except SipSyntaxError as err:
                return _refused(400, f"Bad SIPREFERTOHDR: {err.reason}", "syntax", version)
            referrer = self.referrer()
            decision = policy.decide(refer_to, referrer=referrer)
            log.info(
                "transfer %s -> %s on %s: %s",
                referrer or "(unknown)",
                refer_to or "(none)",
                self.channel or "(no channel)",
                _summary(decision),
            )
            return _variables(decision, version)
        except Exception:
            log.exception(
                "transfer guard failed on %s; refusing the transfer", self.channel or "(no channel)"
            )
            return _refused(500, "Transfer guard internal error", "error", _version_of(policy))


def set_variable_command(name: str, value: str) -> str:
    """The ``SET VARIABLE`` command line for one of :meth:`GuardSession.answer`'s variables. The
    one-round-trip result may be longer than other values: it is %-encoded, so quoting adds nothing."""
    limit = MAX_RESULT if name == RESULT_VARIABLE else MAX_VALUE
    return f"SET VARIABLE {agi_quote(name)} {agi_quote(value, limit)}"


def request_query(env: Mapping[str, str]) -> dict[str, str] | None:
    """The one-round-trip request's query (None when there is none): after the ``?`` of the FastAGI
    script (``agi_network_script``), or the process AGI's first argument when it starts with ``?``.

    Values are percent-decoded (``URIENCODE`` never writes ``+`` for a space, so ``+`` stays ``+``);
    the first of a repeated key wins.
    """
    script = env.get("agi_network_script", "")
    _, mark, text = script.partition("?")
    if not mark:
        arg = env.get("agi_arg_1", "")
        if not arg.startswith("?"):
            return None
        text = arg[1:]
    query: dict[str, str] = {}
    for pair in text.split("&"):
        key, _, value = pair.partition("=")
        if key and key not in query:
            query[key] = unquote(value, errors="replace")
    return query


def encode_result(variables: list[tuple[str, str]]) -> str:
    """The one value of a one-round-trip answer: the variables' values, in order, %-encoded, ``|``-joined."""
    return _RESULT_SEPARATOR.join(quote(value, safe=_RESULT_SAFE) for _, value in variables)


def decode_result(value: str) -> dict[str, str]:
    """What the dialplan makes of :data:`RESULT_VARIABLE` (``CUT`` then ``URIDECODE``): the output
    variables; ``REFEREE_ALLOWED`` is 1 only when the last field is exactly 1."""
    fields = value.split(_RESULT_SEPARATOR)
    out = {name: unquote(field) for name, field in zip(OUTPUT_VARIABLES, fields, strict=False)}
    out["REFEREE_ALLOWED"] = "1" if len(fields) == len(OUTPUT_VARIABLES) and fields[-1] == "1" else "0"
    return out


def _summary(decision: Decision) -> str:
    if decision.allowed:
        return f"ALLOW rule {decision.rule} target {decision.target}"
    return f"REJECT {decision.status} {decision.reason} (rule {decision.rule})"


def _version_of(policy: Policy | None) -> str:
    try:
        return str(getattr(policy, "version", "") or "")
    except Exception:  # the guard's own failure path must not fail
        return ""


def _variables(decision: Decision, version: str) -> list[tuple[str, str]]:
    target = decision.target
    return [
        ("REFEREE_STATUS", str(decision.status)),
        ("REFEREE_REASON", decision.reason),
        ("REFEREE_RULE", decision.rule),
        ("REFEREE_TARGET", "" if target is None else str(target)),
        ("REFEREE_TARGET_USER", "" if target is None else target.user or ""),
        ("REFEREE_TENANT", decision.tenant or ""),
        ("REFEREE_POLICY_VERSION", version),
        ("REFEREE_ALLOWED", "1" if decision.allowed else "0"),
    ]


def _refused(status: int, reason: str, rule: str, version: str = "") -> list[tuple[str, str]]:
    return [
        ("REFEREE_STATUS", str(status)),
        ("REFEREE_REASON", reason),
        ("REFEREE_RULE", rule),
        ("REFEREE_TARGET", ""),
        ("REFEREE_TARGET_USER", ""),
        ("REFEREE_TENANT", ""),
        ("REFEREE_POLICY_VERSION", version),
        ("REFEREE_ALLOWED", "0"),
    ]
