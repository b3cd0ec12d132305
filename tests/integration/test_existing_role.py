"""The kamailio role in existing mode against a copy of Debian's kamailio.cfg in a temporary directory
(``connection: local``): it adds the include line, the route(REFEREE) call and its own files, nothing else;
``--check --diff`` shows exactly those two lines; the operator's owner and mode stay; a second run changes
nothing; without a route(REFEREE) call or a marker to put it after, it fails and says why.

The role's `kamailio -c` validation runs the host's Kamailio (5.6), on the 5.6 stock file whatever
REFEREE_KAMAILIO_ROOTFS says.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import existing_cfg as ex
import harness
import pytest

pytestmark = pytest.mark.integration

ANSIBLE_PLAYBOOK = Path(os.environ.get("VIRTUAL_ENV", harness.REPO / ".venv")) / "bin" / "ansible-playbook"
STOCK = ex.STOCK / "kamailio-5.6.cfg"
PLAY = """- hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: kamailio
"""


def role_vars(tmp: Path, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        **ex.dropin_vars(tmp),
        "kamailio__mode": "existing",
        "kamailio__install_packages": False,
        "kamailio__manage_service": False,
        "kamailio__config_dir": str(tmp),
        "kamailio__native_script_src": str(ex.NATIVE_SCRIPT),
        "kamailio__native_script": str(tmp / "referee_native.py"),
        "kamailio__refer_hook_after": ex.HOOK_AFTER,
        "ansible_python_interpreter": sys.executable,
    }
    values.update(overrides)
    return values


def operator_site(tmp: Path) -> Path:
    """Debian's kamailio.cfg with the operator's kamailio-local.cfg, owned root:kamailio 0604 (unusual on purpose)."""
    cfg = ex.prepare(tmp, referee=False)
    shutil.copy(STOCK, cfg)
    shutil.chown(cfg, "root", "kamailio")
    cfg.chmod(0o604)
    return cfg


def play(tmp: Path, values: dict[str, object], *flags: str) -> subprocess.CompletedProcess[str]:
    (tmp / "play.yml").write_text(PLAY)
    (tmp / "vars.json").write_text(json.dumps(values))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(harness.REPO / "ansible" / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(harness.REPO / "ansible" / "roles"),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
    }
    return subprocess.run(
        [
            str(ANSIBLE_PLAYBOOK),
            "-i",
            "localhost,",
            str(tmp / "play.yml"),
            "-e",
            f"@{tmp / 'vars.json'}",
            *flags,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=300,
        check=False,
    )


def changed(result: subprocess.CompletedProcess[str]) -> int:
    found = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", result.stdout)
    assert found, result.stdout + result.stderr
    return int(found.group(1))


def diff_lines(output: str, path: Path) -> list[str]:
    """The added and removed lines ansible's --diff shows for ``path``."""
    lines: list[str] = []
    current = ""
    for line in output.splitlines():
        if line.startswith(("--- before", "+++ after")):
            current = line.split(": ", 1)[1].removesuffix(" (content)") if ": " in line else ""
            continue
        if current == str(path) and line[:1] in ("+", "-"):
            lines.append(line)
    return lines


def test_existing_mode_adds_two_lines_and_its_own_files(tmp_path: Path) -> None:
    cfg = operator_site(tmp_path)
    before = cfg.stat()
    values = role_vars(tmp_path)
    dropin = tmp_path / "referee.cfg"

    dry = play(tmp_path, values, "--check", "--diff")
    assert changed(dry) > 0
    assert cfg.read_text() == STOCK.read_text()  # check mode wrote nothing
    assert not dropin.exists()
    assert diff_lines(dry.stdout, cfg) == [f'+include_file "{dropin}"', "+\troute(REFEREE);"], dry.stdout

    first = play(tmp_path, values)
    assert changed(first) > 0
    assert cfg.read_text() == ex.add_referee(STOCK.read_text(), dropin)  # what the integration test runs
    assert dropin.read_text() == ex.render_dropin(ex.dropin_vars(tmp_path, **values))  # type: ignore[arg-type]
    assert (tmp_path / "referee_native.py").read_bytes() == ex.NATIVE_SCRIPT.read_bytes()
    after = cfg.stat()
    assert (after.st_uid, after.st_gid, after.st_mode) == (before.st_uid, before.st_gid, before.st_mode)

    again = play(tmp_path, values, "--diff")
    assert changed(again) == 0, again.stdout


def test_without_the_call_or_a_marker_the_role_fails_and_says_why(tmp_path: Path) -> None:
    cfg = operator_site(tmp_path)
    result = play(tmp_path, role_vars(tmp_path, kamailio__refer_hook_after=""))
    assert result.returncode != 0
    assert "has no `route(REFEREE);` line" in result.stdout, result.stdout
    assert "kamailio__refer_hook_after is not set" in result.stdout
    assert cfg.read_text() == STOCK.read_text()


def test_a_cfg_that_already_calls_route_referee_gets_only_the_include(tmp_path: Path) -> None:
    cfg = operator_site(tmp_path)
    own = STOCK.read_text().replace(
        "\troute(WITHINDLG);\n", "\troute(REFEREE);  # mine\n\troute(WITHINDLG);\n", 1
    )
    cfg.write_text(own)
    result = play(tmp_path, role_vars(tmp_path, kamailio__refer_hook_after=""), "--diff")
    assert changed(result) > 0
    assert diff_lines(result.stdout, cfg) == [f'+include_file "{tmp_path / "referee.cfg"}"'], result.stdout
