"""The asterisk role's existing mode, on PBXs someone else configured, inside the lab rootfs.

- plain (127.0.0.22): Debian's stock Asterisk sample configuration, as the sid rootfs ships it, with a UDP
  transport, two PJSIP endpoints, a context for them and the AMI switched on, as an operator would add them.
  The role adds its drop-ins; then a call from the proxy reaches an operator phone, the guard refuses one
  blind transfer (REFER) by an operator phone and allows another, and an AMI Atxfer completes.
- freepbx (127.0.0.23): a FreePBX-shaped /etc/asterisk (generated files that include *_custom.conf files).
  The role touches only *_custom.conf; a regeneration of the generated files loses nothing of referee.

Both: `--check --diff` first (changes nothing, never shows the AMI secret), two runs (the second changes
nothing), the operator's files only gain `#include` lines and keep their owner and mode, and Asterisk is
reloaded, never restarted.

The proxy is SIPp on 127.0.0.10 (the lab proxy's address; Kamailio keeps port 5060 for itself): it calls
from port 5091 and answers the transfer targets the PBX sends it on 5090 (its outbound proxy).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from referee_lab import ami, chroot, services

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "existing_pbx"
SIPP = HERE / "sipp"
SAMPLES = "usr/share/asterisk/conf/samples"  # the stock configuration, in the rootfs
PROXY = "127.0.0.10"
ATXFER = re.compile(r"^Attended Transfer\s.*\*2\s*$", re.MULTILINE)  # `features show`: the current code


@dataclass(frozen=True)
class Pbx:
    """One existing PBX of tests/lab/existing_pbx/hosts.yml."""

    host: str
    name: str
    address: str
    secret: str

    @property
    def etc(self) -> str:
        return f"/etc/asterisk-{self.name}"

    @property
    def conf(self) -> str:
        return f"{self.etc}/asterisk.conf"

    def private_dirs(self) -> dict[str, str]:
        return {
            "astrundir": f"/run/asterisk-{self.name}",
            "astdbdir": f"/var/lib/asterisk-{self.name}",
            "astspooldir": f"/var/spool/asterisk-{self.name}",
            "astlogdir": f"/var/log/asterisk-{self.name}",
        }


OPERATOR = Pbx("operator_pbx", "operator", "127.0.0.22", "operator-test-secret")
FREEPBX = Pbx("freepbx_pbx", "freepbx", "127.0.0.23", "freepbx-test-secret")

# What an operator adds to the stock files: a transport on the PBX's address, two phones (6001's aor before its
# endpoint, so a bare `[6001](+)` would land in the aor), their context, and the AMI on the PBX's address.
OPERATOR_PJSIP = """
; --- the operator's transport and phones ---
[transport-udp]
type = transport
protocol = udp
bind = 127.0.0.22:5060

[6001]
type = aor
contact = sip:6001@127.0.0.22:5071

[6001]
type = endpoint
context = phones
disallow = all
allow = ulaw
aors = 6001
direct_media = no

[6002]
type = endpoint
context = phones
disallow = all
allow = ulaw
aors = 6002
direct_media = no

[6002]
type = aor
contact = sip:6002@127.0.0.22:5072
"""
OPERATOR_DIALPLAN = """
; --- the operator's phones call each other ---
[phones]
exten => _600X,1,Dial(PJSIP/${EXTEN},20)
 same => n,Hangup()
"""

# FreePBX's generated files (rewritten by every "Apply Config"); the rest of the layout is *_custom.conf.
FREEPBX_GENERATED = (
    "pjsip.conf",
    "pjsip.transports.conf",
    "pjsip.endpoint.conf",
    "pjsip.aor.conf",
    "pjsip.auth.conf",
    "pjsip.identify.conf",
    "extensions.conf",
    "extensions_additional.conf",
    "manager.conf",
    "manager_additional.conf",
    "features.conf",
    "features_general_additional.conf",
    "features_applicationmap_additional.conf",
    "features_featuremap_additional.conf",
)


def _rootfs() -> Path:
    state = chroot.LabState.load()
    assert state is not None, "the lab is not up"
    return Path(state.rootfs)


def _cli(root: Path, pbx: Pbx, command: str) -> str:
    done = services.chroot_run(root, "asterisk", "-C", pbx.conf, "-rx", command)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _option(show: str, name: str) -> str | None:
    """An option's value in `pjsip show endpoint` output (`` name   : value``), None when absent."""
    for line in show.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return None


def _asterisk_conf(pbx: Pbx) -> str:
    dirs = "".join(f"{key} => {path}\n" for key, path in pbx.private_dirs().items())
    return f"[directories]\nastetcdir => {pbx.etc}\n{dirs}[options]\nsystemname = {pbx.name}\n"


def _asterisk_ids(root: Path) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "asterisk":
            return int(fields[2]), int(fields[3])
    raise AssertionError("no asterisk user in the rootfs")


def _dpkg_conffile_md5(root: Path, package: str) -> dict[str, str]:
    """The md5 of each conffile of ``package`` as installed (dpkg's status file)."""
    found: dict[str, str] = {}
    stanza = False
    for line in (root / "var/lib/dpkg/status").read_text().splitlines():
        if line.startswith("Package: "):
            stanza = line == f"Package: {package}"
        elif stanza and line.startswith(" /etc/"):
            path, md5 = line.split()[:2]
            found[Path(path).name] = md5
    return found


def _snapshot(etc: Path) -> dict[str, tuple[bytes, int, int, int]]:
    """Every file (and the directory itself) of ``etc``: bytes, mode, owner, group."""
    out = {}
    for path in [etc, *sorted(etc.rglob("*"))]:
        st = path.stat()
        data = path.read_bytes() if path.is_file() else b""
        out[str(path.relative_to(etc))] = (data, st.st_mode, st.st_uid, st.st_gid)
    return out


def _only_includes_added(
    before: Mapping[str, tuple[bytes, int, int, int]], etc: Path
) -> dict[str, list[str]]:
    """Check that every file of ``before`` kept its owner and mode and its bytes, except for #include lines
    appended at its end; the lines appended, by file."""
    added = {}
    for name, (data, mode, uid, gid) in before.items():
        path = etc / name
        st = path.stat()
        assert (st.st_mode, st.st_uid, st.st_gid) == (mode, uid, gid), f"{name}: owner or mode changed"
        if not path.is_file():
            continue
        now = path.read_bytes()
        assert now.startswith(data), f"{name}: the operator's bytes changed"
        lines = [line for line in now[len(data) :].decode().splitlines() if line.strip()]
        assert all(line.startswith("#include ") for line in lines), (name, lines)
        if lines:
            added[name] = lines
    return added


def _playbook(pbx: Pbx, root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "REFEREE_LAB_ROOTFS": str(root),
        "ANSIBLE_ROLES_PATH": str(REPO / "ansible" / "roles"),
        "ANSIBLE_NOCOLOR": "1",
    }
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(HERE / "hosts.yml"),
            str(HERE / "play.yml"),
            "--limit",
            pbx.host,
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _provision(pbx: Pbx, root: Path) -> None:
    """`--check --diff` (nothing changes, no secret shown), then two runs, the second changing nothing."""
    etc = root / pbx.etc.lstrip("/")
    before = _snapshot(etc)
    check = _playbook(pbx, root, "--check", "--diff")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "#include pjsip_referee.conf" in check.stdout, check.stdout
    assert pbx.secret not in check.stdout + check.stderr, "--check --diff shows the AMI secret"
    assert _snapshot(etc) == before, "--check changed a file"
    first = _playbook(pbx, root)
    assert first.returncode == 0, first.stdout + first.stderr
    second = _playbook(pbx, root, "--diff")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "changed=0" in second.stdout.split("PLAY RECAP")[-1], second.stdout


def _add_referee(
    running: Running, root: Path, pbx: Pbx, etc: Path
) -> tuple[dict[str, list[str]], dict[str, tuple[bytes, int, int, int]]]:
    """Start the PBX, run the role on it (`_provision`); the #include lines added, by file, and the snapshot
    of ``etc`` before. Every file kept its owner, mode and bytes, and Asterisk was reloaded, not restarted."""
    pid = _start_asterisk(running, root, pbx)
    before = _snapshot(etc)
    _provision(pbx, root)
    added = _only_includes_added(before, etc)
    assert chroot.alive(pid) and running.state.pids[pbx.name] == pid, "reloaded, not restarted"
    return added, before


@dataclass
class Running:
    """The processes a test started in the rootfs, stopped (by PID) and forgotten at its end."""

    state: chroot.LabState
    names: list[str]

    def start(self, name: str, argv: list[str], ready: str | None = None) -> int:
        pid = chroot.start_daemon(
            self.state, name, argv, services.LOG_DIR / f"{name}.log", ready=Path(ready) if ready else None
        )
        self.names.append(name)
        return pid

    def stop(self) -> None:
        chroot.stop_pids([self.state.pids[n] for n in self.names if n in self.state.pids])
        for name in self.names:
            self.state.pids.pop(name, None)
        self.state.save()


@pytest.fixture
def running(lab: object) -> Iterator[Running]:
    state = chroot.LabState.load()
    assert state is not None
    run = Running(state, [])
    try:
        yield run
    finally:
        run.stop()


def _start_asterisk(running: Running, root: Path, pbx: Pbx) -> int:
    for path in pbx.private_dirs().values():
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    ctl = f"{pbx.private_dirs()['astrundir']}/asterisk.ctl"
    (root / ctl.lstrip("/")).unlink(missing_ok=True)
    pid = running.start(pbx.name, ["asterisk", "-f", "-n", "-C", pbx.conf], ready=ctl)
    _cli(root, pbx, "core waitfullybooted")
    return pid


def _cleanup(root: Path, pbx: Pbx) -> None:
    for path in (pbx.etc, *pbx.private_dirs().values()):
        shutil.rmtree(root / path.lstrip("/"), ignore_errors=True)


# --- the plain PBX: Debian's sample configuration ---


def _stock_operator_pbx(root: Path) -> Path:
    """/etc/asterisk-operator: the stock files, then the operator's additions."""
    etc = root / OPERATOR.etc.lstrip("/")
    shutil.rmtree(etc, ignore_errors=True)
    etc.mkdir(mode=0o755)
    samples = root / SAMPLES
    for sample in samples.glob("*.conf.sample"):
        shutil.copyfile(sample, etc / sample.name.removesuffix(".sample"))
    # The samples are the asterisk-config package's conffiles as shipped, for the files the role reads.
    shipped = _dpkg_conffile_md5(root, "asterisk-config")
    for name in ("pjsip.conf", "extensions.conf", "features.conf", "logger.conf"):
        assert hashlib.md5((etc / name).read_bytes()).hexdigest() == shipped[name], name
    # Private directories, and the lab's module list: the stock autoload would bind every address of the host.
    (etc / "asterisk.conf").write_text(_asterisk_conf(OPERATOR))
    shutil.copyfile(root / "etc/asterisk/modules.conf", etc / "modules.conf")
    with (etc / "pjsip.conf").open("a") as f:
        f.write(OPERATOR_PJSIP)
    with (etc / "extensions.conf").open("a") as f:
        f.write(OPERATOR_DIALPLAN)
    manager = (etc / "manager.conf").read_text()
    manager = manager.replace("enabled = no", "enabled = yes", 1).replace(
        "bindaddr = 0.0.0.0", f"bindaddr = {OPERATOR.address}", 1
    )
    (etc / "manager.conf").write_text(manager)
    (etc / "manager.d").mkdir(mode=0o755)  # Debian's package ships one: root:root 0755, and stays so
    return etc


def _sipp(
    tmp: Path, name: str, scenario: str, address: str, port: int, *args: str
) -> subprocess.Popen[bytes]:
    sipp = shutil.which("sipp")
    assert sipp, "sipp is not installed (make deps)"
    argv = [
        sipp,
        "-sf",
        str(SIPP / scenario),
        "-i",
        address,
        "-p",
        str(port),
        "-mi",
        address,
        "-mp",
        str(30000 + port),
        "-m",
        "1",
        "-nostdin",
        "-aa",
        "-timeout",
        "40s",
        "-timeout_error",
        "-trace_err",
        "-error_file",
        str(tmp / f"{name}-errors.log"),
        *args,
    ]
    out = (tmp / f"{name}.log").open("wb")
    return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _step(
    tmp: Path,
    phones: list[tuple[str, str, str, int, tuple[str, ...]]],
    expect: list[dict[str, str]],
    actions: Sequence[ami.Action] = (),
) -> None:
    """One call: an AMI session of its own (its events are this call's), the phones started in order (the
    answering ones first), each of which must end its scenario well, then the AMI events expected."""
    recorder = ami.AmiRecorder(OPERATOR.address, 5038, "referee", OPERATOR.secret, actions=actions)
    try:
        procs = {}
        for name, scenario, address, port, args in phones:
            procs[name] = _sipp(tmp, name, scenario, address, port, *args)
            _wait_bound(services._udp_bound, (address, port))  # an answering phone listens first
        for name, proc in procs.items():
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = -1
            errors = tmp / f"{name}-errors.log"
            assert code == 0, f"{name}: SIPp exit {code}\n{errors.read_text() if errors.exists() else ''}"
        for pattern in expect:
            assert recorder.wait_for([pattern], timeout=10) is not None, f"no AMI event {pattern}"
    finally:
        recorder.close()
    assert ami.action_problems(OPERATOR.name, recorder.sent, recorder.unsent, recorder.errors) == []


def _wait_bound(
    bound: Callable[[], set[tuple[str, int]]], want: tuple[str, int], timeout: float = 10.0
) -> None:
    deadline = time.monotonic() + timeout
    while want not in bound():
        assert time.monotonic() < deadline, f"nothing listens on {want}"
        time.sleep(0.05)


def _action(when: list[dict[str, str]], delay: float = 0.0, **fields: str) -> ami.Action:
    return ami.Action(OPERATOR.name, tuple(tuple(p.items()) for p in when), tuple(fields.items()), delay)


PBX_SIP = (f"{OPERATOR.address}:5060",)


def _transfers(tmp: Path) -> None:
    # 1. 6002 calls 6001 (the operator's own call, no proxy) and 6001 REFERs it to a premium-rate number:
    #    the guarded endpoints' transfer context runs the guard, which refuses (403) and hangs 6002 up.
    _step(
        tmp,
        [
            (
                "6001-refer-premium",
                "refer.xml",
                OPERATOR.address,
                5071,
                ("-key", "name", "6001", "-key", "target", "09098790000"),
            ),
            (
                "6002-call",
                "caller.xml",
                OPERATOR.address,
                5072,
                ("-s", "6001", "-key", "caller", "6002", *PBX_SIP),
            ),
        ],
        [
            {"Event": "VarSet", "Channel": "PJSIP/6002-*", "Variable": "REFEREE_STATUS", "Value": "403"},
            {
                "Event": "VarSet",
                "Channel": "PJSIP/6002-*",
                "Variable": "REFEREE_RULE",
                "Value": "prefixes:deny:+449",
            },
            {"Event": "Hangup", "Channel": "PJSIP/6002-*", "Cause": "21"},
        ],
    )

    # 2. The proxy calls 6001, which REFERs the call to 1003: allowed, dialled through the proxy, answered.
    _step(
        tmp,
        [
            ("target-blind", "target.xml", PROXY, 5090, ()),
            (
                "6001-refer-1003",
                "refer.xml",
                OPERATOR.address,
                5071,
                ("-key", "name", "6001", "-key", "target", "1003"),
            ),
            (
                "proxy-call-blind",
                "caller.xml",
                PROXY,
                5091,
                ("-s", "6001", "-key", "caller", "1001", *PBX_SIP),
            ),
        ],
        [
            {"Event": "BlindTransfer", "Result": "Success", "Extension": "1003"},
            {
                "Event": "VarSet",
                "Channel": "PJSIP/referee-proxy-*",
                "Variable": "REFEREE_ALLOWED",
                "Value": "1",
            },
        ],
    )

    # 3. The proxy calls 6001 again: an AMI Atxfer of 6001's channel to 1003 (the guard allows it, the proxy's
    #    side answers), then the AMI hangup of 6001's channel completes the attended transfer.
    # 6001's channel in the bridge (the {Channel} of the actions), once the bridge holds both parties.
    bridged = [
        {"Event": "BridgeEnter", "Channel": "PJSIP/6001-*"},
        {"Event": "BridgeEnter", "BridgeNumChannels": "2"},
    ]
    consulted = {"Event": "DialEnd", "DialStatus": "ANSWER", "DestChannel": "PJSIP/referee-proxy-*"}
    _step(
        tmp,
        [
            ("target-attended", "target.xml", PROXY, 5090, ()),
            ("6001-answer", "answer.xml", OPERATOR.address, 5071, ("-key", "name", "6001")),
            (
                "proxy-call-attended",
                "caller.xml",
                PROXY,
                5091,
                ("-s", "6001", "-key", "caller", "1001", *PBX_SIP),
            ),
        ],
        [
            {
                "Event": "VarSet",
                "Channel": "Local/1003@referee-transfer-*",
                "Variable": "REFEREE_ALLOWED",
                "Value": "1",
            },
            {"Event": "AttendedTransfer", "Result": "Success"},
        ],
        [
            _action(
                bridged, 0.5, Action="Atxfer", Channel="{Channel}", Exten="1003", Context="referee-transfer"
            ),
            _action([*bridged, consulted], 0.5, Action="Hangup", Channel="{Channel}"),
        ],
    )


def test_existing_mode_on_debians_sample_config(lab: object, running: Running, tmp_path: Path) -> None:
    root = _rootfs()
    try:
        etc = _stock_operator_pbx(root)
        added, _ = _add_referee(running, root, OPERATOR, etc)
        assert added == {
            "pjsip.conf": ["#include pjsip_referee.conf"],
            "extensions.conf": ["#include extensions_referee.conf"],
            "manager.conf": ["#include manager_referee.conf"],
            "features.conf": ["#include features_referee.conf"],
        }, added

        # What the drop-ins brought, as the running Asterisk sees it.
        globals_ = _cli(root, OPERATOR, "dialplan show globals")
        for line in (
            "REFEREE_FASTAGI=agi://127.0.0.22:4573",
            "REFEREE_DOMAIN=lab.test",
            "CONSOLE=Console/dsp",
        ):
            assert line in globals_, globals_  # the operator's globals are still there
        assert "Gosub(referee-guard,s,1(${EXTEN}))" in _cli(root, OPERATOR, "dialplan show referee-transfer")
        for name in ("6001", "6002"):
            endpoint = _cli(root, OPERATOR, f"pjsip show endpoint {name}")
            assert _option(endpoint, "__TRANSFER_CONTEXT") == "referee-transfer", endpoint
            assert _option(endpoint, "context") == "phones", endpoint
        assert "sip:6001@127.0.0.22:5071" in _cli(root, OPERATOR, "pjsip show aor 6001")
        proxy = _cli(root, OPERATOR, "pjsip show endpoint referee-proxy")
        assert _option(proxy, "context") == "phones" and _option(proxy, "BRIDGE_FEATURES") == "tT", proxy
        assert ATXFER.search(_cli(root, OPERATOR, "features show")), "no atxfer code"
        assert "referee" in _cli(root, OPERATOR, "manager show user referee")

        # The transfer guard of this PBX, and the phones.
        running.start(
            "fastagi-operator",
            [
                "/usr/local/bin/referee",
                "fastagi",
                "--listen",
                OPERATOR.address,
                "--policy",
                services.POLICY_FILE,
            ],
        )
        _wait_bound(services._tcp_listening, (OPERATOR.address, 4573))
        _transfers(tmp_path)
    finally:
        running.stop()
        _cleanup(root, OPERATOR)


# --- the FreePBX-shaped PBX ---


def _freepbx_layout(root: Path) -> Path:
    """/etc/asterisk-freepbx: FreePBX's layout, owned as `fwconsole chown` leaves it (asterisk, 0664)."""
    etc = root / FREEPBX.etc.lstrip("/")
    shutil.rmtree(etc, ignore_errors=True)
    shutil.copytree(HERE / "freepbx", etc)
    (etc / "asterisk.conf").write_text(_asterisk_conf(FREEPBX))
    shutil.copyfile(root / "etc/asterisk/modules.conf", etc / "modules.conf")
    uid, gid = _asterisk_ids(root)
    for path in [etc, *etc.iterdir()]:
        os.chown(path, uid, gid)
        path.chmod(0o775 if path.is_dir() else 0o664)
    return etc


def _regenerate(etc: Path) -> None:
    """What "Apply Config" does: every generated file written anew (here with a new extension, 7002)."""
    for name in FREEPBX_GENERATED:
        shutil.copyfile(HERE / "freepbx" / name, etc / name)
    with (etc / "pjsip.endpoint.conf").open("a") as f:
        f.write("\n[7002]\ntype=endpoint\naors=7002\ncontext=from-internal\ndisallow=all\nallow=ulaw\n")
    with (etc / "pjsip.aor.conf").open("a") as f:
        f.write("\n[7002]\ntype=aor\nmax_contacts=1\n")


def _reload(root: Path, pbx: Pbx) -> None:
    for command in (
        "module reload res_pjsip.so",
        "dialplan reload",
        "module reload features",
        "manager reload",
    ):
        _cli(root, pbx, command)


def _referee_is_loaded(root: Path) -> None:
    globals_ = _cli(root, FREEPBX, "dialplan show globals")
    for line in (
        "REFEREE_FASTAGI=agi://127.0.0.23:4573",
        "REFEREE_DOMAIN=lab.test",
        "ASTETCDIR=/etc/asterisk-freepbx",
    ):
        assert line in globals_, globals_
    assert "Gosub(referee-guard,s,1(${EXTEN}))" in _cli(root, FREEPBX, "dialplan show referee-transfer")
    assert "4444" in _cli(root, FREEPBX, "dialplan show from-internal-custom"), "the administrator's dialplan"
    endpoint = _cli(root, FREEPBX, "pjsip show endpoint 7001")
    assert _option(endpoint, "__TRANSFER_CONTEXT") == "referee-transfer", endpoint
    assert _option(endpoint, "callerid") == '"Alice" <7001>', endpoint
    proxy = _cli(root, FREEPBX, "pjsip show endpoint referee-proxy")
    assert _option(proxy, "context") == "from-internal", proxy
    assert ATXFER.search(_cli(root, FREEPBX, "features show")), "no atxfer code"
    user = _cli(root, FREEPBX, "manager show user referee")
    assert "referee" in user and "No such user" not in user, user


def test_existing_mode_on_a_freepbx_layout(lab: object, running: Running) -> None:
    root = _rootfs()
    try:
        etc = _freepbx_layout(root)
        # Only *_custom.conf files gained lines, #include lines only; every generated file is as it was.
        added, before = _add_referee(running, root, FREEPBX, etc)
        assert added == {
            "pjsip_custom.conf": ["#include pjsip_referee.conf"],
            "pjsip.endpoint_custom_post.conf": ["#include pjsip_referee_guarded.conf"],
            "extensions_custom.conf": ["#include extensions_referee.conf"],
            "globals_custom.conf": ["#include globals_referee.conf"],
            "manager_custom.conf": ["#include manager_referee.conf"],
            "features_featuremap_custom.conf": ["#include features_referee_featuremap.conf"],
        }, added
        for name in FREEPBX_GENERATED:
            assert (etc / name).read_bytes() == before[name][0], name
        _referee_is_loaded(root)

        # FreePBX regenerates its files: referee is still there after the reload, next to the new extension.
        _regenerate(etc)
        _reload(root, FREEPBX)
        _referee_is_loaded(root)
        assert "Unable to find" not in _cli(root, FREEPBX, "pjsip show endpoint 7002")
    finally:
        running.stop()
        _cleanup(root, FREEPBX)
