"""Ship folders of the project (sql/, images/) to the target as one reproducible tarball, so
pyinfra checks one checksum instead of one per file."""

from __future__ import annotations

import functools
import hashlib
import io
import tarfile
import tempfile
from pathlib import Path

from sliceops.paths import ROOT



@functools.cache
def tarball(folder: str | Path) -> str:
    """A byte-for-byte reproducible tar of a folder (relative to the project): same content, same checksum."""
    src = ROOT / folder
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in src.rglob("*") if "__pycache__" not in p.parts):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(src)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
            info.mode = 0o755 if path.is_dir() or info.mode & 0o111 else 0o644
            if path.is_file():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    out = Path(tempfile.gettempdir()) / f"sliceops-{src.name}-{id(buf)}.tar"
    out.write_bytes(buf.getvalue())
    return str(out)


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
