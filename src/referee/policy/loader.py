"""Reading a policy file: TOML in, a compiled :class:`~referee.policy.engine.Policy` out.

Every value is checked here, once, with an error naming its key; every pattern is compiled
here, so that deciding a REFER later compiles nothing and reads nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from referee.policy.engine import Extension, Override, Policy, PrefixRule, Settings, Tenant, user_at_host
from referee.policy.model import PolicyError
from referee.policy.uri_params import BY_VALUE, DEFAULT_ALLOWED, NEVER_ALLOWED
from referee.sip import SipSyntaxError, Uri, parse_uri

VERSION_LENGTH = 12  # hex digits of the policy version: 48 bits, plenty to tell files apart
_SCOPE_POLICY, _SCOPE_TENANT, _SCOPE_REFERRER = 0, 1, 2
_DIGITS_PLUS = re.compile(r"\+?[0-9]*")
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")  # RFC 3261 token: a parameter name or a transport


def load_policy(path: str | Path) -> Policy:
    """Read and compile a policy file; raise :class:`PolicyError` naming the key at fault."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise PolicyError("", f"cannot read {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise PolicyError("", f"{path} is not UTF-8") from None
    return parse_policy(text, source=str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise PolicyError("", f"{source} is not valid TOML: {err}") from None
    return _compile(_Table(data, ""), source, policy_version(data))


def policy_version(data: dict[str, Any]) -> str:
    """A short hash of the policy's canonical content: the parsed TOML as sorted, compact JSON.

    Comments, whitespace, key order and quoting do not change it; any value that does change
    a decision does. Every Kamailio worker and every FastAGI server computes the same version
    from the same file, so ``referee policy status`` can compare them.
    """
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:VERSION_LENGTH]


class _Table:
    """A TOML table plus its dotted path, with typed getters that name the key on error."""

    def __init__(self, data: dict[str, Any], path: str) -> None:
        self.data = data
        self.path = path
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def _get(self, name: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.seen.add(name)
        if name not in self.data:
            if default is _REQUIRED:
                raise PolicyError(self.key(name), "is required")
            return default
        value = self.data[name]
        # bool is an int in Python; a policy's `true` is never a number.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise PolicyError(self.key(name), f"must be {_TOML_NAMES.get(names, names)}, got {value!r}")
        return value

    def string(self, name: str, default: Any = None) -> Any:
        value = self._get(name, str, default)
        if isinstance(value, str) and not value:
            raise PolicyError(self.key(name), "must not be empty")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value: str = self.string(name, default)
        if value not in choices:
            raise PolicyError(self.key(name), f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value: bool = self._get(name, bool, default)
        return value

    def integer(self, name: str, default: Any, minimum: int = 0) -> Any:
        value = self._get(name, int, default)
        if isinstance(value, int) and value < minimum:
            raise PolicyError(self.key(name), f"must be at least {minimum}, got {value}")
        return value

    def strings(self, name: str, default: Any = ()) -> tuple[str, ...]:
        value = self._get(name, list, default)
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise PolicyError(f"{self.key(name)}[{i}]", f"must be a non-empty string, got {item!r}")
        return tuple(value)

    def table(self, name: str) -> _Table:
        return _Table(self._get(name, dict, {}), self.key(name))

    def tables(self, name: str) -> list[_Table]:
        value = self._get(name, list, [])
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise PolicyError(f"{self.key(name)}[{i}]", f"must be a table, got {item!r}")
            out.append(_Table(item, f"{self.key(name)}[{i}]"))
        return out

    def done(self) -> None:
        """Refuse keys nobody read: a typo in a policy must not silently mean the default."""
        for name in self.data:
            if name not in self.seen:
                raise PolicyError(self.key(name), "unknown key")


_REQUIRED: Any = object()
_TOML_NAMES = {"str": "a string", "bool": "true or false", "int": "an integer", "list": "an array"}
_TOML_NAMES |= {"dict": "a table"}


def _uri(table: _Table, name: str, default: Any = _REQUIRED) -> Uri | None:
    text = table.string(name, default)
    if text is None:
        return None
    try:
        uri = parse_uri(text)
    except SipSyntaxError as err:
        raise PolicyError(table.key(name), f"bad SIP URI {text!r}: {err.reason}") from None
    if not uri.is_sip:
        raise PolicyError(table.key(name), f"must be a sip: or sips: URI, got {text!r}")
    return uri


def _prefix_rules(table: _Table, scope: str, rank: int) -> list[PrefixRule]:
    rules = []
    for action in ("allow", "deny"):
        for entry in table.tables(action):
            prefix = entry.string("prefix", _REQUIRED)
            if not _DIGITS_PLUS.fullmatch(prefix) or not prefix.startswith("+"):
                raise PolicyError(entry.key("prefix"), f"must be '+' then digits (E.164), got {prefix!r}")
            reason = entry.string("reason", f"{action} {prefix}")
            entry.done()
            rules.append(PrefixRule(prefix, action == "allow", reason, f"{scope}:{action}:{prefix}", rank))
    return rules


def _compile(root: _Table, source: str, version: str) -> Policy:
    top = root.table("policy")
    settings = Settings(
        id=top.string("id", "policy"),
        allowed_schemes=frozenset(s.lower() for s in top.strings("allowed_schemes", ("sip", "sips"))),
        tel=top.choice("tel", ("convert", "reject"), "convert"),
        allowed_methods=frozenset(m.upper() for m in top.strings("allowed_methods", ("INVITE",))),
        forbidden_headers=frozenset(
            h.lower()
            for h in top.strings(
                "forbidden_headers",
                ("From", "To", "Call-ID", "CSeq", "Via", "Record-Route", "Route", "Contact"),
            )
        ),
        on_forbidden_header=top.choice("on_forbidden_header", ("strip", "reject"), "strip"),
        keep_headers=frozenset(h.lower() for h in top.strings("keep_headers")),
        allowed_uri_parameters=_allowed_uri_parameters(top),
        on_uri_parameter=top.choice("on_uri_parameter", ("strip", "reject"), "strip"),
        require_replaces_party=top.boolean("require_replaces_party", True),
        max_depth=top.integer("max_depth", 3),
        foreign_domains=top.choice("foreign_domains", ("reject", "allow"), "reject"),
    )
    if "replaces" in settings.forbidden_headers:
        raise PolicyError(top.key("forbidden_headers"), "Replaces is checked, not forbidden: remove it")
    default_tenant = top.string("default_tenant", None)
    top.done()

    prefixes = root.table("prefixes")
    numbers_allowed = prefixes.choice("numbers_default", ("allow", "deny"), "deny") == "allow"
    policy_rules = _prefix_rules(prefixes, "prefixes", _SCOPE_POLICY)
    prefixes.done()

    tenants = [(table, _tenant(table, policy_rules)) for table in root.tables("tenants")]
    if not tenants:
        raise PolicyError("tenants", "at least one [[tenants]] table is required")
    by_name: dict[str, Tenant] = {}
    for table, tenant in tenants:
        for name in tenant.names:
            if name in by_name:
                other = by_name[name].domain
                raise PolicyError(table.key("aliases"), f"{name!r} already names tenant {other}")
            by_name[name] = tenant
    if default_tenant is None:
        default = tenants[0][1]
    elif default_tenant.lower() in by_name:
        default = by_name[default_tenant.lower()]
    else:
        raise PolicyError("policy.default_tenant", f"no tenant is named {default_tenant!r}")

    overrides: dict[str, Override] = {}
    for table in root.tables("overrides"):
        override_id = table.string("id", _REQUIRED)
        referrer = _uri(table, "referrer")
        assert referrer is not None
        key = user_at_host(referrer)
        if key in overrides:
            raise PolicyError(table.key("referrer"), f"{key} already has override {overrides[key].id}")
        rules = sorted(_prefix_rules(table, f"override:{override_id}", _SCOPE_REFERRER), key=_rule_order)
        send_as = frozenset(table.strings("send_as"))
        overrides[key] = Override(override_id, key, tuple(rules), table.integer("max_depth", None), send_as)
        table.done()
    root.done()
    return Policy(settings, by_name, default, overrides, numbers_allowed, source, version)


def _allowed_uri_parameters(top: _Table) -> frozenset[str]:
    names = frozenset(n.lower() for n in top.strings("allowed_uri_parameters", DEFAULT_ALLOWED))
    for name in sorted(names):
        if name in NEVER_ALLOWED:
            raise PolicyError(
                top.key("allowed_uri_parameters"), f"{name} is never allowed: {NEVER_ALLOWED[name]}"
            )
        if name in BY_VALUE:
            raise PolicyError(
                top.key("allowed_uri_parameters"),
                f"{name} is allowed by value: list them in the tenant's {BY_VALUE[name]}",
            )
        if not _TOKEN.fullmatch(name):
            raise PolicyError(top.key("allowed_uri_parameters"), f"{name!r} is not a parameter name")
    return names


def _transports(table: _Table) -> frozenset[str]:
    values = table.strings("allowed_transports")
    for i, value in enumerate(values):
        if not _TOKEN.fullmatch(value):
            raise PolicyError(f"{table.key('allowed_transports')}[{i}]", f"{value!r} is not a transport name")
    return frozenset(v.lower() for v in values)


def _rule_order(rule: PrefixRule) -> tuple[int, int]:
    """Longest prefix first; at equal length the more specific scope first."""
    return (-len(rule.prefix), -rule.rank)


def _digits(table: _Table, name: str) -> str | None:
    value: str | None = table.string(name, None)
    if value is not None and not (value.isascii() and value.isdigit()):
        raise PolicyError(table.key(name), f"must be digits, got {value!r}")
    return value


def _tenant(table: _Table, policy_rules: list[PrefixRule]) -> Tenant:
    domain = table.string("domain", _REQUIRED).lower()
    pbx = _uri(table, "pbx")
    assert pbx is not None
    names = frozenset({domain, *(a.lower() for a in table.strings("aliases"))})
    country_code, national_prefix, international_prefix = (
        _digits(table, name) for name in ("country_code", "national_prefix", "international_prefix")
    )
    extensions = []
    for i, entry in enumerate(table.tables("extensions")):
        pattern = entry.string("pattern", _REQUIRED)
        try:
            regex = re.compile(pattern)
        except re.error as err:
            raise PolicyError(entry.key("pattern"), f"bad regular expression {pattern!r}: {err}") from None
        ext_pbx = _uri(entry, "pbx", None) or pbx
        extensions.append(Extension(entry.string("id", f"{domain}:extensions[{i}]"), regex, ext_pbx))
        entry.done()
    transports = _transports(table)
    own = table.table("prefixes")
    rules = sorted(policy_rules + _prefix_rules(own, f"tenant:{domain}", _SCOPE_TENANT), key=_rule_order)
    own.done()
    tenant = Tenant(
        domain,
        names,
        pbx,
        country_code,
        national_prefix,
        international_prefix,
        tuple(extensions),
        tuple(rules),
        transports,
    )
    table.done()
    return tenant
