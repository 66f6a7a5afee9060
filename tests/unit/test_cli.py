"""`sliceops check` as a user runs it: exit status, one line per problem, no traceback.

Each case is a real process (`python -m sliceops.cli`), so what is checked is what a
terminal shows. `check` reads the file only: nothing here needs or touches a service.
Importing pyinfra costs about a second per process, so one file per stage of the loader
is checked here (the exact report of every kind is pinned in-process by test_inventory,
and the integration tier runs every kind through the real deploy), in one concurrent
batch; each test reads its own result.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
import sys
from pathlib import Path

import pytest
import yaml

from sliceops.errors import InventoryError
from sliceops.inventory import load
from sliceops.paths import ROOT

DATA = Path(__file__).parent / "data"
TABLE = yaml.safe_load((DATA / "bad.yaml").read_text())
USAGE_ERROR = 2  # argparse's status, and sliceops' for a refused inventory


def sliceops(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sliceops.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


# One per stage: YAML parser, empty, missing, shape, schema (unknown key, type, pattern),
# cross-entry rules, the composer's duplicate keys, several at once; and two known bugs.
CHECKED = [
    "malformed_yaml.yaml", "empty.yaml", "missing.yaml", "toplevel_list.yaml", "unknown_key_slice.yaml",
    "id_float.yaml", "listen_star.yaml", "port_clash_computed.yaml", "duplicate_key.yaml", "many_problems.yaml",
    "bug_empty_slices.yaml", "bug_duplicate_key_order.yaml",
]


def _bad_cases():
    for name in CHECKED:
        entry = TABLE[name]
        marks = [pytest.mark.xfail(strict=True, reason=entry["xfail"])] if "xfail" in entry else []
        yield pytest.param(name, entry, id=name.removesuffix(".yaml"), marks=marks)


@pytest.mark.parametrize(
    "inventory",
    [
        pytest.param(None, id="default"),
        pytest.param(str(ROOT / "inventory" / "slices.yaml"), id="explicit-default"),
        pytest.param(str(DATA / "good" / "every_section.yaml"), id="every-section"),
    ],
)
def test_check_accepts_a_good_inventory_with_status_0(inventory):
    proc = sliceops("check", *(["--inventory", inventory] if inventory else []))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.count("\n") == 1 and ": ok: target " in proc.stdout


def test_check_summarises_what_it_validated():
    proc = sliceops("check", "--inventory", str(DATA / "good" / "every_section.yaml"))
    assert proc.stdout == (
        f"{DATA / 'good' / 'every_section.yaml'}: ok: target ssh://deploy@db1.example.net:2222, instance staging2, 4 slices\n"
    )


@pytest.fixture(scope="module")
def checked() -> dict[str, subprocess.CompletedProcess]:
    """`sliceops check` run on every file of the bad-inventory table, concurrently."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        runs = {name: pool.submit(sliceops, "check", "--inventory", str(DATA / "bad" / name)) for name in CHECKED}
        return {name: run.result() for name, run in runs.items()}


@pytest.mark.parametrize(("name", "entry"), list(_bad_cases()))
def test_check_refuses_a_bad_inventory_one_line_per_problem(checked, name, entry):
    path = DATA / "bad" / name
    proc = checked[name]
    assert proc.returncode == USAGE_ERROR, proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    # The first line carries the program's name, as a shell user expects.
    assert lines[0].startswith("sliceops: ")
    lines[0] = lines[0].removeprefix("sliceops: ")
    assert lines == [line.replace("{file}", str(path)) for line in entry["expect"]]


def test_check_never_shows_a_traceback_for_yaml_it_cannot_build():
    proc = sliceops("check", "--inventory", str(DATA / "unbuildable" / "merge_key.yaml"))
    assert "Traceback" not in proc.stderr
    assert proc.returncode in (0, USAGE_ERROR)


def test_an_unknown_command_is_a_usage_error():
    proc = sliceops("converge")
    assert proc.returncode == USAGE_ERROR
    assert "invalid choice: 'converge'" in proc.stderr and "Traceback" not in proc.stderr


def test_deploy_and_verify_refuse_a_bad_inventory_before_running_anything():
    """Both validate first: a refused file never reaches pyinfra or pytest (whose output
    would follow the problem line)."""
    path = DATA / "bad" / "duplicate_ids.yaml"
    # Guard: if the loader ever accepted this file, the subprocess would really deploy.
    with pytest.raises(InventoryError):
        load(path)
    for command in ("deploy", "verify"):
        proc = sliceops(command, "--inventory", str(path))
        assert proc.returncode == USAGE_ERROR
        assert proc.stdout == ""
        assert proc.stderr == f"sliceops: {path}:6: slices[2].id: 1 is a duplicate (slices[0] has the same id)\n"
