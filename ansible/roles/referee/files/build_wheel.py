"""Build referee's wheel from a checkout, reproducibly: same sources, same bytes.

Run on the Ansible controller by the referee role (and by tests/packaging), so that an unchanged
package is one unchanged file transfer and the role's second run reports changed=0. The files git
tracks or would track are copied to a temporary folder (the build leaves nothing in the checkout),
``pip wheel --no-deps`` builds there, and the wheel is rewritten with sorted entries and a fixed
timestamp. Prints {"wheel": PATH} as JSON.
Usage: build_wheel.py CHECKOUT OUT_DIR
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold


def copy_checkout(checkout: Path, into: Path) -> None:
    """The checkout's files (tracked and untracked, not ignored), symlinks kept."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=checkout,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source, copy = checkout / name, into / name
        if not source.is_file():  # a deleted file git still tracks
            continue
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():  # referee/data/policy.toml is examples/policy.toml
            copy.symlink_to(source.readlink())
        else:
            shutil.copyfile(source, copy)


def normalize(wheel: Path, out: Path) -> None:
    """The same entries in name order, each with the fixed timestamp and its own permission bits."""
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in sorted(src.infolist(), key=lambda i: i.filename):
            entry = zipfile.ZipInfo(info.filename, EPOCH)
            entry.external_attr = info.external_attr
            entry.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(entry, src.read(info))


def build(checkout: Path, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="referee-wheel-") as tmp:
        source, built = Path(tmp) / "source", Path(tmp) / "built"
        copy_checkout(checkout, source)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--wheel-dir",
                str(built),
                str(source),
            ],
            check=True,
            env={**os.environ, "SOURCE_DATE_EPOCH": "315532800", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
            stdout=sys.stderr,
        )
        (wheel,) = built.glob("referee-*.whl")
        target = out_dir / wheel.name
        normalized = Path(tmp) / wheel.name
        normalize(wheel, normalized)
        if not target.exists() or target.read_bytes() != normalized.read_bytes():
            shutil.copyfile(normalized, target)
    return target


if __name__ == "__main__":
    print(json.dumps({"wheel": str(build(Path(sys.argv[1]).resolve(), Path(sys.argv[2])))}))
