"""Deciding one REFER: the compiled policy and its rules, applied in a fixed order.

The order, each step a rule id in the trace (docs/policy.md lists what each one rejects with):
  syntax -> referrer (tenant) -> scheme -> method -> params -> headers -> replaces -> depth
  -> target -> prefix
The first step that rejects decides; otherwise the last rewrite is the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from re import Pattern

from referee.policy.model import Decision, Dialog, Trace, TraceStep
from referee.policy.uri_params import refused_header_params, screen
from referee.sip import (
    NameAddr,
    Params,
    Replaces,
    SipSyntaxError,
    Uri,
    parse_name_addr,
    parse_refer_to,
    parse_replaces,
    uri_param_text,
)

# tuple.__new__ builds a named tuple (a TraceStep, a Decision, a Uri with every field given) without
# its own __new__, one more Python call: a tenth of a microsecond each time on the decision path.
_new_tuple = tuple.__new__
_REFERRER_CACHE_SIZE = 4096
_USER_PHONE: Params = (("user", "phone"),)


@dataclass(frozen=True, slots=True)
class Settings:
    id: str
    allowed_schemes: frozenset[str]
    tel: str  # "convert" or "reject"
    allowed_methods: frozenset[str]
    forbidden_headers: frozenset[str]  # lower-case names
    on_forbidden_header: str  # "strip" or "reject"
    keep_headers: frozenset[str]  # lower-case names
    allowed_uri_parameters: frozenset[str]  # lower-case names; never maddr or transport
    on_uri_parameter: str  # "strip" or "reject"
    require_replaces_party: bool
    max_depth: int
    foreign_domains: str  # "reject" or "allow"


@dataclass(frozen=True, slots=True)
class PrefixRule:
    prefix: str  # E.164, starting with '+'
    allow: bool
    reason: str
    id: str
    rank: int  # scope: 0 policy, 1 tenant, 2 referrer


@dataclass(frozen=True, slots=True)
class Extension:
    id: str
    pattern: Pattern[str]
    pbx: Uri
    pbx_text: str = field(init=False, repr=False, compare=False)  # str(pbx), written once

    def __post_init__(self) -> None:
        object.__setattr__(self, "pbx_text", str(self.pbx))


@dataclass(frozen=True, slots=True)
class Tenant:
    domain: str
    names: frozenset[str]  # the domain and its aliases, lower case
    pbx: Uri
    country_code: str | None
    national_prefix: str | None
    international_prefix: str | None
    extensions: tuple[Extension, ...]
    prefix_rules: tuple[PrefixRule, ...]  # policy-wide and tenant rules, best first
    allowed_transports: frozenset[str] = frozenset()  # lower-case transport= values
    pbx_text: str = field(init=False, repr=False, compare=False)  # str(pbx), written once

    def __post_init__(self) -> None:
        object.__setattr__(self, "pbx_text", str(self.pbx))

    def extension(self, user: str) -> Extension | None:
        for ext in self.extensions:
            if ext.pattern.fullmatch(user):
                return ext
        return None

    def e164(self, number: str) -> str | None:
        """The E.164 form of a dialled number, or None if this tenant's plan cannot tell."""
        if number.startswith("+"):
            return number
        intl, national = self.international_prefix, self.national_prefix
        if intl and number.startswith(intl):
            return "+" + number[len(intl) :]
        if national and self.country_code and number.startswith(national):
            return f"+{self.country_code}{number[len(national) :]}"
        return None


@dataclass(frozen=True, slots=True)
class Override:
    id: str
    referrer: str  # user@host, host lower case
    prefix_rules: tuple[PrefixRule, ...]  # best first
    max_depth: int | None
    # From users this referrer may send as, though the proxy authenticated it as itself
    # ("*": any): a reception desk presenting the line it answers for.
    send_as: frozenset[str] = frozenset()


def _dialled(user: str) -> str:
    """A number as dialled, without its visual separators ("020-7946 0000"). Five replaces: twice as
    fast as str.translate, which looks each character up; a number without them is returned as is."""
    if user.isdigit():
        return user
    return user.replace("-", "").replace(".", "").replace("(", "").replace(")", "").replace(" ", "")


def user_at_host(uri: Uri) -> str:
    return f"{uri.user or ''}@{uri.host.lower()}"


def _best(rules: tuple[PrefixRule, ...], number: str) -> PrefixRule | None:
    for rule in rules:
        if number.startswith(rule.prefix):
            return rule
    return None


class Policy:
    """A compiled policy. Build it with :func:`referee.policy.load_policy`."""

    def __init__(
        self,
        settings: Settings,
        tenants: dict[str, Tenant],
        default_tenant: Tenant,
        overrides: dict[str, Override],
        numbers_allowed: bool,
        source: str,
        version: str = "",
    ) -> None:
        self.settings = settings
        self.tenants = tenants
        self.default_tenant = default_tenant
        self.overrides = overrides
        self.numbers_allowed = numbers_allowed
        self.source = source
        self.version = version  # short hash of the canonical content (loader.policy_version)

        # Referrers repeat (a handful of phones): remember what each one resolves to.
        self._referrers: dict[str, tuple[str, Tenant, str] | SipSyntaxError] = {}

    def referrer(self, text: str) -> tuple[str, Tenant, str] | SipSyntaxError:
        """(user@host, tenant, trace detail) for a referrer URI, or the reason it is malformed."""
        found = self._referrers.get(text)
        if found is None:
            found = self._resolve_referrer(text)
            if len(self._referrers) >= _REFERRER_CACHE_SIZE:
                self._referrers.clear()
            self._referrers[text] = found
        return found

    def _resolve_referrer(self, text: str) -> tuple[str, Tenant, str] | SipSyntaxError:
        try:
            uri = parse_name_addr(text).uri
        except SipSyntaxError as err:
            return err
        tenant = self.tenants.get(uri.host.lower())
        if tenant is None:
            tenant = self.default_tenant
            return user_at_host(uri), tenant, f"referrer host {uri.host} -> default tenant {tenant.domain}"
        return user_at_host(uri), tenant, f"referrer host {uri.host} -> tenant {tenant.domain}"

    def may_send_as(self, identity: str, from_user: str) -> bool:
        """Whether the authenticated ``identity`` (a URI) may send with another From user."""
        found = self.referrer(identity)
        if isinstance(found, SipSyntaxError):
            return False
        override = self.overrides.get(found[0])
        return override is not None and (from_user in override.send_as or "*" in override.send_as)

    @property
    def id(self) -> str:
        return self.settings.id

    def summary(self) -> str:
        tenants = {t.domain: t for t in self.tenants.values()}
        rules = sum(len(t.extensions) for t in tenants.values())
        rules += len({r.id for t in tenants.values() for r in t.prefix_rules})
        rules += sum(len(o.prefix_rules) for o in self.overrides.values())
        overrides = len(self.overrides)
        return f"policy {self.id!r}: {len(tenants)} tenant(s), {rules} rule(s), {overrides} override(s)"

    def decide(
        self,
        refer_to: str,
        *,
        referrer: str,
        dialogs: Sequence[Dialog] = (),
        depth: int = 0,
    ) -> Decision:
        """Decide one REFER.

        ``refer_to`` is the raw Refer-To value; ``referrer`` the referrer's URI (the REFER's
        From); ``dialogs`` those the referrer is a party to; ``depth`` how many transfers
        already led to this one.
        """
        if type(dialogs) is not tuple:  # the trace, worked out later, sees the dialogs as they are now
            dialogs = tuple(dialogs)
        return _Deciding(self, referrer, dialogs, depth).run(refer_to)


class _Reject(Exception):
    def __init__(self, status: int, reason: str, rule: str) -> None:
        self.status, self.reason, self.rule = status, reason, rule


class _Deciding:
    """The state of one decision; ``run`` walks the rules in order.

    Untraced (``decide``), the walk notes nothing: the Decision's trace is a :class:`Trace` that walks
    again, traced, when first read. The same walk both times, so the trace is the one the decision
    took (a policy does not change once compiled; the dialogs are copied).
    """

    __slots__ = (
        "depth",
        "dialogs",
        "policy",
        "refer_to",
        "referrer_key",
        "referrer_text",
        "replaces",
        "settings",
        "tenant",
        "trace",
        "traced",
    )

    def __init__(
        self, policy: Policy, referrer: str, dialogs: Sequence[Dialog], depth: int, traced: bool = False
    ) -> None:
        self.policy = policy
        self.settings = policy.settings
        self.referrer_text = referrer
        self.dialogs = dialogs
        self.depth = depth
        self.traced = traced
        self.trace: list[TraceStep] = []
        self.tenant: Tenant | None = None
        self.replaces: Replaces | None = None

    def note(self, rule: str, outcome: str, detail: str) -> None:
        """One step of the trace; callers check ``self.traced`` first (formatting ``detail`` costs)."""
        self.trace.append(_new_tuple(TraceStep, (rule, outcome, detail)))

    def reject(self, status: int, reason: str, rule: str, why: str = "") -> _Reject:
        if self.traced:
            self.note(rule, "reject", f"{status} {reason} ({why})" if why else f"{status} {reason}")
        return _Reject(status, reason, rule)

    def run(self, refer_to: str) -> Decision:
        self.refer_to = refer_to
        try:
            target, display_name, pbx_text, rule = self.walk(refer_to)
        except _Reject as no:
            tenant = None if self.tenant is None else self.tenant.domain
            return _new_tuple(
                Decision,
                (False, no.status, no.reason, no.rule, self.steps(), None, None, self.replaces, tenant, None),
            )
        refer_to = f"<{target}>" if display_name is None else str(NameAddr(target, display_name))
        if self.traced:
            self.note(rule, "allow", f"Refer-To {refer_to}")
        assert self.tenant is not None
        return _new_tuple(
            Decision,
            (
                True,
                202,
                "Accepted",
                rule,
                self.steps(),
                refer_to,
                target,
                self.replaces,
                self.tenant.domain,
                pbx_text,
            ),
        )

    def steps(self) -> Sequence[TraceStep]:
        return tuple(self.trace) if self.traced else Trace(self.traced_again)

    def traced_again(self) -> tuple[TraceStep, ...]:
        again = _Deciding(self.policy, self.referrer_text, self.dialogs, self.depth, traced=True)
        return tuple(again.run(self.refer_to).trace)

    def walk(self, refer_to: str) -> tuple[Uri, str | None, str, str]:
        """The rewritten target's URI and display name, the PBX it lives on, the deciding rule."""
        try:
            addr = parse_refer_to(refer_to)
        except SipSyntaxError as err:
            raise self.reject(400, f"Bad Refer-To: {err.reason}", "syntax") from None
        if self.traced:
            self.note("syntax", "pass", f"{addr.uri.scheme}: target")
        self.tenant = self.referrer_tenant()
        override = self.policy.overrides.get(self.referrer_key)
        uri = self.scheme(addr.uri)
        # Most targets carry no parameter and no header: the checks that would find nothing are not called.
        if uri.params or self.traced:
            self.method(uri)
        if uri.params or addr.params:
            uri = self.params(uri, addr.params)
        if uri.headers:
            uri = self.headers(uri)
            self.check_replaces()
        self.check_depth(override)
        uri, pbx, rule = self.target(uri, override)
        # Header parameters are gone: RFC 3515 defines none, and many UAs read them as URI parameters.
        return uri, addr.display_name, pbx, rule

    def referrer_tenant(self) -> Tenant:
        found = self.policy.referrer(self.referrer_text)
        if isinstance(found, SipSyntaxError):
            raise self.reject(400, f"Bad referrer URI: {found.reason}", "referrer")
        self.referrer_key, tenant, detail = found
        if self.traced:
            self.note("tenant", "match", detail)
        return tenant

    def scheme(self, uri: Uri) -> Uri:
        settings = self.settings
        if uri.scheme in settings.allowed_schemes:
            if self.traced:
                self.note("scheme", "pass", f"{uri.scheme}: is allowed")
            return uri
        if uri.scheme == "tel" and settings.tel == "convert":
            assert self.tenant is not None
            number = _dialled(uri.user or "")
            sip = Uri("sip", user=number, host=self.tenant.domain, params=(("user", "phone"),))
            if self.traced:
                self.note("scheme", "rewrite", f"tel:{uri.user} -> {sip}")
            return sip
        raise self.reject(416, f"Unsupported URI Scheme {uri.scheme}: in Refer-To", "scheme")

    def method(self, uri: Uri) -> None:
        method = uri.param("method")
        if method is None:
            if self.traced:
                self.note("method", "pass", "no method parameter: INVITE")
        elif method.upper() in self.settings.allowed_methods:
            if self.traced:
                self.note("method", "pass", f"method={method} is allowed")
        else:
            raise self.reject(403, f"Refer-To method={method} not allowed", "method")

    def params(self, uri: Uri, header_params: Params) -> Uri:
        """Keep the URI parameters the policy allows; strip or refuse the rest and any header parameter."""
        tenant = self.tenant
        assert tenant is not None
        kept, unwanted = screen(
            uri.params, self.settings.allowed_uri_parameters, tenant.allowed_transports, tenant.domain
        )
        if header_params:
            unwanted += refused_header_params(header_params)
        if unwanted and self.settings.on_uri_parameter == "reject":
            first = unwanted[0]
            reason = f"Refer-To {first.where} parameter {first.escaped_name} not allowed"
            raise self.reject(403, reason, "params", str(first))
        if self.traced:
            for item in unwanted:
                self.note("params", "strip", str(item))
            if kept:
                self.note(
                    "params", "pass", "kept " + "".join(uri_param_text(name, value) for name, value in kept)
                )
        if len(kept) == len(uri.params):
            return uri
        return _new_tuple(
            Uri, (uri.scheme, uri.user, uri.password, uri.host, uri.port, kept, uri.headers, None)
        )

    def headers(self, uri: Uri) -> Uri:
        settings = self.settings
        kept: list[tuple[str, str]] = []
        for name, value in uri.headers:
            lower = name.lower()
            if lower == "replaces":
                if self.replaces is not None:
                    raise self.reject(400, "Refer-To carries more than one Replaces", "headers")
                try:
                    self.replaces = parse_replaces(value)
                except SipSyntaxError as err:
                    raise self.reject(400, f"Bad Replaces in Refer-To: {err.reason}", "headers") from None
                if self.traced:
                    self.note("headers", "pass", f"Replaces {self.replaces.call_id}")
                kept.append(("Replaces", str(self.replaces)))
            elif lower in settings.forbidden_headers:
                if settings.on_forbidden_header == "reject":
                    raise self.reject(403, f"Refer-To embeds forbidden header {name}", "headers")
                if self.traced:
                    self.note("headers", "strip", f"{name} must not be honoured (RFC 3261 19.1.5)")
            elif lower in settings.keep_headers:
                if self.traced:
                    self.note("headers", "pass", f"{name} is kept")
                kept.append((name, value))
            elif self.traced:
                self.note("headers", "strip", f"{name} is not in keep_headers")
        return _new_tuple(
            Uri, (uri.scheme, uri.user, uri.password, uri.host, uri.port, uri.params, tuple(kept), None)
        )

    def check_replaces(self) -> None:
        replaces = self.replaces
        if replaces is None or not self.settings.require_replaces_party:
            return
        for dialog in self.dialogs:
            if dialog.matches(replaces):
                if self.traced:
                    self.note("replaces", "pass", f"referrer is a party to {replaces.call_id}")
                return
        raise self.reject(403, "Replaces names a dialog the referrer is not a party to", "replaces")

    def check_depth(self, override: Override | None) -> None:
        limit = self.settings.max_depth
        if override is not None and override.max_depth is not None:
            limit = override.max_depth
        if self.depth > limit:
            raise self.reject(482, f"Transfer depth {self.depth} exceeds {limit}", "depth")
        if self.traced:
            self.note("depth", "pass", f"{self.depth} <= {limit}")

    def target(self, uri: Uri, override: Override | None) -> tuple[Uri, str, str]:
        """The rewritten target, the PBX it lives on, and the id of the rule that placed it."""
        tenant = self.tenant
        assert tenant is not None
        host = uri.host.lower()
        target_tenant = self.policy.tenants.get(host)
        if target_tenant is None:
            if self.settings.foreign_domains == "allow":
                if self.traced:
                    self.note("target", "pass", f"{host} is foreign, passed on untouched")
                return uri, str(uri), "foreign-domain"
            raise self.reject(403, f"Transfer target domain {uri.host} is not served here", "target")
        if target_tenant is not tenant:
            raise self.reject(403, f"Transfer across tenants ({tenant.domain} to {host})", "target")
        user = uri.user or ""
        extension = tenant.extension(user)
        if extension is not None:
            pbx = extension.pbx
            rewritten = _new_tuple(
                Uri, (uri.scheme, uri.user, None, pbx.host, pbx.port, uri.params, uri.headers, None)
            )
            if self.traced:
                self.note(extension.id, "match", f"extension {user} on {pbx.hostport}")
            return rewritten, extension.pbx_text, extension.id
        number = _dialled(user)
        if not number or not (number[1:] if number[0] == "+" else number).isdigit() or not number.isascii():
            raise self.reject(404, f"No such extension {user or '(empty)'} in {tenant.domain}", "target")
        e164 = tenant.e164(number)
        if e164 is None:
            raise self.reject(404, f"Number {user} is neither an extension nor a dialable number", "target")
        if self.traced:
            self.note("number", "rewrite", f"{user} -> {e164}")
        rule_id = self.prefix(e164, tenant, override)
        params = uri.params
        if not params:
            params = _USER_PHONE
        elif uri.param("user") != "phone":  # one user parameter, and it says phone
            params = (*(p for p in params if p[0].lower() != "user"), *_USER_PHONE)
        pbx = tenant.pbx
        rewritten = _new_tuple(Uri, (uri.scheme, e164, None, pbx.host, pbx.port, params, uri.headers, None))
        return rewritten, tenant.pbx_text, rule_id

    def prefix(self, e164: str, tenant: Tenant, override: Override | None) -> str:
        rule = _best(tenant.prefix_rules, e164)
        if override is not None:
            mine = _best(override.prefix_rules, e164)
            if mine is not None and (rule is None or len(mine.prefix) >= len(rule.prefix)):
                rule = mine
        if rule is None:
            if not self.policy.numbers_allowed:
                raise self.reject(403, f"Transfer to {e164} is not allowed (no prefix allows it)", "prefix")
            if self.traced:
                self.note("prefix", "pass", f"{e164}: no prefix matches, numbers_default allows")
            return "numbers-default"
        if not rule.allow:
            raise self.reject(403, f"Transfer to {e164} denied: {rule.reason}", rule.id)
        if self.traced:
            self.note(rule.id, "pass", rule.reason)
        return rule.id
