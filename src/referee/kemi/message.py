"""Reading the SIP message being routed through KSR, and logging about it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from referee import sip
from referee.kemi.settings import BadRequest

if TYPE_CHECKING:
    from referee.kemi.ksr import KSR

# Upper bound on a Refer-To (or Replaces) header value the proxy will look at.
MAX_HEADER_VALUE = 2048


def text(value: object) -> str:
    """A KSR value as text: ``None`` (absent) and numbers read as ``""``."""
    return value if isinstance(value, str) else ""


def number(value: object) -> int:
    """A CSeq number read with ``$cs``; 0 when it is not one (sanity checks make that rare)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    digits = text(value).strip()
    return int(digits) if digits.isdigit() else 0


def user_of(uri: str) -> str:
    try:
        return sip.parse_uri(uri).user or ""
    except sip.SipSyntaxError:
        return ""


def log(k: KSR, line: str, level: str = "info") -> None:
    """Log one line at ``level`` (KSR log functions do not add the newline).

    A NUL (a ``%00`` the policy decoded, quoted back in a reason) is written as ``\\x00``:
    app_python3 cannot pass a string with a NUL to Kamailio."""
    line = line.replace("\x00", "\\x00")
    getattr(k, level)(line if line.endswith("\n") else line + "\n")


def reason_phrase(reason: str) -> str:
    """A reply's reason phrase with its control characters percent-escaped: a policy reason may
    quote a target whose ``%0D%0A`` or ``%00`` was decoded, and must not add a header to the reply."""
    return "".join(ch if ch >= " " and ch != "\x7f" else f"%{ord(ch):02X}" for ch in reason)


def has_nul(exc: BaseException) -> bool:
    """Whether ``exc`` is app_python3 refusing a string with a NUL (a NUL from the message, such as
    in a Call-ID, handed back to a KSR function): bad input, not a bug."""
    while exc is not None:
        if isinstance(exc, ValueError) and "null character" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def single_header(k: KSR, name: str, count: object = None) -> str:
    """The one value of header ``name``; BadRequest when missing, repeated, too long.

    ``count``: how many ``name`` headers the message has, when the caller knows it already."""
    if count is None:
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
