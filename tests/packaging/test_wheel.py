"""The wheel a packager builds from this checkout: the runtime only, and it works installed.

Once per module: the referee role's ``build_wheel.py`` builds it from a copy of the checkout's
files (what git tracks or would track, as they are now), so that building leaves nothing behind in
the checkout; a fresh virtualenv (no system site-packages) installs the wheel and its dependencies from
the package index; then the ``referee`` commands run from a temporary working directory, where
neither the checkout nor its development venv can be imported by accident.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from referee.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "policy.toml"
SOURCES = REPO / "src" / "referee"
BUILDER = REPO / "ansible" / "roles" / "referee" / "files" / "build_wheel.py"


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    cwd: Path  # a temporary folder outside the checkout

    def run(self, *argv: str, program: str = "referee") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / program), *argv],
            cwd=self.cwd,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def start(self, *argv: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(self.venv / "bin" / "referee"), *argv],
            cwd=self.cwd,
            env=_clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )


def _clean_env() -> dict[str, str]:
    """This environment without what could point the install back at the checkout or a policy."""
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "REFEREE_POLICY"}}


def _build_wheel(into: Path) -> Path:
    done = subprocess.run(
        [sys.executable, str(BUILDER), str(REPO), str(into)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return Path(json.loads(done.stdout)["wheel"])


def _pip(python: Path, *argv: str) -> None:
    done = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *argv],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    # The referee role's builder: what this module tests is what the role deploys.
    wheel = _build_wheel(tmp_path_factory.mktemp("wheels"))
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
    _pip(venv / "bin" / "python", "install", "--quiet", str(wheel))
    return Installed(wheel, venv, tmp_path_factory.mktemp("cwd"))


def _names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_wheel_holds_the_runtime_package_only(installed: Installed) -> None:
    names = _names(installed.wheel)
    dist_info = installed.wheel.name.split("-py3")[0] + ".dist-info"  # referee-0.1.0.dist-info
    tops = {name.split("/", 1)[0] for name in names}
    data = dist_info.replace(".dist-info", ".data")  # the man page, installed as VENV/share/man/man1
    assert tops == {"referee", dist_info, data}, tops
    assert [n for n in names if n.startswith(data)] == [f"{data}/data/share/man/man1/referee.1"]
    assert not [n for n in names if n.startswith(("referee/lab/", "referee_lab/"))]
    # Every module of the checkout's src/referee, and nothing else.
    modules = {f"referee/{p.relative_to(SOURCES).as_posix()}" for p in SOURCES.rglob("*.py")}
    assert {n for n in names if n.endswith(".py")} == modules
    for fake in ("fake_ksr", "fake_ami", "fake_asterisk"):
        assert f"referee/testing/{fake}.py" in names
    assert "referee/py.typed" in names
    with zipfile.ZipFile(installed.wheel) as archive:
        assert archive.read("referee/data/policy.toml") == EXAMPLE.read_bytes()
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    assert "License-Expression: GPL-2.0-or-later\n" in metadata
    assert "Requires-Dist: panoramisk<1.5,>=1.4\n" in metadata


def test_it_imports_from_the_virtualenv_not_the_checkout(installed: Installed) -> None:
    done = installed.run("-c", "import referee; print(referee.__file__)", program="python")
    assert done.returncode == 0, done.stderr
    location = Path(done.stdout.strip())
    assert location.is_relative_to(installed.venv), location
    assert not location.is_relative_to(REPO)


def test_version_and_help(installed: Installed) -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    done = installed.run("--version")
    assert (done.returncode, done.stdout) == (0, f"referee {declared}\n"), done.stderr
    done = installed.run("--help")
    assert done.returncode == 0, done.stderr
    for command in ("policy", "fastagi", "orchestrator"):
        assert command in done.stdout


def test_policy_check_and_validate(installed: Installed) -> None:
    policy = installed.cwd / "policy.toml"
    shutil.copyfile(EXAMPLE, policy)
    done = installed.run("policy", "validate", "policy.toml")
    assert done.returncode == 0, done.stderr
    assert "ok, policy 'lab'" in done.stdout
    allowed = installed.run(
        "policy", "check", "--policy", str(policy), "--referrer", "sip:1002@lab.test", "<sip:1003@lab.test>"
    )
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.startswith("ALLOW  rule pbx1-extensions")
    rejected = installed.run(
        "policy",
        "check",
        "--policy",
        str(policy),
        "--referrer",
        "sip:1002@lab.test",
        "<sip:09001234567@lab.test>",
    )
    assert rejected.returncode == 1
    assert rejected.stdout.startswith("REJECT 403")


def _help(installed: Installed, argv: Sequence[str]) -> str:
    done = installed.run(*argv, "--help")
    assert done.returncode == 0, (argv, done.stderr)
    assert done.stdout.startswith(f"usage: referee {' '.join(argv)}"), done.stdout
    return done.stdout


def test_the_daemons_help(installed: Installed) -> None:
    fastagi = _help(installed, ["fastagi"])
    assert "lab.test" not in fastagi  # no lab value as a default
    _help(installed, ["orchestrator"])


def test_fastagi_serves_from_the_install(installed: Installed) -> None:
    shutil.copyfile(EXAMPLE, installed.cwd / "guard.toml")
    daemon = installed.start("fastagi", "--policy", "guard.toml", "--listen", "127.0.0.1", "--port", "0")
    try:
        assert daemon.stdout is not None
        ready, _, _ = select.select([daemon.stdout], [], [], 60)  # a hung daemon fails, not the session
        line = daemon.stdout.readline() if ready else "(nothing in 60 s)"
        assert line.startswith("referee fastagi: listening on 127.0.0.1:"), line
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            raise
    assert code == 0


def _command_paths(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand of the checkout's ``referee``, as argv prefixes."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*path, name))
                found += _command_paths(sub, (*path, name))
    return found


def test_every_command_answers_help_from_the_install(installed: Installed) -> None:
    # The lab is a checkout's command: the install has its stub only (next test).
    paths = [p for p in _command_paths(build_parser()) if p[0] != "lab"]
    required = {("policy", "check"), ("fastagi",), ("orchestrator",), ("audit", "ingest"), ("transfers",)}
    assert required <= set(paths)
    for path in paths:
        _help(installed, path)


def test_the_lab_is_not_installed_and_says_so(installed: Installed) -> None:
    done = installed.run("lab")
    assert done.returncode == 2
    assert "the lab is not installed: it runs from a referee checkout" in done.stderr
    missing = installed.run("-c", "import referee_lab", program="python")
    assert "ModuleNotFoundError" in missing.stderr


def test_the_demo_runs_on_the_packaged_example(installed: Installed) -> None:
    done = installed.run("-m", "referee.demo", program="python")
    assert done.returncode == 0, done.stderr
    assert "policy 'lab'" in done.stdout.splitlines()[0]
    assert "REJECT 403 Transfer to +449001234567 denied: premium-rate (09)" in done.stdout


def test_the_fakes_import_from_the_install(installed: Installed) -> None:
    code = (
        "from referee.testing.fake_ami import FakeAmi\n"
        "from referee.testing.fake_asterisk import agi_env\n"
        "from referee.testing.fake_ksr import FakeKSR\n"
        "print(FakeAmi().username, agi_env('1003')['agi_extension'], type(FakeKSR()).__name__)\n"
    )
    done = installed.run("-c", code, program="python")
    assert (done.returncode, done.stdout) == (0, "referee 1003 FakeKSR\n"), done.stderr


def test_every_asset_is_in_the_wheel_and_found_from_the_install(installed: Installed) -> None:
    from referee.assets import ASSETS  # noqa: PLC0415

    with zipfile.ZipFile(installed.wheel) as archive:
        for name in ASSETS:  # a link in the checkout is its target's bytes in the wheel
            assert archive.read(f"referee/data/{name}") == (SOURCES / "data" / name).read_bytes(), name
    done = installed.run("assets")
    assert done.returncode == 0, done.stderr
    listed = dict(line.split(None, 1) for line in done.stdout.splitlines())
    assert set(listed) == set(ASSETS)
    for name, where in listed.items():
        assert Path(where).is_relative_to(installed.venv), where
        assert Path(where).read_bytes() == (SOURCES / "data" / name).read_bytes()
    kemi = installed.run("assets", "kamailio/referee_kemi.py")
    assert Path(kemi.stdout.strip()).read_text().startswith('"""Kamailio KEMI entry script')


def test_the_man_page_is_installed_where_man_finds_it(installed: Installed) -> None:
    page = installed.venv / "share" / "man" / "man1" / "referee.1"
    assert page.read_bytes() == (SOURCES / "data" / "man" / "referee.1").read_bytes()
    shown = subprocess.run(
        ["man", "--no-hyphenation", "--no-justification", "referee"],
        env={**_clean_env(), "MANPATH": str(installed.venv / "share" / "man"), "MANWIDTH": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "referee orchestrator [-h] [--config FILE]" in shown.stdout


def _units_for(installed: Installed, into: Path) -> list[Path]:
    """The packaged units with ExecStart pointing at this install instead of /opt/referee."""
    units = []
    for unit in sorted((SOURCES / "data" / "systemd").glob("*.service")):
        text = unit.read_text()
        assert "ExecStart=/opt/referee/bin/referee " in text  # the documented install path
        units.append(into / unit.name)
        units[-1].write_text(text.replace("/opt/referee/", f"{installed.venv}/"))
    return units


def test_the_units_pass_systemd_analyze_verify(installed: Installed, tmp_path: Path) -> None:
    units = _units_for(installed, tmp_path)
    assert [u.name for u in units] == [
        "referee-fastagi.service",
        "referee-ingest.service",
        "referee-orchestrator.service",
    ]
    done = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        env={
            **_clean_env(),
            "MANPATH": str(installed.venv / "share" / "man"),
        },  # Documentation=man:referee(1)
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_units_are_hardened_and_reload_what_reloads() -> None:
    from referee.assets import path  # noqa: PLC0415

    for name in ("fastagi", "orchestrator", "ingest"):
        text = path(f"systemd/referee-{name}.service").read_text()
        for line in (
            "Wants=network-online.target",
            "StateDirectory=referee",
            "User=referee",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "CapabilityBoundingSet=\n",
        ):
            assert line in text, (name, line)
        assert "After=network-online.target" in text
        # Only the FastAGI guard reloads (SIGHUP re-reads the policy); the others restart.
        assert ("ExecReload=/bin/kill -HUP $MAINPID" in text) == (name == "fastagi"), name
    orchestrator = path("systemd/referee-orchestrator.service").read_text()
    assert "LoadCredential=orchestrator.toml:/etc/referee/orchestrator.toml" in orchestrator
    assert "--config ${CREDENTIALS_DIRECTORY}/orchestrator.toml" in orchestrator


def test_ingest_and_transfers_from_the_install(installed: Installed, tmp_path: Path) -> None:
    events = next((REPO / "tests" / "unit" / "data" / "proxy").glob("*.jsonl"))
    env = {**_clean_env(), "REFEREE_AUDIT_DB": str(tmp_path / "audit.sqlite3")}  # as ingest.env sets it
    run = [str(installed.venv / "bin" / "referee")]
    done = subprocess.run(
        [*run, "audit", "ingest", "--events", str(events)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert " events applied, 0 bad lines skipped" in done.stderr
    listed = subprocess.run(
        [*run, "transfers", "--json"], env=env, capture_output=True, text=True, check=False
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout), "no transfer recorded"


def test_the_build_is_reproducible(installed: Installed, tmp_path: Path) -> None:
    """The role copies the wheel to each host: the same sources must give the same bytes (changed=0)."""
    assert _build_wheel(tmp_path).read_bytes() == installed.wheel.read_bytes()
