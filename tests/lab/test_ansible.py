"""Static checks of the Ansible side: ansible-lint (production profile), the Vagrant lab's inventory against
site.yml (--syntax-check, --list-hosts), `vagrant validate`, and the policy version check of the referee role
against stand-in `referee policy status` answers.

These need no root and no VM. A missing tool fails the test: `make test` installs all of them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
VAGRANT = REPO / "vagrant"
BIN = Path(sys.executable).parent
ROLES = ("kamailio", "asterisk", "referee", "sipp_phones")

pytestmark = pytest.mark.lab


def _tool(name: str) -> str:
    local = BIN / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (make test installs it)")
    return found


def _run(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **env}
    return subprocess.run(
        argv, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300, check=False
    )


def test_ansible_lint_production_profile() -> None:
    # ansible/.ansible-lint: production profile, offline; lints the playbook, roles and inventories.
    done = _run([_tool("ansible-lint"), "--profile", "production", "--offline"], ANSIBLE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Profile 'production' was required, and it passed" in done.stdout + done.stderr


@pytest.mark.parametrize("role", ROLES)
def test_every_role_has_argument_specs_for_each_default(role: str) -> None:
    defaults = yaml.safe_load((ANSIBLE / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    specs = yaml.safe_load((ANSIBLE / "roles" / role / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    assert all(name.startswith(f"{role}__") for name in defaults), "role variables are namespaced"
    assert set(defaults) <= set(options), f"undocumented: {sorted(set(defaults) - set(options))}"
    routes = yaml.safe_load((ANSIBLE / "roles" / role / "tasks" / "main.yml").read_text())
    assert all(set(t) & {"ansible.builtin.include_tasks", "ansible.builtin.assert"} for t in routes), (
        "tasks/main.yml only routes"
    )


@pytest.mark.parametrize("inventory", ["vagrant", "production", "local"])
def test_site_yml_syntax_against_inventory(inventory: str) -> None:
    done = _run(
        [_tool("ansible-playbook"), "-i", f"inventories/{inventory}", "site.yml", "--syntax-check"], ANSIBLE
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _vagrant_groups() -> dict[str, list[str]]:
    text = (VAGRANT / "Vagrantfile").read_text()
    block = re.search(r"ANSIBLE_GROUPS = \{(.*?)\}\.freeze", text, re.DOTALL)
    assert block, "Vagrantfile defines ANSIBLE_GROUPS"
    groups = {}
    for name, members in re.findall(r'"(\w+)" => \[([^\]]*)\]', block.group(1)):
        groups[name] = re.findall(r'"([\w-]+)"', members)
    return groups


def test_vagrant_inventory_lists_the_vagrant_machines_per_play() -> None:
    done = _run(
        [
            _tool("ansible-playbook"),
            "-i",
            "inventories/vagrant",
            "site.yml",
            "--list-hosts",
            "--limit",
            "all",
        ],
        ANSIBLE,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    plays = re.split(r"\n\s*play #\d+ ", done.stdout)[1:]
    hosts_per_play = [set(re.findall(r"^\s{6}(\S+)\s*$", p, re.MULTILINE)) for p in plays]
    groups = _vagrant_groups()
    machines = set(re.findall(r"NODES = %w\[([^\]]*)\]", (VAGRANT / "Vagrantfile").read_text())[0].split())
    assert hosts_per_play[0] == machines, "the facts play covers every VM"
    assert hosts_per_play[1] == set(groups["proxies"])
    assert hosts_per_play[2] == set(groups["pbxs"])
    assert hosts_per_play[3] == set(groups["phones"])


def test_vagrantfile_validates() -> None:
    # No VM provider can run on the CI machine, so provider-specific blocks are not evaluated.
    done = _run([_tool("vagrant"), "validate", "--ignore-provider"], VAGRANT, VAGRANT_CHECKPOINT_DISABLE="1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "validated successfully" in done.stdout


def _status_site(tmp_path: Path, versions: dict[str, str]) -> Path:
    """A play of the referee role's policy_status tasks on local hosts whose `referee policy status` is a
    stand-in answering one version each."""
    hosts = {}
    for host, version in versions.items():
        venv = tmp_path / host
        (venv / "bin").mkdir(parents=True)
        rows = [{"kind": "fastagi", "where": f"{host}:4573", "version": version, "error": "", "note": ""}]
        script = venv / "bin" / "referee"
        script.write_text(f"#!/bin/sh\necho '{json.dumps(rows)}'\n")
        script.chmod(0o755)
        hosts[host] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "referee__venv": str(venv),
        }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    play = [
        {
            "name": "status",
            "hosts": "all",
            "gather_facts": False,
            "tasks": [{"ansible.builtin.import_role": {"name": "referee", "tasks_from": "policy_status"}}],
        }
    ]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    return tmp_path


@pytest.mark.parametrize(
    ("versions", "same"),
    [({"pbx-a": "aaaa", "pbx-b": "aaaa"}, True), ({"pbx-a": "aaaa", "pbx-b": "bbbb"}, False)],
)
def test_policy_status_check_fails_loudly_when_versions_differ(
    tmp_path: Path, versions: dict[str, str], same: bool
) -> None:
    site = _status_site(tmp_path, versions)
    done = _run(
        [_tool("ansible-playbook"), "-i", "hosts.yml", "play.yml"],
        site,
        ANSIBLE_ROLES_PATH=str(ANSIBLE / "roles"),
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",  # the message on one line
    )
    out = done.stdout + done.stderr
    if same:
        assert done.returncode == 0, out
        assert "every proxy and FastAGI guard runs policy version aaaa" in out
    else:
        assert done.returncode != 0, out
        assert "The policy versions differ (or one could not be asked) after the push:" in out
        assert "fastagi pbx-a:4573: aaaa; fastagi pbx-b:4573: bbbb" in out
