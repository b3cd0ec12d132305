"""`make fuzz-proxy`: mutated REFERs against a real Kamailio running the referee proxy.

    flock /tmp/referee-net.lock .venv/bin/python tests/fuzz/refer_proxy.py [COUNT]   # default 10,000

Starts Kamailio through tests/integration/harness.py (4 workers, the integration policy) and sends COUNT
REFERs from pbx1's address (127.0.1.20, a trusted PBX: no rate limit, and past any authentication of
phones), one at a time, half with a mutated Refer-To value and half with mutated bytes anywhere in the
message. Properties:

- Kamailio stays alive (its process, and an OPTIONS to the proxy answered 200 at the end);
- every parseable REFER is answered with a final response, and never 500 (the proxy's answer to a bug
  in the script); "parseable" is conservative: only the Refer-To value was mutated, and it has no CR,
  LF or NUL (so the header structure, and whatever sanity checks, are untouched);
- no Python traceback in Kamailio's log;
- afterwards a normal REFER is decided correctly: relayed to pbx1 with the rewritten Refer-To.

Byte-mutated messages are only required not to hurt (the proxy may drop what it cannot parse); the
run prints how many of them were answered anyway. Exit 0 when every property held.
"""

from __future__ import annotations

import random
import shutil
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "integration"))

import harness  # noqa: E402
import seeds  # noqa: E402

PBX_SOURCE = harness.PBX1
ANSWER_WAIT = 2.0  # seconds for a parseable REFER's final answer
DROP_WAIT = 0.02  # seconds to collect an answer to a byte-mutated one (it may get none)
BAD_BYTES = b"\r\n\x00"


@dataclass
class Result:
    sent: int = 0
    parseable: int = 0
    answered: int = 0  # parseable ones answered
    mutated_bytes: int = 0
    mutated_answered: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        common = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return (
            f"{self.sent} REFERs sent: {self.parseable} parseable, {self.answered} of them answered; "
            f"{self.mutated_bytes} byte-mutated, {self.mutated_answered} of them answered; "
            f"statuses {common}; {len(self.findings)} finding(s)"
        )


def refer(refer_to: bytes, call_id: bytes, port: int) -> bytes:
    """A REFER from pbx1 about phone 1002's call, as Asterisk would relay one."""
    lines = [
        b"REFER sip:1002@lab.test SIP/2.0",
        b"Via: SIP/2.0/UDP " + PBX_SOURCE.encode() + b":%d;branch=z9hG4bK" % port + uuid.uuid4().hex.encode(),
        b"Max-Forwards: 70",
        b"From: <sip:1002@lab.test>;tag=" + uuid.uuid4().hex[:8].encode(),
        b"To: <sip:1001@lab.test>",
        b"Call-ID: " + call_id,
        b"CSeq: 1 REFER",
        b"Contact: <sip:pbx1@" + PBX_SOURCE.encode() + b":%d>" % port,
        b"Refer-To: " + refer_to,
        b"Content-Length: 0",
        b"",
        b"",
    ]
    return b"\r\n".join(lines)


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """One to four byte edits anywhere: flip, insert, delete, duplicate."""
    out = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        at = rng.randrange(len(out))
        kind = rng.randrange(4)
        if kind == 0:
            out[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            out[at:at] = bytes([rng.choice(b';:<>@\r\n\x00 \xff%,"=?&')])
        elif kind == 2:
            del out[at : at + rng.randrange(1, 6)]
        else:
            end = min(len(out), at + rng.randrange(1, 12))
            out[end:end] = out[at:end]
    return bytes(out)


def answers(sock: socket.socket, call_id: bytes, wait: float) -> list[int]:
    """Final statuses that came back for ``call_id`` within ``wait`` seconds (stops at the first)."""
    found: list[int] = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(70000)
        except TimeoutError:
            break
        if not data.startswith(b"SIP/2.0 ") or b"\r\nCall-ID: " + call_id + b"\r\n" not in data:
            continue  # a late answer to an earlier one
        status = int(data[8:11])
        if status >= 200:
            found.append(status)
            break
    return found


def run(proxy: harness.Kamailio, count: int, seed: int = 3515) -> Result:
    rng = random.Random(seed)
    values = seeds.inputs(max(count // 2, 1), seed)
    result = Result()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((PBX_SOURCE, 0))
        port = sock.getsockname()[1]
        for number in range(count):
            call_id = f"fuzz-{number}-{uuid.uuid4().hex[:8]}".encode()
            if number % 2 == 0:
                value = values[(number // 2) % len(values)].encode("utf-8", "surrogatepass")
                message = refer(value, call_id, port)
                parseable = not any(b in value for b in BAD_BYTES)
            else:
                message = mutate_bytes(rng, refer(b"<sip:1003@lab.test>", call_id, port))
                parseable = False
            sock.sendto(message, (harness.PROXY, harness.PORT))
            result.sent += 1
            got = answers(sock, call_id, ANSWER_WAIT if parseable else DROP_WAIT)
            for status in got:
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if status == 500:
                    result.findings.append(f"500 to {message[:300]!r}")
            if parseable:
                result.parseable += 1
                if got:
                    result.answered += 1
                else:
                    result.findings.append(f"no answer to {message[:300]!r}")
            else:
                result.mutated_bytes += 1
                result.mutated_answered += bool(got)
            if number % 1000 == 999:
                if proxy.proc is None or proxy.proc.poll() is not None:
                    result.findings.append(f"Kamailio died after {number + 1} REFERs")
                    break
                print(f"  {number + 1}: {result}", flush=True)
    return result


def after_checks(proxy: harness.Kamailio) -> list[str]:
    """Kamailio alive and a normal transfer decided as before the fuzz."""
    findings = []
    if proxy.proc is None or proxy.proc.poll() is not None:
        return ["Kamailio is not running"]
    options = b"\r\n".join(
        [
            b"OPTIONS sip:" + harness.PROXY.encode() + b" SIP/2.0",
            b"Via: SIP/2.0/UDP "
            + harness.PHONES["1002"].encode()
            + b":{port};branch=z9hG4bKopt"
            + uuid.uuid4().hex.encode(),
            b"Max-Forwards: 70",
            b"From: <sip:1002@lab.test>;tag=o1",
            b"To: <sip:" + harness.PROXY.encode() + b">",
            b"Call-ID: " + uuid.uuid4().hex.encode(),
            b"CSeq: 1 OPTIONS",
            b"Content-Length: 0",
            b"",
            b"",
        ]
    )
    answered = harness.sip_request(options)
    if not answered or harness.status_of(answered[0])[0] != 200:
        findings.append(f"OPTIONS to the proxy: {answered!r}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as pbx:
        pbx.bind((harness.PBX1, harness.PORT))
        pbx.settimeout(3.0)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone:
            phone.bind((harness.PHONES["1002"], 0))
            port = str(phone.getsockname()[1]).encode()
            refer = harness.refer_bytes([b"Refer-To: <sip:1003@lab.test>"]).replace(b"{port}", port)
            harness.send_authenticated(phone, refer)  # a phone answers the proxy's 407
            try:
                relayed = pbx.recv(70000)
            except TimeoutError:
                return [*findings, "a normal REFER was not relayed to pbx1"]
    if b"\r\nRefer-To: <sip:1003@127.0.1.20:5060>" not in relayed:
        findings.append(f"a normal REFER was relayed without the rewritten Refer-To: {relayed[:600]!r}")
    return findings


def fuzz(count: int, workdir: Path) -> Result:
    shutil.copy(harness.POLICY, workdir / "policy.toml")
    proxy = harness.Kamailio(workdir, harness.render_cfg(workdir, kamailio__children=4))
    proxy.start()
    try:
        result = run(proxy, count)
        result.findings += after_checks(proxy)
    finally:
        proxy.stop()
    if "Traceback" in proxy.log():
        result.findings.append("a Python traceback in Kamailio's log (see " + str(proxy.log_path) + ")")
    return result


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    if not harness.have_tools():
        print("refer_proxy: kamailio and sipp are needed (make deps)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="referee-fuzz-proxy-"))
    started = time.monotonic()
    with harness.exclusive():
        result = fuzz(count, workdir)
    print(f"{result} in {time.monotonic() - started:.0f} s")
    for finding in result.findings[:20]:
        print("FINDING:", finding)
    if not result.findings:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if result.findings else 0


if __name__ == "__main__":
    sys.exit(main())
