"""`sliceops add`: the next free ids appended to the inventory file, every other byte kept.

Each layout is pinned as (file before, the exact file after); the repository's own inventory
files are round-tripped too: the result is the original with only the new lines inserted.
The command runs in-process (`cli.main`), as a user calls it; one case runs as a real process.
The target's ids (orphans) are read for real in tests/integration/test_spares_add.py; here
the read is replaced by what a host answered.
"""

from __future__ import annotations

import difflib
import os
import stat
import subprocess
import sys

import pytest

from sliceops import add, cli
from sliceops.errors import RemoteStateError
from sliceops.inventory import load
from sliceops.paths import ROOT


@pytest.fixture(autouse=True)
def host(monkeypatch):
    """The target's slice ids as `add` reads them (default: a host holding none)."""
    answer = {"ids": set()}

    def host_ids(inv):
        if isinstance(answer["ids"], Exception):
            raise answer["ids"]
        return set(answer["ids"])

    monkeypatch.setattr(add, "host_ids", host_ids)
    return answer

# (name, before, --count, after): comments, quoting, indentation and order kept.
LAYOUTS = [
    ("block-indented", '''\
# yaml-language-server: $schema=x
target: "@local"   # this machine
slices:
  - id: 1
  - id: 2
''', 2, '''\
# yaml-language-server: $schema=x
target: "@local"   # this machine
slices:
  - id: 1
  - id: 2
  - id: 3
  - id: 4
'''),
    ("block-column-0-then-more-sections-and-comments", '''\
target: '@local'
instance: t1
postgres:
    port: 5460         # four-space indent here
slices:
- id: 1
- id: 2   # two
  memory: 1g
# - id: 3 retired, its backup kept
monitor:
  interval: 10
''', 1, '''\
target: '@local'
instance: t1
postgres:
    port: 5460         # four-space indent here
slices:
- id: 1
- id: 2   # two
  memory: 1g
- id: 3
# - id: 3 retired, its backup kept
monitor:
  interval: 10
'''),
    ("destroying-and-gaps-are-never-reused", '''\
target: "@local"
slices:
  - id: 9
    status: destroying
  - id: 2
  - id: 5
    status: suspended
''', 1, '''\
target: "@local"
slices:
  - id: 9
    status: destroying
  - id: 2
  - id: 5
    status: suspended
  - id: 10
'''),
    ("flow-items-in-a-block-list-keep-their-spacing", '''\
target: "@local"
slices:
  - { id: 1 }
  - { id: 2, memory: 512m }

# the end
''', 2, '''\
target: "@local"
slices:
  - { id: 1 }
  - { id: 2, memory: 512m }
  - {id: 3}
  - {id: 4}

# the end
'''),
    ("flow-list-on-one-line", '''\
target: "@local"
slices: [{id: 1}, {id: 2, status: suspended}]   # all of them
''', 2, '''\
target: "@local"
slices: [{id: 1}, {id: 2, status: suspended}, {id: 3}, {id: 4}]   # all of them
'''),
    ("flow-list-one-per-line-with-trailing-comma", '''\
target: "@local"
slices: [
    {id: 1},
    {id: 2},
]
''', 1, '''\
target: "@local"
slices: [
    {id: 1},
    {id: 2},
    {id: 3},
]
'''),
    ("empty-flow-list", '''\
target: "@local"
slices: []
''', 2, '''\
target: "@local"
slices: [{id: 1}, {id: 2}]
'''),
    ("wide-dash-spacing-and-no-final-newline", '''\
target: "@local"
slices:
    -   id: 1
    -   id: 2''', 1, '''\
target: "@local"
slices:
    -   id: 1
    -   id: 2
    -   id: 3'''),
    ("slices-before-other-keys-and-a-trailing-comment", '''\
slices:
  - id: 3
    memory: 512m  # big tenant
    # a note about slice 3
target: "@local"
''', 1, '''\
slices:
  - id: 3
    memory: 512m  # big tenant
  - id: 4
    # a note about slice 3
target: "@local"
'''),
    ("crlf-line-ends", 'target: "@local"\r\nslices:\r\n  - id: 1 # one\r\n', 1,
     'target: "@local"\r\nslices:\r\n  - id: 1 # one\r\n  - id: 2\r\n'),
]


def write(tmp_path, text: str, name: str = "inv.yaml"):
    path = tmp_path / name
    with open(path, "w", newline="") as f:
        f.write(text)
    return path


def read(path) -> str:
    with open(path, newline="") as f:
        return f.read()


@pytest.mark.parametrize("before,count,after", [pytest.param(b, c, a, id=n) for n, b, c, a in LAYOUTS])
def test_add_appends_in_the_files_own_style_and_keeps_every_other_byte(tmp_path, capsys, before, count, after):
    path = write(tmp_path, before)
    assert cli.main(["add", "--count", str(count), "-i", str(path)]) == 0
    assert read(path) == after
    assert capsys.readouterr().err == ""
    assert [p.name for p in tmp_path.iterdir()] == ["inv.yaml"]  # no temporary file left behind


@pytest.mark.parametrize("name", ["inventory/slices.yaml", "inventory/examples/e2e-systemd-host.yaml",
                                  "tests/unit/data/good/every_section.yaml"])
def test_the_repositorys_own_inventories_round_trip_with_only_the_new_lines_added(tmp_path, name):
    original = (ROOT / name).read_text()
    path = write(tmp_path, original)
    before = load(path)
    assert cli.main(["add", "--count", "3", "-i", str(path)]) == 0
    new = read(path)
    ops = difflib.SequenceMatcher(a=original.splitlines(True), b=new.splitlines(True), autojunk=False).get_opcodes()
    changed = [op for op in ops if op[0] != "equal"]
    assert [op[0] for op in changed] == ["insert"]
    top = max(before.slice_ids)
    inserted = new.splitlines(True)[changed[0][3]:changed[0][4]]
    assert [line.strip() for line in inserted] == [f"- id: {top + k}" for k in (1, 2, 3)]
    after = load(path)
    assert after.slice_ids == tuple(sorted(before.slice_ids + (top + 1, top + 2, top + 3)))


def test_add_says_what_it_added_and_what_to_run_next(tmp_path, capsys):
    path = write(tmp_path, 'target: "@local"\nslices:\n  - id: 1\n')
    assert cli.main(["add", "-i", str(path)]) == 0  # --count defaults to 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}: added slice 2 (port 5003); 2 slices listed"
    assert out[1].startswith(f"next: sliceops plan -i {path} ") and f"sliceops deploy -i {path}" in out[1]


def test_the_file_keeps_its_mode(tmp_path):
    path = write(tmp_path, 'target: "@local"\nslices:\n  - id: 1\n')
    os.chmod(path, 0o640)
    assert cli.main(["add", "-i", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_result_that_would_not_validate_is_refused_in_one_line_and_the_file_is_untouched(tmp_path, capsys):
    # Slice 1 holds slice 3's computed port: appending id 3 would clash.
    before = 'target: "@local"\nslices:\n  - id: 1\n    port: 5005\n  - id: 2\n'
    path = write(tmp_path, before)
    assert cli.main(["add", "-i", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"sliceops: add: {path}: with slice 3 added it would not validate: {path}:")
    assert "port 5005 of slice 3 is already used by slice 1" in err and err.rstrip().endswith("the file is unchanged")
    assert read(path) == before
    assert [p.name for p in tmp_path.iterdir()] == ["inv.yaml"]


def test_ids_past_the_schemas_limit_are_refused(tmp_path, capsys):
    path = write(tmp_path, 'target: "@local"\nslices:\n  - id: 100000\n    port: 6000\n')
    original = read(path)
    assert cli.main(["add", "-i", str(path)]) == 2
    err = capsys.readouterr().err
    assert "100001 is out of range" in err and err.count("\n") == 1
    assert read(path) == original


def test_a_file_that_does_not_validate_before_is_refused_in_one_line(tmp_path, capsys):
    before = 'target: "@local"\nslices:\n  - id: 1\n    memory: lots\n  - id: 1\n'
    path = write(tmp_path, before)
    assert cli.main(["add", "-i", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"sliceops: add: {path} does not validate: {path}:")
    assert "(and 1 more: sliceops check" in err
    assert read(path) == before


@pytest.mark.parametrize("count", ["0", "-2", str(add.MAX_COUNT + 1)])
def test_a_count_out_of_range_is_a_users_error(tmp_path, capsys, count):
    path = write(tmp_path, 'target: "@local"\nslices:\n  - id: 1\n')
    assert cli.main(["add", "--count", count, "-i", str(path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert read(path) == 'target: "@local"\nslices:\n  - id: 1\n'


def test_insert_keeps_anchors_and_merge_keys_meaning_what_they_meant(tmp_path):
    before = ('target: "@local"\nbig: &big\n  memory: 1g\nslices:\n  - id: 1\n  - <<: *big\n    id: 2\n')
    # `big` is not an inventory key: the loader refuses it, so insert() is checked directly.
    assert add.insert(before, (3,)) == before + "  - id: 3\n"


def test_add_runs_as_a_command_with_its_own_help(tmp_path):
    path = write(tmp_path, 'target: "@local"\nslices:\n  - id: 1\n')
    proc = subprocess.run([sys.executable, "-m", "sliceops.cli", "add", "--count", "2", "--offline", "--inventory", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert read(path) == 'target: "@local"\nslices:\n  - id: 1\n  - id: 2\n  - id: 3\n'
    assert cli.main(["add", "-h"]) == 0


def test_an_orphans_id_on_the_target_is_never_given_again(tmp_path, capsys, host):
    # Slice 3's entry was deleted; its database stays on the host (an orphan), as does 2's row.
    host["ids"] = {1, 2, 3}
    path = write(tmp_path, 'target: "@local"\nslices:\n  - id: 1\n')
    assert cli.main(["add", "-i", str(path)]) == 0
    assert read(path) == 'target: "@local"\nslices:\n  - id: 1\n  - id: 4\n'
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}: added slice 4 (port 5007); 2 slices listed"
    assert out[1] == f"skipped: slices 2, 3 on @local but not in {path} (orphans keep their database: their ids are not reused)"


def test_an_unreadable_target_is_a_warning_and_the_file_decides(tmp_path, capsys, host):
    host["ids"] = RemoteStateError("psql on @local: connection refused")
    path = write(tmp_path, 'target: "@local"\nslices:\n  - id: 1\n')
    assert cli.main(["add", "-i", str(path)]) == 0
    assert read(path).endswith("  - id: 1\n  - id: 2\n")
    err = capsys.readouterr().err
    assert err == ("sliceops: warning: add: psql on @local: connection refused: ids chosen from the file alone, so an "
                   "orphan's id on the target could be given again (`sliceops status` lists orphans)\n")


def test_offline_does_not_read_the_target(tmp_path, host):
    host["ids"] = {1, 2, 3}
    path = write(tmp_path, 'target: "@local"\nslices:\n  - id: 1\n')
    assert cli.main(["add", "--offline", "-i", str(path)]) == 0
    assert read(path).endswith("  - id: 1\n  - id: 2\n")


def test_a_symlinked_inventory_stays_a_link_to_the_edited_file(tmp_path):
    real = write(tmp_path, 'target: "@local"\nslices:\n  - id: 1\n', "real.yaml")
    link = tmp_path / "inv.yaml"
    link.symlink_to(real.name)
    assert cli.main(["add", "-i", str(link)]) == 0
    assert link.is_symlink() and read(real).endswith("  - id: 1\n  - id: 2\n")
