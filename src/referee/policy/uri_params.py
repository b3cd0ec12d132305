"""The URI-parameter allowlist: which parameters of a transfer target survive the rewrite.

A Refer-To's URI parameters travel into the INVITE its recipient sends. Some of them change
where or how that INVITE goes, whatever the host part (which the policy checks and rewrites)
says: ``maddr`` above all (RFC 3261 19.1.1). So only the parameters a policy lists are kept,
``transport`` only with the values the tenant lists, and every parameter name at most once
(UAs differ on which of two they read: the first one is the one the policy checked).
"""

from __future__ import annotations

from typing import Final, NamedTuple

from referee.sip import Params, uri_param_text

#: Parameters no policy may allow.
NEVER_ALLOWED: Final = {
    "maddr": "maddr overrides where the request is sent, whatever the host says (RFC 3261 19.1.1)",
}
#: Parameters allowed only by a dedicated key, with the values it lists.
BY_VALUE: Final = {"transport": "allowed_transports"}
#: Default allowlist: the target's kind (user=phone) and its method, which the method rule checks.
DEFAULT_ALLOWED: Final = ("user", "method")

# Why the parameters RFC 3261 defines have no place in a transfer target, for the trace.
_WHY: Final = {
    **NEVER_ALLOWED,
    "ttl": "ttl goes with a multicast maddr (RFC 3261 19.1.1)",
    "lr": "lr marks a loose-routing proxy, not a transfer target (RFC 3261 19.1.1)",
}


class Unwanted(NamedTuple):
    """A parameter that does not survive, decoded as parsed, and why."""

    name: str
    value: str | None
    why: str
    where: str = "URI"  # or "header": after the Refer-To's closing '>'

    @property
    def escaped_name(self) -> str:
        return uri_param_text(self.name, None)[1:]

    def __str__(self) -> str:
        """For the trace: escaped, so that no value can break a log line."""
        return f"{self.where} parameter {uri_param_text(self.name, self.value)}: {self.why}"


def screen(
    params: Params, allowed: frozenset[str], transports: frozenset[str], tenant: str
) -> tuple[Params, list[Unwanted]]:
    """Split ``params`` into those kept (in order) and those refused.

    ``allowed`` holds lower-case names (never maddr or transport: the loader refuses them);
    ``transports`` the lower-case transport values the tenant ``tenant`` allows.
    """
    kept: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    unwanted: list[Unwanted] = []
    for name, value in params:
        lower = name.lower()
        why = None
        if lower in seen:
            why = f"second {lower} parameter: only the first one is checked and kept"
        elif lower == "transport":
            if value is None or value.lower() not in transports:
                why = f"transport {value or '(empty)'} is not in {tenant}'s allowed_transports"
        elif lower not in allowed:
            why = _WHY.get(lower) or f"{lower} is not in allowed_uri_parameters"
        if why is None:
            seen.add(lower)
            kept.append((name, value))
        else:
            unwanted.append(tuple.__new__(Unwanted, (name, value, why, "URI")))  # without Unwanted.__new__
    return tuple(kept), unwanted


def refused_header_params(params: Params) -> list[Unwanted]:
    """Every header parameter of a Refer-To, refused: RFC 3515 defines none."""
    why = "RFC 3515 defines none, and many UAs read them as URI parameters"
    return [Unwanted(name, value, why, "header") for name, value in params]
