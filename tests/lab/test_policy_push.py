"""One policy push on the running lab (issue 10, "One policy push").

`ansible-playbook site.yml --tags policy` with another policy file: the referee role installs it only when
`referee policy validate` accepts it, its handlers make Kamailio (kamcmd pv.shvSet referee_reload) and each
FastAGI guard (SIGHUP by pidfile, the lab's referee__fastagi_reload_command) re-read it, and the last play
asserts with `referee policy status` that all of them run its version. A bad file fails the play at
validate and every side keeps the version in force. The lab's example policy is pushed back at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from referee_lab import provision, services, topology
from referee_lab.services import UpReport

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "policy.toml"
VENV_REFEREE = "/opt/referee/bin/referee"  # the referee role's virtualenv in the rootfs
REFEREE = str(Path(sys.executable).parent / "referee")  # this checkout's, on the controller

pytestmark = pytest.mark.lab


def _versions(root: Path) -> dict[str, str]:
    """Who runs which version: the proxy, each FastAGI guard, and the file on disk, by `referee policy status`."""
    topo = topology.load()
    guards = [f"--fastagi={pbx.address}:{pbx.agi_port}" for pbx in topo.pbxs]
    done = services.chroot_run(
        root, VENV_REFEREE, "policy", "status", "--json", "--policy", services.POLICY_FILE, *guards
    )
    rows = json.loads(done.stdout)
    assert all(not row["error"] for row in rows), rows
    return {f"{row['kind']} {row['where']}": row["version"] for row in rows}


def _version_of(policy: Path) -> str:
    done = subprocess.run(
        [REFEREE, "policy", "validate", "--json", str(policy)],
        capture_output=True,
        text=True,
        check=True,
    )
    version: str = json.loads(done.stdout)["version"]
    return version


def _push(root: Path, policy: Path, log: Path) -> str:
    """Run the policy push; the playbook's output (RuntimeError with its tail when it fails)."""
    provision.provision(
        root,
        log,
        extra=[
            "--tags",
            "policy",
            "-e",
            f"referee__policy_src={policy}",
            "-e",
            "referee__policy_status_check=true",
        ],
    )
    return log.read_text()


@pytest.fixture(scope="module")
def root(lab: UpReport, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield lab.rootfs
    # The other lab modules run the example policy.
    _push(lab.rootfs, EXAMPLE, tmp_path_factory.mktemp("restore") / "push.log")
    assert set(_versions(lab.rootfs).values()) == {_version_of(EXAMPLE)}


def _changed_policy(tmp_path: Path) -> Path:
    text = EXAMPLE.read_text()
    assert "\nmax_depth = 3\n" in text
    changed = tmp_path / "policy.toml"
    changed.write_text(text.replace("\nmax_depth = 3\n", "\nmax_depth = 4\n"))
    return changed


def test_a_good_policy_runs_everywhere_after_the_push(root: Path, tmp_path: Path) -> None:
    before = _versions(root)
    assert len(before) == 4, before  # the proxy, two FastAGI guards, the file
    good = _changed_policy(tmp_path)
    new = _version_of(good)
    assert set(before.values()) != {new}

    out = _push(root, good, tmp_path / "push.log")

    assert f"every proxy and FastAGI guard runs policy version {new}" in out
    after = _versions(root)
    assert after == dict.fromkeys(before, new)
    assert (root / services.POLICY_FILE.lstrip("/")).read_text() == good.read_text()


def test_a_bad_policy_never_lands(root: Path, tmp_path: Path) -> None:
    before = _versions(root)
    assert len(set(before.values())) == 1, before
    installed = (root / services.POLICY_FILE.lstrip("/")).read_bytes()
    bad = tmp_path / "policy.toml"
    bad.write_text(EXAMPLE.read_text().replace("\nmax_depth = 3\n", "\nmax_depth = -1\n"))
    assert subprocess.run([REFEREE, "policy", "validate", str(bad)], check=False).returncode == 3

    with pytest.raises(RuntimeError, match="ansible-playbook failed"):
        _push(root, bad, tmp_path / "push.log")

    out = (tmp_path / "push.log").read_text()
    assert "failed to validate" in out
    assert "Install the policy file" in out
    assert (root / services.POLICY_FILE.lstrip("/")).read_bytes() == installed
    assert _versions(root) == before
