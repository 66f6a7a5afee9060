"""ship_tree's unpack steps, run for real by sh in a temp folder: the tree a deploy reads is
always whole, even while other deploys ship the same or another version at the same moment."""

from __future__ import annotations

import io
import subprocess
import tarfile
import threading
from pathlib import Path

from sliceops.operations.system import unpack_commands


def _tar(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _unpack(tar: Path, dest: Path, digest: str) -> subprocess.CompletedProcess:
    script = " && ".join(["set -e", *unpack_commands(str(tar), str(dest), digest)])
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True)


def test_the_tree_appears_behind_a_link_with_its_stamp(tmp_path):
    tar = _tar(tmp_path / "sql.tar", {"slice/0001_a.sql": "SELECT 1;\n"})
    dest = tmp_path / "sql"
    assert _unpack(tar, dest, "a" * 64).returncode == 0
    assert dest.is_symlink() and (dest / "slice" / "0001_a.sql").read_text() == "SELECT 1;\n"
    assert (dest / ".sliceops-source").read_text().strip() == "a" * 64


def test_a_plain_folder_from_an_older_version_gives_way_and_old_versions_go(tmp_path):
    dest = tmp_path / "sql"
    (dest / "slice").mkdir(parents=True)
    (dest / "slice" / "stale.sql").write_text("old")
    first = _tar(tmp_path / "one.tar", {"slice/0001_a.sql": "1"})
    second = _tar(tmp_path / "two.tar", {"slice/0002_b.sql": "2"})
    assert _unpack(first, dest, "1" * 64).returncode == 0
    assert not (dest / "slice" / "stale.sql").exists()
    assert _unpack(second, dest, "2" * 64).returncode == 0
    assert sorted(p.name for p in (dest / "slice").iterdir()) == ["0002_b.sql"]
    assert sorted(p.name for p in tmp_path.glob("sql.v-*")) == ["sql.v-" + "2" * 16]


def test_deploys_shipping_a_new_tree_at_once_each_read_it_whole_after_their_ship(tmp_path):
    """What two plain deploys at once do (tests/integration/test_pg_tier.py runs two): each
    ships the new tree, then its psql reads the files. Before the link, the other deploy's
    `rm -rf dest && tar -x` could leave it no folder to read."""
    tar = _tar(tmp_path / "sql.tar", {f"slice/{i:04d}_x.sql": "SELECT 1;\n" * 200 for i in range(1, 40)})
    dest = tmp_path / "sql"
    problems: list[str] = []

    def deploy(digest: str) -> None:
        result = _unpack(tar, dest, digest)
        if result.returncode != 0:
            problems.append(result.stderr.strip())
            return
        for _ in range(30):
            try:
                if len(list((dest / "slice").iterdir())) != 39:
                    problems.append("partial tree")
            except OSError as exc:
                problems.append(f"{type(exc).__name__}: {exc}")

    for round_ in range(1, 7):
        digest = f"{round_:x}" * 64  # a new tree each round, shipped by 4 deploys at once
        threads = [threading.Thread(target=deploy, args=(digest,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert (dest / ".sliceops-source").read_text().strip() == digest
    assert problems == []
    assert [p.name for p in tmp_path.glob("sql.v-*")] == ["sql.v-" + "6" * 16]
    assert not list(tmp_path.glob("sql.tmp.*")) and not list(tmp_path.glob("sql.link.*"))
