"""``referee policy status``: which policy version the proxy and each FastAGI server run.

    referee policy status [--ctl unix:/run/kamailio/kamailio_ctl] [--no-proxy]
                          [--fastagi HOST:PORT ...] [--policy FILE] [--json]

- the proxy: ``kamcmd -s CTL pv.shvGet referee_policy_version``, the version of the last good
  policy file a Kamailio worker loaded, the one every worker converges on
  (:mod:`referee.kemi.policy_holder`);
- each FastAGI server: its ``policy-status`` route (:mod:`referee.agi.daemon`), asked the way
  Asterisk would, answering each ``SET VARIABLE`` with ``200 result=1``;
- ``--policy FILE``: the version the file on disk compiles to, for comparison.

Exit status: 0 when every one answered with the same version, 1 when they differ, 4 when one
could not be asked (named on its line).
"""

from __future__ import annotations

import argparse
import json
import shlex
import socket
import subprocess
from dataclasses import asdict, dataclass

EXIT_SAME, EXIT_DIFFERENT, EXIT_UNREACHABLE = 0, 1, 4
DEFAULT_CTL = "unix:/run/kamailio/kamailio_ctl"
VERSION_VAR = "referee_policy_version"
TIMEOUT = 5.0


@dataclass(frozen=True)
class Status:
    """One place that runs a policy: what it answered, or why it did not."""

    kind: str  # "proxy", "fastagi" or "file"
    where: str
    version: str = ""  # "" when it runs none, or could not be asked
    error: str = ""  # why it could not be asked
    note: str = ""  # e.g. a FastAGI server's reason to keep an older policy

    @property
    def reachable(self) -> bool:
        return not self.error

    def line(self) -> str:
        if self.error:
            trouble = "UNUSABLE" if self.kind == "file" else "UNREACHABLE"
            return f"{self.kind:<8} {self.where}: {trouble}: {self.error}"
        version = self.version or "(no policy)"
        note = f" ({self.note})" if self.note else ""
        return f"{self.kind:<8} {self.where}: version {version}{note}"


def proxy_status(ctl: str, kamcmd: str = "kamcmd", timeout: float = TIMEOUT) -> Status:
    """The proxy's version, over its ctl socket."""
    try:
        done = subprocess.run(
            [kamcmd, "-s", ctl, "pv.shvGet", VERSION_VAR],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        return Status("proxy", ctl, error=f"{kamcmd} not found")
    except subprocess.TimeoutExpired:
        return Status("proxy", ctl, error=f"no answer within {timeout:g} s")
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        return Status("proxy", ctl, error=why[-1] if why else f"{kamcmd} exited {done.returncode}")
    return Status("proxy", ctl, version=_shv_value(done.stdout))


def _shv_value(out: str) -> str:
    """The ``value:`` of ``kamcmd pv.shvGet``'s answer (``{ name: ..., type: string, value: X }``)."""
    for line in out.splitlines():
        key, colon, value = line.strip().partition(":")
        if colon and key == "value":
            value = value.strip()
            return "" if value == "0" else value  # an unset string shv reads as 0 on some versions
    return ""


def fastagi_status(address: str, timeout: float = TIMEOUT) -> Status:
    """A FastAGI server's version, from its ``policy-status`` route."""
    host, _, port_text = address.rpartition(":")
    if not host or not port_text.isdigit():
        return Status("fastagi", address, error="not HOST:PORT")
    header = (
        "agi_network: yes\n"
        f"agi_network_script: policy-status\n"
        f"agi_request: agi://{address}/policy-status\n"
        "agi_channel: referee/policy-status\n\n"
    )
    try:
        with socket.create_connection((host, int(port_text)), timeout=timeout) as sock:
            sock.sendall(header.encode())
            answers = _set_variables(sock)
    except OSError as err:
        return Status("fastagi", address, error=err.strerror or str(err) or type(err).__name__)
    if "REFEREE_POLICY_VERSION" not in answers:
        return Status("fastagi", address, error="no policy-status route (an older referee?)")
    error = answers.get("REFEREE_POLICY_ERROR", "")
    note = f"file {answers.get('REFEREE_POLICY_FILE', '?')} not in force: {error}" if error else ""
    return Status("fastagi", address, version=answers["REFEREE_POLICY_VERSION"], note=note)


def _set_variables(sock: socket.socket) -> dict[str, str]:
    """Play Asterisk: answer every command with ``200 result=1``, collect SET VARIABLEs until EOF."""
    found: dict[str, str] = {}
    reader = sock.makefile("rb")
    for _ in range(64):  # a status answer is 3 commands: bound a server that never stops talking
        line = reader.readline(8192)
        if not line:
            break
        words = shlex.split(line.decode("utf-8", "replace"), posix=True)
        if len(words) >= 3 and [w.upper() for w in words[:2]] == ["SET", "VARIABLE"]:
            found[words[2]] = words[3] if len(words) > 3 else ""
        sock.sendall(b"200 result=1\n")
    return found


def file_status(path: str) -> Status:
    from referee.policy import PolicyError, load_policy  # noqa: PLC0415

    try:
        return Status("file", path, version=load_policy(path).version)
    except PolicyError as err:
        return Status("file", path, error=str(err))


def status(args: argparse.Namespace) -> int:
    found: list[Status] = []
    if not args.no_proxy:
        found.append(proxy_status(args.ctl, args.kamcmd))
    found += [fastagi_status(address) for address in args.fastagi]
    disk = file_status(args.policy) if args.policy else None
    shown = [*found, disk] if disk is not None else found
    if args.json:
        print(json.dumps([asdict(s) for s in shown], indent=2))
    else:
        for one in shown:
            print(one.line())
    if not found:
        return EXIT_SAME
    if not all(s.reachable for s in found):
        return EXIT_UNREACHABLE
    versions = {s.version for s in found} | ({disk.version} if disk is not None and disk.reachable else set())
    return EXIT_SAME if len(versions) == 1 and "" not in versions else EXIT_DIFFERENT


def add_parser(policy_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status`` to ``referee policy``."""
    parser = policy_commands.add_parser(
        "status", help="the policy version the proxy and each FastAGI server run"
    )
    parser.add_argument(
        "--ctl", default=DEFAULT_CTL, metavar="SOCKET", help=f"Kamailio's ctl socket (default {DEFAULT_CTL})"
    )
    parser.add_argument("--kamcmd", default="kamcmd", metavar="PATH", help="the kamcmd program")
    parser.add_argument("--no-proxy", action="store_true", help="do not ask a local proxy")
    parser.add_argument(
        "--fastagi", action="append", default=[], metavar="HOST:PORT", help="a FastAGI server (repeatable)"
    )
    parser.add_argument("--policy", metavar="FILE", help="also show the version FILE compiles to")
    parser.add_argument("--json", action="store_true", help="print the answers as JSON")
    parser.set_defaults(run=status)
