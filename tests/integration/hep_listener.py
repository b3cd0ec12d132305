"""A HEP collector for the tests: a UDP socket on loopback and a HEP3 decoder (what Homer receives).

HEP3 (https://github.com/sipcapture/HEP): ``HEP3``, the packet's total length (u16), then chunks of
vendor (u16), type (u16), length (u16, the 6-byte chunk header included) and value, big-endian.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
from dataclasses import dataclass, field

CHUNK_PROTO_TYPE = 0x0B  # u8: what the payload is
CHUNK_PAYLOAD = 0x0F
CHUNK_CORRELATION_ID = 0x11
PROTO_SIP, PROTO_LOG = 1, 100
_CHUNK_HEADER = struct.Struct("!HHH")


class NotHep3(ValueError):
    pass


@dataclass(frozen=True)
class HepPacket:
    proto_type: int
    payload: bytes
    correlation_id: str

    @property
    def call_id(self) -> str:
        """The Call-ID a SIP payload names, or the correlation id of a log."""
        if self.proto_type != PROTO_SIP:
            return self.correlation_id
        found = re.search(rb"^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)", self.payload, re.M | re.I)
        return found.group(1).decode() if found else ""

    @property
    def first_line(self) -> str:
        return self.payload.split(b"\r\n", 1)[0].decode("utf-8", "replace")


def decode(datagram: bytes) -> HepPacket:
    if datagram[:4] != b"HEP3" or len(datagram) < 6:
        raise NotHep3(f"not HEP3: {datagram[:8]!r}")
    (total,) = struct.unpack_from("!H", datagram, 4)
    if total != len(datagram):
        raise NotHep3(f"HEP3 length {total}, datagram {len(datagram)}")
    chunks: dict[int, bytes] = {}
    offset = 6
    while offset < total:
        _vendor, kind, length = _CHUNK_HEADER.unpack_from(datagram, offset)
        if length < _CHUNK_HEADER.size or offset + length > total:
            raise NotHep3(f"HEP3 chunk {kind:#x} of length {length} at {offset}")
        chunks[kind] = datagram[offset + _CHUNK_HEADER.size : offset + length]
        offset += length
    return HepPacket(
        proto_type=chunks.get(CHUNK_PROTO_TYPE, b"\0")[0],
        payload=chunks.get(CHUNK_PAYLOAD, b""),
        correlation_id=chunks.get(CHUNK_CORRELATION_ID, b"").decode("utf-8", "replace"),
    )


@dataclass
class HepListener:
    """Collects every HEP3 packet sent to ``address`` while it runs (a thread, stopped by ``close``)."""

    address: tuple[str, int]
    packets: list[HepPacket] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(self.address)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                datagram = self._sock.recv(65535)
            except TimeoutError:
                continue
            with self._lock:
                try:
                    self.packets.append(decode(datagram))
                except NotHep3 as exc:
                    self.errors.append(str(exc))

    def received(self) -> list[HepPacket]:
        with self._lock:
            return list(self.packets)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
