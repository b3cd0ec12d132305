"""Serving a registry: ``GET /metrics`` on ``--metrics-listen HOST:PORT``, in a thread of its own.

prometheus-client's own WSGI app answers, on a threading ``wsgiref`` server: a scrape never waits for
the daemon's event loop, so collectors only read values the daemon keeps up to date (no database, no
AMI from the scrape thread). Written here rather than ``start_http_server`` for the bound address
(port 0 in tests) and a clean stop, the same with Debian 12's prometheus-client 0.16 and later ones.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = [
    "CONTENT_TYPE_LATEST",
    "ListenError",
    "MetricsServer",
    "announce",
    "parse_listen",
    "render",
    "serve",
    "serve_announced",
]


class ListenError(ValueError):
    pass


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` (an IP address, port 0-65535: 0 picks a free one)."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ListenError(f"metrics address {text!r} is not IP:PORT") from None
    if not sep or not 0 <= number < 65536:
        raise ListenError(f"metrics address {text!r}: the port must be 0-65535")
    return host, number


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition of ``registry`` (what ``GET /metrics`` answers)."""
    return generate_latest(registry)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every 15 s: not worth a log line
        pass


class MetricsServer:
    """A running ``/metrics`` server; :meth:`close` stops it."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
        self._server = make_server(
            host, port, make_wsgi_app(registry), server_class, handler_class=_QuietHandler
        )
        self.address: tuple[str, int] = tuple(self._server.server_address[:2])  # type: ignore[assignment]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def serve(registry: CollectorRegistry, listen: str) -> MetricsServer:
    """Serve ``registry`` on ``listen`` (``HOST:PORT``); OSError when the address cannot be bound."""
    host, port = parse_listen(listen)
    return MetricsServer(registry, host, port)


def serve_announced(registry: CollectorRegistry, listen: str, who: str) -> MetricsServer:
    """:func:`serve`, and say where on stdout (``WHO: metrics on http://HOST:PORT/metrics``): with port
    0, that line is how a script or a test learns the port."""
    server = serve(registry, listen)
    announce(server, who)
    return server


def announce(server: MetricsServer, who: str) -> None:
    host, port = server.address
    shown = f"[{host}]" if ":" in host else host
    print(f"{who}: metrics on http://{shown}:{port}/metrics", flush=True)
