"""The roles as a collection (ansible/galaxy.yml), used from a playbook directory outside this repository.

`ansible-galaxy collection build` the collection, install it into a temporary collections path, and run a
play naming `referee.pbx.referee` from a temporary directory with no ansible.cfg and no roles path of this
repository: --syntax-check, then --check --diff against a local target whose directories are temporary.
No root, no lab: check mode changes nothing on this machine (the test says so).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.lab

PLAY = [
    {
        "name": "referee from the collection",
        "hosts": "estate",
        "gather_facts": True,
        "gather_subset": ["min"],
        "roles": [{"role": "referee.pbx.referee"}],
    }
]


def _run(argv: list[str], cwd: Path, collections: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env |= {
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_ROLES_PATH": str(cwd / "roles"),  # empty: the role can only come from the collection
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "0",
    }
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def collections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist, installed = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("collections")
    built = _run(
        [str(BIN / "ansible-galaxy"), "collection", "build", str(ANSIBLE), "--output-path", str(dist)],
        dist,
        installed,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (tarball,) = dist.glob("referee-pbx-*.tar.gz")
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "roles/kamailio/templates/kamailio.cfg.j2" in names
    assert "roles/referee/files/build_wheel.py" in names
    assert not [n for n in names if n.startswith(("inventories/", "site.yml"))], "the repository's own files"
    done = _run(
        [str(BIN / "ansible-galaxy"), "collection", "install", str(tarball), "-p", str(installed)],
        dist,
        installed,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (installed / "ansible_collections" / "referee" / "pbx" / "roles" / "referee" / "tasks").is_dir()
    return installed


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """An operator's playbook directory: a play, an inventory of one local host, a policy file."""
    site, target = tmp_path / "site", tmp_path / "target"
    site.mkdir()
    (site / "roles").mkdir()
    (site / "policy.toml").write_text((REPO / "examples" / "policy.toml").read_text())
    (site / "play.yml").write_text(yaml.safe_dump(PLAY, sort_keys=False))
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
        "referee__wheel": str(REPO),  # built from this checkout by the collection's build_wheel.py
        "referee__wheel_build_dir": str(tmp_path / "wheels"),
        "referee__pip_wheels": [],
        "referee__packages": [],  # the target's packages are not the point; no apt on a bare machine
        "referee__venv": str(target / "opt" / "referee"),
        "referee__policy_src": str(site / "policy.toml"),
        "referee__policy_file": str(target / "etc" / "referee" / "policy.toml"),
        "referee__manage_service": False,
        "referee__logrotate": False,
    }
    (site / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"estate": host}}}))
    return site


def test_collection_play_syntax_from_outside_the_repo(collections: Path, site: Path) -> None:
    done = _run(
        [str(BIN / "ansible-playbook"), "-i", "hosts.yml", "play.yml", "--syntax-check"], site, collections
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_collection_role_check_mode_from_outside_the_repo(collections: Path, site: Path) -> None:
    target = site.parent / "target"
    done = _run(
        [str(BIN / "ansible-playbook"), "-i", "hosts.yml", "play.yml", "--check", "--diff"], site, collections
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    # The diff of the policy that would be installed, from the collection's role, and nothing written.
    assert "TASK [referee.pbx.referee : Install the policy file]" in out
    assert f"+++ after: {site / 'policy.toml'}" in out
    assert '+id = "lab"' in out
    assert not target.exists(), "check mode wrote to the target"
