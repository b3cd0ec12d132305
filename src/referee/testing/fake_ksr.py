"""An in-memory fake of Kamailio's ``KSR`` module, for unit tests of :mod:`referee.kemi`.

Load one SIP message at a time (``fake.request(raw)`` or ``fake.reply(raw)``), call the
handler, then look at what it did:

* ``replies``: stateless replies sent (``(code, reason)``), including auth challenges;
* ``relays``: one :class:`Relay` per ``tm.t_relay`` with the message as it would leave
  (header lumps applied, destination URI, request URI);
* ``header_ops``: ``("remove", name)`` and ``("append", text)`` in call order;
* ``pv_sets``: values written with ``pv.sets``/``pv.seti``;
* ``log``: ``(level, text)`` of every log call;
* ``tables``: the htables (kept across messages, like Kamailio's shared memory);
* ``locked``: the htable slots locked now, as ``(table, key)``; ``htable.sht_get`` of a key
  that is not locked fails, since on a real Kamailio it can read freed memory;
* ``locations``: the registrar's user -> contact map (kept across messages);
* ``shv``: ``$shv(name)`` shared variables (kept across messages). Two fakes given the same
  dict stand for two worker processes of one Kamailio.

Like Kamailio, ``hdr.remove``/``hdr.append`` only queue changes ("lumps"): ``hdr.get``
still sees the original message until ``textopsx.msg_apply_changes`` runs; a relay always
carries them. A header value that is not valid UTF-8 makes the getters raise
``UnicodeDecodeError``, as app_python3 does when it converts such a value to ``str``.

Fake semantics where Kamailio would need real state: ``auth.pv_auth_check`` accepts an
``Authorization`` (REGISTER) or ``Proxy-Authorization`` (other requests) whose ``response``
parameter equals the password given (the HA1, for the proxy); ``tm.t_check_trans``
and ``tmx.t_precheck_trans`` answer ``check_trans``/``precheck_trans`` (default: no
transaction); ``rr.loose_route`` succeeds when the message has a Route header.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from referee.kemi.ksr import KSR as KSRProtocol

XVal = str | int | None

COMPACT = {
    "r": "refer-to",
    "b": "referred-by",
    "c": "content-type",
    "o": "event",
    "i": "call-id",
    "f": "from",
    "t": "to",
    "v": "via",
    "m": "contact",
    "l": "content-length",
    "k": "supported",
    "s": "subject",
}


def _canon(name: str) -> str:
    lowered = name.strip().lower()
    return COMPACT.get(lowered, lowered)


def _decode(value: str) -> str:
    """Raise UnicodeDecodeError for values that held bytes which are not UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogateescape")
        raw.decode("utf-8")  # raises UnicodeDecodeError
    return value


def _param(header: str, name: str) -> str:
    match = re.search(rf"[;\s,]{name}\s*=\s*\"?([^\";,\s>]+)", header, re.IGNORECASE)
    return match.group(1) if match else ""


def _uri_of(value: str) -> str:
    if "<" in value:
        return value.split("<", 1)[1].split(">", 1)[0]
    return value.split(";", 1)[0].strip()


def _user_of(uri: str) -> str:
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    return rest.split("@", 1)[0] if "@" in rest else ""


@dataclass
class Message:
    first_line: str
    headers: list[tuple[str, str]]
    body: str
    src_ip: str
    src_port: int

    @classmethod
    def parse(cls, raw: str | bytes, src_ip: str, src_port: int) -> Message:
        text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
        text = text.replace("\r\n", "\n")
        head, _, body = text.partition("\n\n")
        lines = head.split("\n")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:
                name, value = headers[-1]
                headers[-1] = (name, value + " " + line.strip())
                continue
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return cls(lines[0], headers, body.replace("\n", "\r\n"), src_ip, src_port)

    @property
    def is_request(self) -> bool:
        return not self.first_line.startswith("SIP/")

    @property
    def method(self) -> str:
        if self.is_request:
            return self.first_line.split(" ", 1)[0]
        return self.get("CSeq").split()[-1] if self.get("CSeq") else ""

    @property
    def status(self) -> int:
        return 0 if self.is_request else int(self.first_line.split()[1])

    def all(self, name: str) -> list[str]:
        want = _canon(name)
        return [value for hname, value in self.headers if _canon(hname) == want]

    def get(self, name: str) -> str:
        values = self.all(name)
        return values[0] if values else ""


@dataclass
class Relay:
    """A request as it left through ``tm.t_relay``."""

    method: str
    ruri: str
    dsturi: str
    headers: list[tuple[str, str]]
    body: str

    def all(self, name: str) -> list[str]:
        want = _canon(name)
        return [value for hname, value in self.headers if _canon(hname) == want]

    def get(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None


class _Sub:
    def __init__(self, fake: FakeKSR) -> None:
        self.f = fake


class _Hdr(_Sub):
    def get(self, name: str) -> XVal:
        values = self.f.msg.all(name)
        return _decode(values[0]) if values else None

    def get_idx(self, name: str, idx: int) -> XVal:
        values = self.f.msg.all(name)
        return _decode(values[idx]) if -len(values) <= idx < len(values) else None

    def is_present(self, name: str) -> int:
        return 1 if self.f.msg.all(name) else -1

    def append(self, text: str) -> int:
        self.f.header_ops.append(("append", text))
        self.f.lumps.append(("append", text))
        return 1

    def remove(self, name: str) -> int:
        self.f.header_ops.append(("remove", name))
        if not self.f.msg.all(name):
            return -1
        self.f.lumps.append(("remove", name))
        return 1

    def append_to_reply(self, text: str) -> int:
        self.f.reply_headers.append(text)
        return 1


class _Pv(_Sub):
    def get(self, spec: str) -> XVal:
        f = self.f
        if spec in f.pvs:
            return f.pvs[spec]
        if spec.startswith("$shv("):
            return f.shv.get(spec[5:-1])
        match = re.fullmatch(r"\$(hdrc|hdr)\((.+)\)", spec)
        if match:
            values = f.msg.all(match.group(2))
            if match.group(1) == "hdrc":
                return len(values)
            return _decode(values[0]) if values else None
        simple: dict[str, Callable[[], XVal]] = {
            "$cs": lambda: f.msg.get("CSeq").split()[0] if f.msg.get("CSeq") else None,
            "$ft": lambda: _param(f.msg.get("From"), "tag") or None,
            "$tt": lambda: _param(f.msg.get("To"), "tag") or None,
            "$ci": lambda: f.msg.get("Call-ID") or None,
            "$du": lambda: f.dsturi or None,
            "$rm": lambda: f.msg.method,
            "$si": lambda: f.msg.src_ip,
            "$fu": lambda: _uri_of(f.msg.get("From")) or None,
            "$tu": lambda: _uri_of(f.msg.get("To")) or None,
        }
        getter = simple.get(spec)
        return getter() if getter else None

    def gete(self, spec: str) -> str:
        value = self.get(spec)
        return "" if value is None else str(value)

    def sets(self, spec: str, value: str) -> bool:
        if spec.startswith("$shv("):
            self.f.shv[spec[5:-1]] = value
        else:
            self.f.pvs[spec] = value
        self.f.pv_sets[spec] = value
        return True

    def seti(self, spec: str, value: int) -> bool:
        if spec.startswith("$shv("):
            self.f.shv[spec[5:-1]] = value
        else:
            self.f.pvs[spec] = value
        self.f.pv_sets[spec] = value
        return True

    def unset(self, spec: str) -> bool:
        self.f.pvs.pop(spec, None)
        return True


class _Sl(_Sub):
    def sl_send_reply(self, code: int, reason: str) -> int:
        self.f.replies.append((code, reason))
        return 1

    def send_reply(self, code: int, reason: str) -> int:
        return self.sl_send_reply(code, reason)


class _Tm(_Sub):
    def t_relay(self) -> int:
        f = self.f
        if not f.relay_ok:
            return -1
        headers = f.applied_headers()
        f.relays.append(Relay(f.msg.method, f.ruri, f.dsturi, headers, f.msg.body))
        return 1

    def t_check_trans(self) -> int:
        return self.f.check_trans

    def t_newtran(self) -> int:
        return 1

    def t_reply(self, code: int, reason: str) -> int:
        self.f.replies.append((code, reason))
        return 1

    def t_on_reply(self, name: str) -> int:
        self.f.on_reply = name
        return 1

    def t_on_failure(self, name: str) -> int:
        self.f.on_failure = name
        return 1

    def t_branch_timeout(self) -> int:
        return 1 if self.f.branch_timeout else -1

    def t_branch_replied(self) -> int:
        return -1 if self.f.branch_timeout else 1


class _Tmx(_Sub):
    def t_precheck_trans(self) -> int:
        return self.f.precheck_trans


class _Rr(_Sub):
    def record_route(self) -> int:
        self.f.record_routed = True
        return 1

    def loose_route(self) -> int:
        return 1 if self.f.msg.all("Route") else -1


class _Maxfwd(_Sub):
    def process_maxfwd(self, limit: int) -> int:
        value = self.f.msg.get("Max-Forwards")
        if not value:
            return 2
        return 1 if int(value) > 0 else -1


class _Sanity(_Sub):
    def sanity_check(self, msg_checks: int, uri_checks: int) -> int:
        return self.sanity_check_defaults()

    def sanity_check_defaults(self) -> int:
        if self.f.sanity_ok:
            return 1
        self.f.replies.append((400, "Bad Request"))
        return -1


class _Registrar(_Sub):
    def save(self, table: str, flags: int) -> int:
        f = self.f
        user = _user_of(_uri_of(f.msg.get("To")))
        f.locations[user] = _uri_of(f.msg.get("Contact"))
        f.replies.append((200, "OK"))
        return 1

    def lookup(self, table: str) -> int:
        f = self.f
        contact = f.locations.get(_user_of(f.ruri))
        if contact is None:
            return -1
        f.ruri = contact
        return 1


def _credentials(msg: Message) -> str:
    return msg.get("Authorization" if msg.method == "REGISTER" else "Proxy-Authorization")


class _Auth(_Sub):
    def pv_auth_check(self, realm: str, password: str, flags: int, checks: int) -> int:
        header = _credentials(self.f.msg)
        if not header:
            return -5
        if _param(header, "realm") != realm:
            return -1
        return 1 if _param(header, "response") == password else -2

    def auth_challenge(self, realm: str, flags: int) -> int:
        code = 401 if self.f.msg.method == "REGISTER" else 407
        self.f.replies.append((code, "Unauthorized" if code == 401 else "Proxy Authentication Required"))
        self.f.challenges.append(realm)
        return 1

    def consume_credentials(self) -> int:
        self.f.lumps.append(
            ("remove", "Authorization" if self.f.msg.method == "REGISTER" else "Proxy-Authorization")
        )
        return 1


class _Htable(_Sub):
    def sht_get(self, table: str, key: str) -> XVal:
        if (table, key) not in self.f.locked:
            # Real Kamailio may hand back freed memory here (referee.kemi.shared_table).
            raise AssertionError(f"sht_get({table!r}, {key!r}) outside sht_lock: use shared_table.read")
        return self.f.tables.setdefault(table, {}).get(key)

    def sht_lock(self, table: str, key: str) -> int:
        self.f.locked.append((table, key))
        return 1

    def sht_unlock(self, table: str, key: str) -> int:
        self.f.locked.remove((table, key))  # ValueError: unlocking a slot not locked
        return 1

    def sht_sets(self, table: str, key: str, value: str) -> int:
        self.f.tables.setdefault(table, {})[key] = value
        return 1

    def sht_rm(self, table: str, key: str) -> int:
        self.f.tables.setdefault(table, {}).pop(key, None)
        return 1


class _Pike(_Sub):
    def pike_check_req(self) -> int:
        f = self.f
        f.pike_counts[f.msg.src_ip] = f.pike_counts.get(f.msg.src_ip, 0) + 1
        return -1 if f.pike_counts[f.msg.src_ip] > f.pike_limit else 1


class _Textopsx(_Sub):
    def msg_apply_changes(self) -> int:
        f = self.f
        f.msg.headers = f.applied_headers()
        f.lumps.clear()
        f.applied_changes += 1
        return 1


class _Siputils(_Sub):
    def has_totag(self) -> int:
        return 1 if _param(self.f.msg.get("To"), "tag") else -1


class _Dmq(_Sub):
    def handle_message(self) -> int:
        self.f.dmq_handled += 1
        return 1


class _Dispatcher(_Sub):
    def ds_select_dst(self, group: int, alg: int) -> int:
        # Without sets of its own, the fake reads them as dispatcher.list.j2 writes them: the
        # PBXs of REFEREE_PBXS in order, set 1 first.
        pbxs = [item.partition("=")[2] for item in self.f.defines.get("REFEREE_PBXS", "").strip('"').split()]
        uri = self.f.ds_sets.get(group) or (pbxs[group - 1] if 0 < group <= len(pbxs) else None)
        if uri is None or uri in self.f.ds_down:
            return -1
        self.f.dsturi = uri
        self.f.ds_selected = uri
        return 1

    def ds_mark_dst_state(self, state: str) -> int:
        if not self.f.ds_selected:
            return -1
        if "i" in state.lower():
            self.f.ds_down.add(self.f.ds_selected)
        return 1


class _Xhttp(_Sub):
    def xhttp_reply(self, code: int, reason: str, ctype: str, body: str) -> int:
        self.f.http_replies.append((code, reason, body))
        return 1


class _XhttpProm(_Sub):
    """xhttp_prom's metrics, in the fake's ``prom``: (name, label values) -> value."""

    def _add(self, name: str, number: float, *labels: str) -> int:
        key = (name, labels)
        self.f.prom[key] = self.f.prom.get(key, 0) + number
        return 1

    def dispatch(self) -> int:
        self.f.http_replies.append((200, "OK", "metrics"))
        return 1

    def check_uri(self) -> int:
        return 1 if self.f.http_path == "/metrics" else -1

    def counter_inc_l0(self, name: str, number: int) -> int:
        return self._add(name, number)

    def counter_inc_l1(self, name: str, number: int, l1: str) -> int:
        return self._add(name, number, l1)

    def counter_inc_l2(self, name: str, number: int, l1: str, l2: str) -> int:
        return self._add(name, number, l1, l2)

    def counter_inc_l3(self, name: str, number: int, l1: str, l2: str, l3: str) -> int:
        return self._add(name, number, l1, l2, l3)

    def gauge_set_l1(self, name: str, number: str, l1: str) -> int:
        self.f.prom[(name, (l1,))] = float(number)
        return 1


class _Siptrace(_Sub):
    def hlog_cid(self, correlation_id: str, message: str) -> int:
        self.f.hep_logs.append((correlation_id, message))
        return 1


class _Kx(_Sub):
    def get_callid(self) -> XVal:
        return _decode(self.f.msg.get("Call-ID"))

    def get_method(self) -> XVal:
        return self.f.msg.method

    def get_ruri(self) -> XVal:
        return self.f.ruri

    def get_furi(self) -> XVal:
        return _decode(_uri_of(self.f.msg.get("From")))

    def get_fuser(self) -> XVal:
        return _decode(_user_of(_uri_of(self.f.msg.get("From"))))

    def get_turi(self) -> XVal:
        return _decode(_uri_of(self.f.msg.get("To")))

    def get_ua(self) -> XVal:
        return _decode(self.f.msg.get("User-Agent"))

    def get_srcip(self) -> XVal:
        return self.f.msg.src_ip

    def get_srcport(self) -> XVal:
        return str(self.f.msg.src_port)

    def get_body(self) -> XVal:
        return _decode(self.f.msg.body)

    def get_au(self) -> XVal:
        return _param(_credentials(self.f.msg), "username") or None

    def get_status(self) -> int:
        return self.f.msg.status

    def get_def(self, name: str) -> XVal:
        return self.f.defines.get(name)


@dataclass
class FakeKSR:
    """See the module docstring. ``defines`` stands for kamailio.cfg's ``#!define`` names."""

    defines: dict[str, str] = field(default_factory=dict)
    tables: dict[str, dict[str, str]] = field(default_factory=dict)
    locked: list[tuple[str, str]] = field(default_factory=list)  # sht_lock'ed (table, key), in order
    locations: dict[str, str] = field(default_factory=dict)
    log: list[tuple[str, str]] = field(default_factory=list)
    pike_limit: int = 1000
    pike_counts: dict[str, int] = field(default_factory=dict)
    shv: dict[str, XVal] = field(default_factory=dict)
    # dispatcher: set -> destination URI (one per PBX, like dispatcher.list.j2) and the ones down
    ds_sets: dict[int, str] = field(default_factory=dict)
    ds_down: set[str] = field(default_factory=set)
    # xhttp_prom's metrics: (name, label values) -> value; the xhttp replies; the path an HTTP request asks
    prom: dict[tuple[str, tuple[str, ...]], float] = field(default_factory=dict)
    http_replies: list[tuple[int, str, str]] = field(default_factory=list)
    http_path: str = "/metrics"
    # siptrace.hlog_cid: (correlation id, message) of every HEP log sent (kept across messages)
    hep_logs: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hdr = _Hdr(self)
        self.pv = _Pv(self)
        self.sl = _Sl(self)
        self.tm = _Tm(self)
        self.tmx = _Tmx(self)
        self.rr = _Rr(self)
        self.maxfwd = _Maxfwd(self)
        self.sanity = _Sanity(self)
        self.registrar = _Registrar(self)
        self.auth = _Auth(self)
        self.htable = _Htable(self)
        self.pike = _Pike(self)
        self.textopsx = _Textopsx(self)
        self.siputils = _Siputils(self)
        self.dmq = _Dmq(self)
        self.dispatcher = _Dispatcher(self)
        self.siptrace = _Siptrace(self)
        self.kx = _Kx(self)
        self.xhttp = _Xhttp(self)
        self.xhttp_prom = _XhttpProm(self)
        self.request("OPTIONS sip:127.0.0.1 SIP/2.0\r\n\r\n")

    # -- loading a message (resets the per-message records) --------------------------------

    def request(self, raw: str | bytes, *, src_ip: str = "127.0.1.31", src_port: int = 5060) -> FakeKSR:
        self._load(Message.parse(raw, src_ip, src_port))
        self.ruri = self.msg.first_line.split(" ")[1] if self.msg.is_request else ""
        return self

    def reply(self, raw: str | bytes, *, src_ip: str = "127.0.1.20", src_port: int = 5060) -> FakeKSR:
        self._load(Message.parse(raw, src_ip, src_port))
        return self

    def _load(self, msg: Message) -> None:
        self.msg = msg
        self.ruri = ""
        self.dsturi = ""
        self.replies: list[tuple[int, str]] = []
        self.relays: list[Relay] = []
        self.header_ops: list[tuple[str, str]] = []
        self.lumps: list[tuple[str, str]] = []
        self.pv_sets: dict[str, XVal] = {}
        self.pvs: dict[str, XVal] = {}
        self.challenges: list[str] = []
        self.applied_changes = 0
        self.record_routed = False
        self.dropped = False
        self.on_reply: str | None = None
        self.on_failure: str | None = None
        self.reply_headers: list[str] = []
        self.ds_selected = ""
        self.branch_timeout = False  # a failure route: the branch timed out without a reply
        self.dmq_handled = 0
        # knobs a test may flip before calling the handler
        self.sanity_ok = True
        self.relay_ok = True
        self.check_trans = -1
        self.precheck_trans = -1

    def applied_headers(self) -> list[tuple[str, str]]:
        headers = list(self.msg.headers)
        for op, text in self.lumps:
            if op == "remove":
                want = _canon(text)
                headers = [(n, v) for n, v in headers if _canon(n) != want]
            else:
                for line in text.split("\r\n"):
                    if line:
                        name, _, value = line.partition(":")
                        headers.append((name.strip(), value.strip()))
        return headers

    # -- top-level KSR functions ----------------------------------------------------------

    def is_method(self, method: str) -> bool:
        return self.msg.method.upper() == method.upper()

    def is_method_in(self, methods: str) -> bool:
        letters = {
            "I": "INVITE",
            "A": "ACK",
            "B": "BYE",
            "C": "CANCEL",
            "R": "REGISTER",
            "O": "OPTIONS",
            "S": "SUBSCRIBE",
            "P": "PUBLISH",
            "N": "NOTIFY",
            "M": "MESSAGE",
            "U": "UPDATE",
            "K": "KDMQ",
            "G": "GET",
        }
        return any(letters.get(ch) == self.msg.method.upper() for ch in methods)

    def is_KDMQ(self) -> bool:
        return self.msg.method.upper() == "KDMQ"

    def setdsturi(self, uri: str) -> bool:
        self.dsturi = uri
        return True

    def set_drop(self) -> None:
        self.dropped = True

    def _log(self, level: str, text: str) -> None:
        self.log.append((level, text))

    def dbg(self, text: str) -> None:
        self._log("dbg", text)

    def info(self, text: str) -> None:
        self._log("info", text)

    def notice(self, text: str) -> None:
        self._log("notice", text)

    def warn(self, text: str) -> None:
        self._log("warn", text)

    def err(self, text: str) -> None:
        self._log("err", text)

    def crit(self, text: str) -> None:
        self._log("crit", text)

    def logged(self, level: str) -> list[str]:
        return [text for lvl, text in self.log if lvl == level]


if TYPE_CHECKING:
    # mypy proves the fake implements every function of the typed stub.
    def _conforms(fake: FakeKSR) -> KSRProtocol:
        return fake
