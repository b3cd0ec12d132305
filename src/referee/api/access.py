"""Where the operator API listens (loopback only) and its bearer token (a file, created 0600)."""

from __future__ import annotations

import ipaddress
import os
import secrets

DEFAULT_API = "127.0.0.1:8088"
DEFAULT_TOKEN_FILE = "/var/lib/referee/api.token"
MIN_TOKEN = 16


class AccessError(Exception):
    """A bad API address or an unusable token file."""


def parse_api_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise AccessError(f"API address {text!r} must be HOST:PORT")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise AccessError(f"API host {host!r} must be an IPv4 loopback address") from None
    if address not in ipaddress.ip_network("127.0.0.0/8"):
        raise AccessError(f"API host {host} is not loopback (127.0.0.0/8): the API is for this machine only")
    return host, int(port)


def read_or_create_token(path: str) -> str:
    """The API token in ``path``; a new random one (file mode 0600) when the file is missing."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_token(path)
    except OSError as exc:
        raise AccessError(f"token file {path}: {exc.strerror}") from None
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as exc:
        raise AccessError(f"token file {path}: {exc.strerror}") from None
    if len(token) < MIN_TOKEN:
        raise AccessError(f"token file {path}: the token must be at least {MIN_TOKEN} characters")
    return token
