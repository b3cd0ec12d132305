"""The Kamailio configurations the proxy benchmarks compare, on 127.0.1.70-.79.

proxy 127.0.1.70, PBX stand-in 127.0.1.71 (registered as 1001 for the stock cfg's location lookup;
pbx1 of referee's full proxy), phone 1002 at 127.0.1.72, readiness pings from 127.0.1.79. Every one
runs the host's Kamailio with ``-x tlsf -m 256`` (the default allocator is slow) and 2 children.

``checkout`` is the source tree referee runs from (its ``src``, its drop-in template and scripts):
this one by default, or another (e.g. a copy of an earlier commit) to compare a change before/after.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from contextlib import AbstractContextManager
from pathlib import Path

import existing_cfg
import harness
import jinja2
import sippgen
from proxy_runs import Run, kamailio_cpu_seconds

PROXY, PBX, PHONE, PBX2, PING_FROM = "127.0.1.70", "127.0.1.71", "127.0.1.72", "127.0.1.73", "127.0.1.79"
REMOTE = f"{PROXY}:{harness.PORT}"
SHM_MB = 256
# These addresses' own lock: not the integration tests' (harness.LOCK_PATH), which the integration tests' session holds while
# `make test` runs the smoke test of these benchmarks in the same process.
LOCK_PATH = "/tmp/referee-bench-proxy.lock"


def exclusive() -> AbstractContextManager[None]:
    """Hold the machine-wide lock on 127.0.1.70-.79 (another checkout may run these benchmarks)."""
    return harness.exclusive(LOCK_PATH)


def in_checkout(checkout: Path, path: Path) -> Path:
    """``path`` (a file of this checkout) in ``checkout``. A tree from before the kamailio role held the
    scripts (55b7621) has them in its kamailio/ folder: the --before runs may use one."""
    here = checkout / path.relative_to(harness.REPO)
    return here if here.exists() else checkout / "kamailio" / path.name


def stock(tmp: Path, *, referee: bool, checkout: Path = harness.REPO) -> harness.Kamailio:
    """Debian's stock kamailio.cfg (WITH_AUTH, SQLite subscribers), with referee's drop-in or without."""
    policy = tmp / "policy.toml"
    policy.write_text(harness.POLICY.read_text())
    (tmp / "kamailio-local.cfg").write_text(existing_cfg.local_cfg(tmp).replace(existing_cfg.PROXY, PROXY))
    existing_cfg.subscriber_db(tmp / "kamailio.sqlite")
    text = existing_cfg.stock_cfg().read_text()
    if referee:
        values = existing_cfg.dropin_vars(
            tmp,
            kamailio__native_script=str(in_checkout(checkout, existing_cfg.NATIVE_SCRIPT)),
            kamailio__referee_pythonpath=str(checkout / "src"),
        )
        template = in_checkout(checkout, existing_cfg.DROPIN_TEMPLATE)
        env = jinja2.Environment(
            undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True
        )
        dropin = tmp / "referee.cfg"
        dropin.write_text(env.from_string(template.read_text()).render(**values))
        text = existing_cfg.add_referee(text, dropin)
    cfg = tmp / "kamailio.cfg"
    cfg.write_text(text)
    return harness.Kamailio(
        tmp, cfg, shm_mb=SHM_MB, address=PROXY, ping_from=PING_FROM, extra_args=("-Y", str(tmp))
    )


def kemi(
    tmp: Path,
    *,
    script: Path | None = None,
    checkout: Path = harness.REPO,
    routing: str = "kemi",
    **overrides: object,
) -> harness.Kamailio:
    """referee's full proxy (the kamailio role's kamailio.cfg.j2) with its KEMI routing, running ``script``
    (referee's by default), or with ``routing="native"``: kamailio.cfg routes, Python only for transfers."""
    shutil.copy(harness.POLICY, tmp / "policy.toml")
    cfg = harness.render_cfg(
        tmp,
        kamailio__routing=routing,
        kamailio__listen=[f"udp:{PROXY}:{harness.PORT}"],
        kamailio__pbxs=[
            {"name": "pbx1", "uri": f"sip:{PBX}:{harness.PORT}"},
            {"name": "pbx2", "uri": f"sip:{PBX2}:{harness.PORT}"},
        ],
        kamailio__refer_rate=10**6,
        kamailio__kemi_script=str(script or in_checkout(checkout, harness.KEMI_SCRIPT)),
        kamailio__referee_pythonpath=str(checkout / "src"),
        **overrides,
    )
    return harness.Kamailio(tmp, cfg, shm_mb=SHM_MB, address=PROXY, ping_from=PING_FROM)


# route[REFER] of the native routing: Python decides the REFER the routing's blocks passed.
REFER_TO_PYTHON = re.compile(r"^\tpython_exec\(\"refer\", .*$", re.M)
# In the pass-through, the same REFER is routed natively instead, as any request is: relayed in its dialog,
# outside one to the phone's home PBX.
REFER_ROUTED_NATIVELY = "\tif ($var(referee_dialog) == 1) {\n\t\troute(RELAY);\n\t}\n\troute(LOCATION);"


def native_passthrough(tmp: Path) -> harness.Kamailio:
    """referee's native routing with the REFER check taken out: REFERs authenticated natively and relayed to
    the phone's home PBX, no Python. The native routing's pass-through."""
    proxy = kemi(tmp, routing="native")
    text, found = REFER_TO_PYTHON.subn(lambda _: REFER_ROUTED_NATIVELY, proxy.cfg.read_text())
    if found != 1:
        raise RuntimeError("kamailio.cfg.j2's route[REFER] no longer calls Python as REFER_TO_PYTHON says")
    proxy.cfg.write_text(text)
    return proxy


# --- SIPp -------------------------------------------------------------------------------------

# The share of calls that may fail on a message overtaken by another (see drive) before a run is no benchmark.
TOLERATED_FAILURES = 0.05
BOUNDED = ("-timeout", "60s", "-timeout_error")  # a run never hangs on a lost message


def sipp(tmp: Path, name: str, body: str, local_ip: str, *extra: str) -> list[str]:
    """A SIPp command line for the scenario ``body`` at ``local_ip``:5060."""
    xml = harness.scenario(tmp, name, body)
    return [
        harness.SIPP,
        "-sf",
        str(xml),
        "-i",
        local_ip,
        "-p",
        str(harness.PORT),
        "-nostdin",
        *BOUNDED,
        *extra,
    ]


def timed(body: str) -> str:
    """``body`` between SIPp's response-time markers: a call that reaches its end writes when it did."""
    return f'<nop start_rtd="1"/>\n{body}\n<nop rtd="1"/>'


def last_call_end(tmp: Path) -> float | None:
    """When the last call that went through ended, in seconds since SIPp started (its ``-trace_rtt``
    file's ``Date_ms``); None when no call went through."""
    ends = [
        float(line.split(";")[0]) / 1000
        for csv in tmp.glob("phone_*_rtt.csv")
        for line in csv.read_text().splitlines()[1:]
        if line.strip()
    ]
    return max(ends) if ends else None


def register_pbx(tmp: Path, proxy: harness.Kamailio) -> None:
    """The PBX stand-in registers as 1001, from its own address and port (the stock cfg finds it so)."""
    body = sippgen.register("1001", harness.PASSWORDS["1001"], 200)
    done = subprocess.run(
        sipp(tmp, "pbx-register", body, PBX, REMOTE, "-m", "1"), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the PBX stand-in did not register:\n{done.stdout[-2000:]}{proxy.log()[-2000:]}")


def start_pbx(tmp: Path, body: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(sipp(tmp, "pbx", body, PBX), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        process.wait(timeout=10)


def failed_calls(sipp_stdout: str) -> int | None:
    """SIPp's failed calls (its final statistics screen); None when it printed none."""
    found = re.findall(r"^\s*Failed call\s*\|\s*\d+\s*\|\s*(\d+)", sipp_stdout, re.M)
    return int(found[-1]) if found else None


def retransmissions(sipp_stdout: str) -> int:
    """Retransmissions SIPp counted (its final statistics screen): UDP loss shows up here."""
    return sum(int(n) for n in re.findall(r"^\s*\S+ -+>\s+(?:[A-Za-z]\S*\s+)?\d+\s+(\d+)", sipp_stdout, re.M))


def failure_reasons(tmp: Path) -> str:
    """How many failed calls SIPp's ``-trace_err`` log gives each reason (the message it waited for and
    the one it got, or the timeout), most frequent first."""
    reasons: dict[str, int] = {}
    for log in tmp.glob("phone_*_errors.log"):
        for line in log.read_text(errors="replace").splitlines():
            found = re.search(r"(while [^(]*\(index \d+\), received '[^\r\n']{0,40})", line)
            if found is None:
                found = re.search(r"((?:timeout|Timeout)[^.;]{0,80})", line)
            if found is not None:
                reasons[found.group(1)] = reasons.get(found.group(1), 0) + 1
    return "\n".join(f"{n:6d}  {reason}" for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]))


def drive(
    tmp: Path,
    proxy: harness.Kamailio,
    *,
    pbx_body: str,
    phone_body: str,
    items: int,
    in_flight: int,
    rate: int,
    register: bool,
    label: str,
) -> Run:
    """Start ``proxy`` and the PBX stand-in (registered as 1001 first when ``register``), let the phone run
    ``items`` SIPp calls of ``phone_body``; their rate and Kamailio's CPU per call. Stops everything."""
    pbx: subprocess.Popen[bytes] | None = None
    try:
        proxy.start()
        if register:
            register_pbx(tmp, proxy)
        pbx = start_pbx(tmp, pbx_body)
        time.sleep(0.2)
        assert proxy.proc is not None
        cpu_start = kamailio_cpu_seconds(proxy.proc.pid)
        start = time.monotonic()
        phone = sipp(
            tmp, "phone", timed(phone_body), PHONE, REMOTE, "-m", str(items), "-l", str(in_flight), "-r", str(rate),
            # A call whose message was lost fails after 2 s instead of holding the run's end until the 60 s
            # timeout: one such call among the last ones made a 0.7 s run last a minute.
            "-recv_timeout", "2000",
            "-trace_rtt", "-rtt_freq", "1",  # each call that went through, when it ended (see timed)
            "-trace_err",  # why each failed call failed (failure_reasons)
        )  # fmt: skip
        done = subprocess.run(phone, capture_output=True, text=True, check=False, cwd=tmp)
        elapsed = time.monotonic() - start
        # The rate is of the calls that went through, up to the end of the last of them: a failed call's 2 s
        # wait for a message that never comes, at the end of a run, is not the proxy's throughput.
        elapsed = last_call_end(tmp) or elapsed
        cpu = kamailio_cpu_seconds(proxy.proc.pid) - cpu_start
        failed = failed_calls(done.stdout)
        # UDP keeps no order between Kamailio's workers: a rare call of SIPp's fixed script fails on a message
        # that overtook another. More than 5% failed (2% once was: a loaded machine reorders more), or SIPp
        # failing otherwise, is not a benchmark any more.
        if failed is None or failed > max(1, int(items * TOLERATED_FAILURES)):
            raise RuntimeError(
                f"{label}: SIPp failed ({done.returncode}), {failed} calls:\n{failure_reasons(tmp)}\n"
                f"{done.stdout[-3000:]}\n{proxy.log()[-3000:]}"
            )
        print(
            f"  {label}: {(items - failed) / elapsed:7.0f}/s, {failed} failed, {retransmissions(done.stdout)} retransmissions",
            flush=True,
        )
    finally:
        proxy.stop()
        stop(pbx)
    completed = items - failed  # the rate and the CPU of the calls that went through
    return Run(completed / elapsed, cpu / completed * 1e6)
