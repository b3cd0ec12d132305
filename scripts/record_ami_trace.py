#!/usr/bin/env python3
"""Record a raw AMI trace from a live Asterisk, for tests/unit/data/ami/.

Logs in, optionally sends actions (their answers are recorded too), then writes every
message Asterisk sends, verbatim (LF line ends), until a stop condition:

    # a basic call in the lab: start recording, then run the scenario in another shell
    scripts/record_ami_trace.py --lab pbx1 --out tests/unit/data/ami/recorded_basic_call.txt \\
        --until Hangup:2
    # the resync answers
    scripts/record_ami_trace.py --lab pbx1 --out /tmp/resync.txt \\
        --action CoreShowChannels --action BridgeList --until BridgeListComplete

``--lab NAME`` takes host, port and credentials from the lab inventory (``referee lab info``);
otherwise give ``--host --port --user --secret``. The first line of the file says where and
when it was recorded. Stdlib only; loopback addresses only.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import socket
import sys
import time
from collections.abc import Iterator


def lab_pbx(name: str) -> tuple[str, int, str, str]:
    """Address, AMI port and credentials of a lab PBX (its AMI permits only its own address as source)."""
    from referee_lab.topology import load  # noqa: PLC0415 - the lab is an optional part of an install

    info = load().as_json()
    for pbx in info["pbxs"]:
        if pbx["name"] == name:
            return pbx["address"], int(pbx["ami_port"]), pbx["ami"]["user"], pbx["ami"]["secret"]
    raise SystemExit(f"record_ami_trace: no PBX {name!r} in the lab inventory")


def messages(sock: socket.socket) -> Iterator[tuple[str, dict[str, str]]]:
    """Yield (raw text, headers) per message."""
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buffer += chunk
            if buffer.startswith(b"Asterisk Call Manager/") and b"\r\n" in buffer:
                banner, buffer = buffer.split(b"\r\n", 1)
                yield banner.decode() + "\n", {"Banner": banner.decode()}
        raw, buffer = buffer.split(b"\r\n\r\n", 1)
        text = raw.decode("utf-8", "replace")
        headers = {}
        for line in text.split("\r\n"):
            key, sep, value = line.partition(": ")
            if sep:
                headers[key] = value
        yield text.replace("\r\n", "\n") + "\n\n", headers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lab", metavar="PBX", help="a PBX of the lab inventory (pbx1, pbx2)")
    parser.add_argument("--host", default="127.0.0.20")
    parser.add_argument("--port", type=int, default=5038)
    parser.add_argument("--user", default="referee")
    parser.add_argument("--secret", default="")
    parser.add_argument(
        "--source",
        help="local address to connect from (with --lab: the PBX's own, which its AMI permit needs)",
    )
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--action", action="append", default=[], help="an action to send after login (repeatable)"
    )
    parser.add_argument(
        "--until", default="", metavar="EVENT[:N]", help="stop after the Nth EVENT (default N=1)"
    )
    parser.add_argument("--max-seconds", type=float, default=120.0, help="stop after this long in any case")
    args = parser.parse_args(argv)
    host, port, user, secret = (
        lab_pbx(args.lab) if args.lab else (args.host, args.port, args.user, args.secret)
    )
    if ipaddress.ip_address(host) not in ipaddress.ip_network("127.0.0.0/8"):
        raise SystemExit("record_ami_trace: loopback PBXs only")
    stop_event, _, count_text = args.until.partition(":")
    wanted = int(count_text or 1)
    deadline = time.monotonic() + args.max_seconds
    source = args.source or (host if args.lab else None)
    bind = None if source is None else (source, 0)
    with (
        socket.create_connection((host, port), timeout=5, source_address=bind) as sock,
        open(args.out, "w") as out,
    ):
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        login = (
            f"Action: Login\r\nActionID: rec-login\r\nUsername: {user}\r\nSecret: {secret}\r\n"
            "Events: on\r\n\r\n"
        )
        sock.sendall(login.encode())
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        seen = 0
        try:
            for raw, headers in messages(sock):
                if "Banner" in headers:
                    out.write(
                        f"# RECORDED from {headers['Banner']} at {host}:{port} on {stamp}"
                        " by scripts/record_ami_trace.py\n"
                    )
                    continue
                if headers.get("ActionID") == "rec-login":
                    if headers.get("Response") != "Success":
                        print(f"record_ami_trace: login refused: {headers.get('Message')}", file=sys.stderr)
                        return 1
                    for i, action in enumerate(args.action):
                        sock.sendall(f"Action: {action}\r\nActionID: rec-{i}\r\n\r\n".encode())
                    continue
                out.write(re.sub(r"ActionID: rec-\d+", "ActionID: {ActionID}", raw))
                if stop_event and headers.get("Event") == stop_event:
                    seen += 1
                    if seen >= wanted:
                        break
                sock.settimeout(max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            print("record_ami_trace: stopped after --max-seconds", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
