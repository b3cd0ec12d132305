"""The production inventory, copied and filled in as an operator would, in --check --diff against an existing
estate (issue 10, "An operator's inventory").

The estate is the running lab's rootfs, reached with the chroot connection: a Kamailio and an Asterisk that
run, configured by someone else (the lab's own provisioning). The operator's copy of
ansible/inventories/production keeps the shipped files; only group_vars/all/main.yml (the one file of
settings), the secrets file and the host names change, and the wheel and the policy are put where main.yml
says. The run must succeed from a fresh checkout (the wheel is built in --check too), show the policy change
as a diff, and change nothing on the hosts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from referee_lab import provision, topology
from referee_lab.services import UpReport

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
BUILDER = ANSIBLE / "roles" / "referee" / "files" / "build_wheel.py"
EXAMPLE = REPO / "examples" / "policy.toml"
# What the run may touch on the hosts: none of it may change in --check.
WATCHED = ("etc/referee", "etc/kamailio", "etc/asterisk", "opt/referee/wheels", "usr/share/asterisk/agi-bin")

pytestmark = pytest.mark.lab


def _snapshot(root: Path) -> dict[str, tuple[str, int, int, int]]:
    """Every watched file and directory: content hash, mode, owner, group."""
    found = {}
    for top in WATCHED:
        if not (root / top).exists():
            continue
        for path in [root / top, *sorted((root / top).rglob("*"))]:
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            found[str(path.relative_to(root))] = (digest, st.st_mode, st.st_uid, st.st_gid)
    return found


def _operator_copy(tmp: Path, root: Path) -> Path:
    """inventories/production as an operator fills it in, for the lab's proxy and pbx1."""
    topo = topology.load()
    pbx = topo.pbxs[0]
    inventory = tmp / "production"
    shutil.copytree(ANSIBLE / "inventories" / "production", inventory)
    settings_file = inventory / "group_vars" / "all" / "main.yml"
    settings = yaml.safe_load(settings_file.read_text())
    settings |= {
        "site_domain": topo.domain,
        "site_proxy_address": topo.proxy_address,
        "site_proxy_port": topo.proxy_port,
        "site_pbxs": [
            {
                "host": "pbx-a.example.net",
                "name": pbx.name,
                "address": pbx.address,
                "sip_port": pbx.sip_port,
                "agi_port": pbx.agi_port,
            }
        ],
    }
    settings_file.write_text(yaml.safe_dump(settings, sort_keys=False))
    # The secrets an operator keeps in an encrypted vault.yml; in clear here, a test's throwaway copy.
    phones = [{"name": p.user, "password": p.password, "pbx": p.pbx} for p in topo.phones]
    secrets = {"vault_asterisk_ami_secret": topo.ami_secret, "vault_kamailio_users": phones}
    (inventory / "group_vars" / "all" / "vault.yml").write_text(yaml.safe_dump(secrets))
    # The hosts: the lab rootfs stands for both. Its daemons are the lab runner's, not systemd's.
    estate = {
        "vars": {
            "ansible_connection": "community.general.chroot",
            "ansible_host": str(root),
            "ansible_python_interpreter": "/usr/bin/python3",
            "kamailio__manage_service": False,
            "asterisk__manage_service": False,
            "referee__manage_service": False,
        },
        "children": {
            "proxies": {"hosts": {"sip-proxy-1.example.net": None}},
            "pbxs": {"hosts": {"pbx-a.example.net": None}},
        },
    }
    hosts = {"all": {"children": {"estate": estate, "phones": {"hosts": {}}}}}
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    # Where main.yml says the wheel and the policy are (files/ next to the inventory folder).
    files = tmp / "files"
    files.mkdir()
    subprocess.run([sys.executable, str(BUILDER), str(REPO), str(files)], check=True, capture_output=True)
    assert (files / "referee-0.1.0-py3-none-any.whl").is_file(), sorted(os.listdir(files))
    (files / "policy.toml").write_text(EXAMPLE.read_text().replace("\nmax_depth = 3\n", "\nmax_depth = 4\n"))
    return inventory


def test_production_inventory_check_diff_changes_nothing(lab: UpReport, tmp_path: Path) -> None:
    root = lab.rootfs
    inventory = _operator_copy(tmp_path, root)
    before = _snapshot(root)
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    done = subprocess.run(
        [provision.ansible_bin("ansible-playbook"), "-i", str(inventory), "site.yml", "--check", "--diff"],
        cwd=ANSIBLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert "failed=0" in out
    # Exactly what would change: the policy, on the proxy and on the PBX, shown as a diff.
    assert out.count("TASK [referee : Install the policy file]") == 2
    assert out.count("-max_depth = 3\n+max_depth = 4") == 2, out
    # Both sides of the estate were looked at: the asterisk role (existing mode) and the kamailio role ran.
    assert "TASK [asterisk : " in out
    assert "TASK [kamailio : " in out
    assert _snapshot(root) == before, "--check changed the hosts"
