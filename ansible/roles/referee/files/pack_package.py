"""Pack a Python package directory into a reproducible .tar.gz (same sources, same bytes).

Run on the Ansible controller by the referee role, so that the copy to the host is one idempotent file
transfer: sorted names, zero mtimes and owners, no __pycache__.
Usage: pack_package.py SOURCE_DIR ARCHIVE
"""

import gzip
import io
import sys
import tarfile
from pathlib import Path

SUFFIXES = {".py", ".pyi", ".toml", ".typed", ".xml", ".j2", ".html", ".js", ".css"}  # the API page's static files too


def main(source: str, archive: str) -> None:
    src = Path(source).resolve()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src.parent)
            if "__pycache__" in rel.parts or not path.is_file() or path.suffix not in SUFFIXES:
                continue
            info = tarfile.TarInfo(str(rel))
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    out = Path(archive)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buf.getvalue())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
