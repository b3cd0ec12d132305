"""Fetch a referee wheel on the Ansible controller from a pip requirement (``referee==0.4.0``).

Run by the referee role when ``referee__wheel`` is a requirement rather than a wheel file or a checkout:
``pip download --no-deps`` into a temporary folder, then the wheel is kept in OUT_DIR (replaced only when
its bytes changed, so an unchanged version is an unchanged file transfer). The host needs no package index.
Prints {"wheel": PATH} as JSON.
Usage: fetch_wheel.py REQUIREMENT OUT_DIR
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PIP_DOWNLOAD = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]


def fetch(requirement: str, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="referee-fetch-") as tmp:
        subprocess.run(
            [*PIP_DOWNLOAD, "--dest", tmp, requirement],
            check=True,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
            stdout=sys.stderr,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        target = out_dir / wheel.name
        if not target.exists() or target.read_bytes() != wheel.read_bytes():
            shutil.copyfile(wheel, target)
    return target


if __name__ == "__main__":
    print(json.dumps({"wheel": str(fetch(sys.argv[1], Path(sys.argv[2])))}))
