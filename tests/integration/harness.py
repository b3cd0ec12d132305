"""Real Kamailio and SIPp on loopback for the proxy integration tests.

Addresses (kept apart from the Asterisk lab's 127.0.0.x):
proxy 127.0.1.10, PBX stand-ins 127.0.1.20 (pbx1) and 127.0.1.21 (pbx2), phones 127.0.1.31-34.
Every process is started here, and stopped here by its PID.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "ansible" / "roles" / "kamailio" / "templates" / "kamailio.cfg.j2"
CREDENTIALS_TEMPLATE = REPO / "ansible" / "roles" / "kamailio" / "templates" / "credentials.j2"
KEMI_SCRIPT = REPO / "ansible" / "roles" / "kamailio" / "files" / "referee_kemi.py"
POLICY = Path(__file__).with_name("policy.toml")
KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
# Set to a Debian rootfs (the lab's sid one has Kamailio 6.x) to run the same tests against the
# Kamailio inside it. It runs in a private mount namespace on a throw-away overlay of the rootfs,
# with this repository and the test directory bind-mounted at their own paths: the rootfs itself
# is never written to, and every mount goes away with the Kamailio process.
ROOTFS = os.environ.get("REFEREE_KAMAILIO_ROOTFS", "")
SIPP = shutil.which("sipp") or "/usr/bin/sipp"

PROXY = "127.0.1.10"
PORT = 5060
PBX1 = "127.0.1.20"
PBX2 = "127.0.1.21"
PHONES = {"1001": "127.0.1.31", "1002": "127.0.1.32", "1003": "127.0.1.33", "2001": "127.0.1.34"}
HOME = {"1001": "pbx1", "1002": "pbx1", "1003": "pbx1", "2001": "pbx2"}
PASSWORDS = {user: f"secret-{user}" for user in PHONES}
DOMAIN = "lab.test"


LOCK_PATH = "/tmp/referee-kamailio-integration.lock"


@contextmanager
def exclusive(path: str = LOCK_PATH) -> Iterator[None]:
    """Hold the machine-wide lock on the 127.0.1.x addresses (another checkout may run these tests);
    ``path``: another lock, for addresses of their own (the proxy benchmarks')."""
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def have_tools() -> bool:
    kamailio = os.path.join(ROOTFS, "usr/sbin/kamailio") if ROOTFS else KAMAILIO
    return os.path.exists(kamailio) and os.path.exists(SIPP)


ROOTFS_LAUNCH = """set -e
m="$1"; shift
mkdir -p "$m/upper" "$m/work" "$m/merged"
mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$m/upper,workdir=$m/work" "$m/merged"
mkdir -p "$m/merged$REPO" "$m/merged$TESTDIR"
mount --bind "$REPO" "$m/merged$REPO"
mount --bind "$TESTDIR" "$m/merged$TESTDIR"
mount -t proc proc "$m/merged/proc"
exec chroot "$m/merged" "$@"
"""


def kamailio_command(tmp: Path, args: list[str]) -> list[str]:
    if not ROOTFS:
        return [KAMAILIO, *args]
    scratch = tmp / "rootfs-overlay"
    return ["unshare", "--mount", "sh", "-c", ROOTFS_LAUNCH, "sh", str(scratch), "/usr/sbin/kamailio", *args]


def cfg_vars(tmp: Path, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "kamailio__listen": [f"udp:{PROXY}:{PORT}", f"tcp:{PROXY}:{PORT}"],
        "kamailio__domain": DOMAIN,
        "kamailio__pbxs": [
            {"name": "pbx1", "uri": f"sip:{PBX1}:{PORT}"},
            {"name": "pbx2", "uri": f"sip:{PBX2}:{PORT}"},
        ],
        "kamailio__users": [{"name": u, "password": PASSWORDS[u], "pbx": HOME[u]} for u in PHONES],
        "kamailio__kemi_script": str(KEMI_SCRIPT),
        "kamailio__referee_pythonpath": str(REPO / "src"),
        "kamailio__policy_file": str(tmp / "policy.toml"),
        "kamailio__events_file": str(tmp / "events.jsonl"),
        "kamailio__run_dir": str(tmp),
        "kamailio__children": 2,
        "kamailio__refer_rate": 1000,
        "kamailio__credentials_file": str(tmp / "credentials"),
        # Most REFER tests send out-of-dialog REFERs to drive the policy through Kamailio; the
        # default (refuse) has a test of its own.
        "kamailio__out_of_dialog_refer": "relay",
        "kamailio__state_dir": str(tmp / "state"),
        "kamailio__dispatcher_list": str(tmp / "dispatcher.list"),
        # The PBX stand-ins are SIPp processes that come and go: no probing unless a test asks.
        "kamailio__pbx_probe_interval": 0,
    }
    values.update(overrides)
    return values


def _hash(value: str, algorithm: str) -> str:
    """Ansible's ``hash`` filter, which kamailio/credentials.j2 uses."""
    return hashlib.new(algorithm, value.encode()).hexdigest()


def render_cfg(tmp: Path, **overrides: Any) -> Path:
    """kamailio.cfg and the credentials file it names, as the ansible role renders them."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["hash"] = _hash
    values = cfg_vars(tmp, **overrides)
    credentials = Path(values["kamailio__credentials_file"])
    credentials.write_text(env.from_string(CREDENTIALS_TEMPLATE.read_text()).render(**values))
    credentials.chmod(0o600)
    text = env.from_string(TEMPLATE.read_text()).render(**values)
    cfg = tmp / "kamailio.cfg"
    cfg.write_text(text)
    dispatcher = env.from_string((TEMPLATE.parent / "dispatcher.list.j2").read_text())
    Path(values["kamailio__dispatcher_list"]).write_text(dispatcher.render(**values))
    if values["kamailio__state_dir"]:
        state = Path(values["kamailio__state_dir"])
        state.mkdir(exist_ok=True)
        with sqlite3.connect(state / "location.sqlite") as db:
            db.executescript((KEMI_SCRIPT.parent / "location-sqlite.sql").read_text())
    return cfg


def answer_challenge(
    payload: bytes, challenge: bytes, *, user: str | None = None, password: str | None = None
) -> bytes:
    """``payload`` again (next CSeq, new branch) with digest credentials for the 407 ``challenge``.

    The user is the From user unless ``user`` says otherwise; the password is theirs unless
    ``password`` says otherwise.
    """
    text = payload.decode("utf-8", "surrogateescape")
    head, _, body = text.partition("\r\n\r\n")
    (proxy_auth,) = [
        line.split(":", 1)[1]
        for line in challenge.decode("utf-8", "replace").split("\r\n")
        if line.lower().startswith("proxy-authenticate:")
    ]
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', proxy_auth))
    method, uri = head.split(" ", 2)[:2]
    user = user or re.search(r"^From:[^\r]*sip:([^@>;]+)@", head, re.M | re.I).group(1)  # type: ignore[union-attr]
    ha1 = hashlib.md5(f"{user}:{params['realm']}:{password or PASSWORDS[user]}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    cnonce, nc = uuid.uuid4().hex[:16], "00000001"
    if "qop" in params:
        digest = f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}"
    else:
        digest = f"{ha1}:{params['nonce']}:{ha2}"
    response = hashlib.md5(digest.encode()).hexdigest()
    credentials = (
        f'Proxy-Authorization: Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
        f'uri="{uri}", response="{response}", algorithm=MD5'
    )
    if "qop" in params:
        credentials += f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    if "opaque" in params:
        credentials += f', opaque="{params["opaque"]}"'
    head = re.sub(
        r"^(CSeq:\s*)(\d+)", lambda m: f"{m.group(1)}{int(m.group(2)) + 1}", head, flags=re.M | re.I
    )
    head = re.sub(r"branch=z9hG4bK\w+", "branch=z9hG4bK" + uuid.uuid4().hex, head)
    return f"{head}\r\n{credentials}\r\n\r\n{body}".encode("utf-8", "surrogateescape")


def send_authenticated(sock: socket.socket, payload: bytes, wait: float = 3.0) -> bytes:
    """Send ``payload`` from ``sock`` (a phone's bound socket) to the proxy and, when the proxy answers 407,
    send it again with the From user's credentials, as a phone does; the payload finally sent."""
    call_id = re.search(rb"^Call-ID:\s*(\S+)", payload, re.M | re.I)
    sock.sendto(payload, (PROXY, PORT))
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65535)
        except TimeoutError:
            break
        if call_id and call_id.group(1) not in data:
            continue  # of an earlier exchange: a NOTIFY the proxy sent again, its 200 late on a loaded machine
        if data.startswith(b"SIP/2.0 407 "):
            payload = answer_challenge(payload, data)
            sock.sendto(payload, (PROXY, PORT))
            break
        if not data.startswith(b"SIP/2.0 100 "):
            break  # answered without a challenge (a trusted source): nothing to do
    return payload


def sip_request(
    payload: bytes,
    *,
    src: str = PHONES["1002"],
    dst: tuple[str, int] = (PROXY, PORT),
    wait: float = 3.0,
    authenticate: bool = True,
    user: str | None = None,
) -> list[bytes]:
    """Send one datagram from ``src`` and collect the non-100 answers (or none) within ``wait``.

    A 407 is answered once with the From user's credentials (``authenticate``), as a phone does.
    """
    answers = _exchange(payload, src, dst, wait)
    if authenticate and answers and answers[0].startswith(b"SIP/2.0 407 "):
        answers = _exchange(answer_challenge(payload, answers[0], user=user), src, dst, wait)
    return answers


def _exchange(payload: bytes, src: str, dst: tuple[str, int], wait: float) -> list[bytes]:
    answers: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((src, 0))
        port = sock.getsockname()[1]
        sock.sendto(payload.replace(b"{port}", str(port).encode()), dst)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, _ = sock.recvfrom(70000)
            except TimeoutError:
                break
            if not data.startswith(b"SIP/2.0 100 "):
                answers.append(data)
                break
    return answers


def status_of(answer: bytes) -> tuple[int, str]:
    line = answer.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    _, code, reason = line.split(" ", 2)
    return int(code), reason


def refer_bytes(refer_to_lines: list[bytes], *, user: str = "1002", extra: bytes = b"") -> bytes:
    """An out-of-dialog REFER from phone ``user``; ``{port}`` is filled in by :func:`sip_request`."""
    ip = PHONES[user].encode()
    call_id = uuid.uuid4().hex.encode()
    lines = [
        b"REFER sip:1001@lab.test SIP/2.0",
        b"Via: SIP/2.0/UDP " + ip + b":{port};branch=z9hG4bK" + uuid.uuid4().hex.encode(),
        b"Max-Forwards: 70",
        b"From: <sip:" + user.encode() + b"@lab.test>;tag=" + uuid.uuid4().hex[:8].encode(),
        b"To: <sip:1001@lab.test>",
        b"Call-ID: " + call_id,
        b"CSeq: 1 REFER",
        b"Contact: <sip:" + user.encode() + b"@" + ip + b":{port}>",
        *refer_to_lines,
    ]
    if extra:
        lines.append(extra)
    lines += [b"Content-Length: 0", b"", b""]
    return b"\r\n".join(lines)


class Kamailio:
    """The host's Kamailio in the foreground (-DD -E), stopped by its PID."""

    def __init__(
        self,
        tmp: Path,
        cfg: Path,
        *,
        shm_mb: int = 64,
        port: int = PORT,
        address: str = PROXY,
        ping_from: str = "127.0.1.39",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.port = port
        self.address = address  # where the readiness OPTIONS goes, from ping_from
        self.ping_from = ping_from
        self.extra_args = extra_args  # e.g. -Y: a runtime dir for a cfg whose RPC sockets are not in it
        self.tmp = tmp
        self.cfg = cfg
        self.shm_mb = shm_mb
        self.log_path = tmp / "kamailio.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def events_path(self) -> Path:
        return self.tmp / "events.jsonl"

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            args = ["-f", str(self.cfg), "-DD", "-E", "-x", "tlsf", "-m", str(self.shm_mb), "-M", "8"]
            args += self.extra_args
            env = {
                **os.environ,
                "ROOTFS": os.path.realpath(ROOTFS),
                "REPO": str(REPO),
                "TESTDIR": str(self.tmp),
            }
            self.proc = subprocess.Popen(
                kamailio_command(self.tmp, args),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                process_group=0,  # kill() takes the workers with the main process, as systemd would
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kamailio exited {self.proc.returncode}:\n{self.log()}{self.holders()}")
            proxy, pinger = self.address.encode(), self.ping_from.encode()
            ping = (
                b"OPTIONS sip:" + proxy + b" SIP/2.0\r\nVia: SIP/2.0/UDP " + pinger + b":{port};"
                b"branch=z9hG4bK" + uuid.uuid4().hex.encode() + b"\r\nMax-Forwards: 70\r\n"
                b"From: <sip:ping@lab.test>;tag=1\r\nTo: <sip:" + proxy + b">\r\n"
                b"Call-ID: " + uuid.uuid4().hex.encode() + b"\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
            if sip_request(ping, src=self.ping_from, dst=(self.address, self.port), wait=0.3):
                return
        self.stop()
        raise RuntimeError(f"kamailio did not answer OPTIONS:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
        # Whatever of the process group is left (a main process stuck in its shutdown, a worker it left
        # behind) still holds the listening sockets: the next test's Kamailio could not bind them.
        self._end_group()
        shutil.rmtree(self.tmp / "rootfs-overlay", ignore_errors=True)

    def _end_group(self) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return  # the usual case: the group ended with its main process
        self.proc.wait(timeout=5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def holders(self) -> str:
        """Who listens on the proxy's address and port (for an "Address already in use")."""
        if "Address already in use" not in self.log() or not shutil.which("ss"):
            return ""
        found = subprocess.run(
            ["ss", "-Htulpn", "src", f"{self.address}:{self.port}"],
            capture_output=True,
            text=True,
            check=False,
        )
        return f"\nlistening on {self.address}:{self.port}:\n{found.stdout}{found.stderr}"

    def kill(self) -> None:
        """SIGKILL, no shutdown at all: the main process and its workers (its process group)."""
        assert self.proc is not None
        self._end_group()
        shutil.rmtree(self.tmp / "rootfs-overlay", ignore_errors=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        return [json.loads(line) for line in self.events_path.read_text().splitlines() if line]

    def wait_events(self, count: int, timeout: float = 3.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if len(events) >= count:
                return events
            time.sleep(0.05)
        return self.events()


# --- SIPp ------------------------------------------------------------------------------------


def scenario(tmp: Path, name: str, body: str) -> Path:
    path = tmp / f"{name}.xml"
    path.write_text(
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
        '<!DOCTYPE scenario SYSTEM "sipp.dtd">\n'
        f'<scenario name="{name}">\n{body}\n</scenario>\n'
    )
    return path


@dataclass
class Sipp:
    """One SIPp process (a phone or a PBX stand-in)."""

    tmp: Path
    name: str
    xml: Path
    local_ip: str
    remote: str | None = None
    calls: int = 1
    extra: list[str] = field(default_factory=list)
    port: int = PORT
    proc: subprocess.Popen[bytes] | None = None

    @property
    def messages_path(self) -> Path:
        return self.tmp / f"{self.name}_messages.log"

    def args(self) -> list[str]:
        args = [SIPP]
        if self.remote:
            args.append(self.remote)
        args += ["-sf", str(self.xml), "-i", self.local_ip, "-p", str(self.port), "-m", str(self.calls)]
        args += ["-trace_msg", "-message_file", str(self.messages_path)]
        args += ["-trace_err", "-error_file", str(self.tmp / f"{self.name}_errors.log")]
        args += ["-timeout", "15s", "-timeout_error", "-nostdin", *self.extra]
        return args

    def start(self) -> Sipp:
        with (self.tmp / f"{self.name}.out").open("wb") as out:
            self.proc = subprocess.Popen(
                self.args(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        return self

    def wait(self, timeout: float = 20) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise

    def run(self, timeout: float = 20) -> int:
        self.start()
        return self.wait(timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def output(self) -> str:
        parts = []
        for suffix in (".out", "_errors.log"):
            path = self.tmp / f"{self.name}{suffix}"
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def received(self, method: str | None = None) -> list[str]:
        """Messages SIPp received (from its -trace_msg log), optionally only requests of ``method``."""
        if not self.messages_path.exists():
            return []
        text = self.messages_path.read_text(errors="replace")
        blocks = re.split(r"^-{10,}.*$", text, flags=re.M)
        found = []
        for block in blocks:
            _, _, message = block.partition("message received")
            if not message or "message received" not in block:
                continue
            message = message.split("\n", 1)[1].lstrip("\n") if "\n" in message else ""
            if method is None or message.startswith(method + " "):
                found.append(message)
        return found


def header(message: str, name: str) -> list[str]:
    values = []
    for line in message.replace("\r\n", "\n").split("\n\n", 1)[0].split("\n")[1:]:
        hname, _, value = line.partition(":")
        if hname.strip().lower() == name.lower():
            values.append(value.strip())
    return values


@contextmanager
def running(*procs: Sipp) -> Iterator[None]:
    for proc in procs:
        proc.start()
    time.sleep(0.2)
    try:
        yield
    finally:
        for proc in procs:
            proc.stop()
