"""`sliceops plan` against a real instance: it changes nothing on the host, it exits 0 on a
converged instance, and the slices it names as changing are exactly those the following
deploy changes (a slice added, one's memory raised, one suspended, one's entry removed)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.fix_deploy import SLICEOPS, ROOT, run_deploy, teardown_instance

pytestmark = pytest.mark.integration

INSTANCE = "p12i"
PG_PORT = 5488
SECTIONS = dict(postgres={"port": PG_PORT}, docker={"subnet": "172.30.88.0/24"}, slice_defaults={"port_base": 6881})
FIRST = [{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}]
# Slice 1 removed (an orphan), 2 given more memory, 3 suspended, 4 untouched, 5 added.
EDITED = [{"id": 2, "memory": "320m"}, {"id": 3, "status": "suspended"}, {"id": 4}, {"id": 5}]
_SLICE_LINE = re.compile(r"^slice (\d+): (.*)$")


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def psql(db: str, sql: str) -> list[str]:
    return sh("runuser", "-u", "postgres", "--", "psql", "-XAtq", "-p", str(PG_PORT), "-d", db, "-c", sql).splitlines()


def snapshot() -> dict:
    """What a deploy may change, read from outside: gateway rows, roles (with their password
    hashes: re-setting a password changes its salt), databases (owner, grants, stamp),
    containers and their start times, the files under /etc/sliceops/<instance>, data dirs,
    and the monitor's process."""
    ids = sh("docker", "ps", "-aq", "--no-trunc", "--filter", f"label=sliceops.instance={INSTANCE}").split()
    containers = {}
    for c in json.loads(sh("docker", "inspect", *ids)) if ids else []:
        containers[c["Name"].lstrip("/")] = (c["Id"], c["State"]["Status"], c["State"]["StartedAt"])
    files = {}
    for path in sorted(Path(f"/etc/sliceops/{INSTANCE}").rglob("*")):
        st = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        files[str(path)] = (digest, oct(st.st_mode), st.st_mtime_ns)
    pidfile = Path(f"/run/sliceops-monitor-{INSTANCE}.pid")
    return {
        "rows": psql("wank_saas", "SELECT id, port, status, user_id FROM gateway.slices ORDER BY id"),
        "roles": psql("postgres", "SELECT rolname, rolcanlogin, rolpassword FROM pg_authid ORDER BY 1"),
        "databases": psql("postgres", "SELECT datname, pg_get_userbyid(datdba), datacl, "
                                      "shobj_description(oid, 'pg_database') FROM pg_database ORDER BY 1"),
        "containers": containers,
        "files": files,
        "data_dirs": sorted(os.listdir(f"/srv/sliceops/{INSTANCE}/slices")),
        "monitor_pid": pidfile.read_text().strip() if pidfile.exists() else None,
    }


def of_slice(snap: dict, sid: int) -> dict:
    """The part of a snapshot that belongs to one slice."""
    role = f"wa_slice_{sid}"
    return {
        "row": [r for r in snap["rows"] if r.split("|")[0] == str(sid)],
        "role": [r for r in snap["roles"] if r.split("|")[0] == role],
        "database": [d for d in snap["databases"] if d.split("|")[0] == role],
        "container": snap["containers"].get(f"{INSTANCE}-wa-slice-{sid}"),
        "files": {p: v for p, v in snap["files"].items() if Path(p).name.startswith(f"{role}.")},
        "data_dir": str(sid) in snap["data_dirs"],
    }


def plan(inventory: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(SLICEOPS + ["plan", "--inventory", str(inventory)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / f"{INSTANCE}.yaml"

    def write(slices: list[dict]) -> Path:
        path.write_text(yaml.safe_dump({"target": "@local", "instance": INSTANCE, **SECTIONS, "slices": slices},
                                       sort_keys=False))
        return path

    first = run_deploy(write(FIRST))
    assert first.returncode == 0, first.output[-4000:]
    yield write
    if os.environ.get("SLICEOPS_KEEP_TEST_INSTANCES") != "1":
        teardown_instance(INSTANCE)


def test_a_converged_instance_plans_nothing_and_exits_0(inventory):
    result = plan(inventory(FIRST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines() == ["plan: nothing would change"]


def test_a_plan_changes_nothing_and_names_exactly_the_slices_the_deploy_changes(inventory):
    path = inventory(EDITED)
    before = snapshot()
    result = plan(path)
    after_plan = snapshot()
    assert result.returncode == 3, result.stdout + result.stderr
    assert after_plan == before, "sliceops plan changed the host"

    lines = result.stdout.strip().splitlines()
    # Three slices; the others (monitor, and host-wide steps whose files list the slices) may vary.
    assert re.fullmatch(r"plan: \d+ would change: 3 slices, \d+ others?; 1 orphan left intact", lines[-1]), lines
    assert "slice 1: orphan, left intact" in lines
    assert "slice 2: container recreated: memory 256m -> 320m" in lines
    assert "monitor: reloaded: configuration changed" in lines
    named = {int(m[1]) for line in lines if (m := _SLICE_LINE.match(line)) and "orphan" not in m[2]}

    deployed = run_deploy(path)
    assert deployed.returncode == 0, deployed.output[-4000:]
    after = snapshot()
    changed = {sid for sid in range(1, 6) if of_slice(after_plan, sid) != of_slice(after, sid)}
    assert named == changed == {2, 3, 5}
    assert after["monitor_pid"] == after_plan["monitor_pid"]  # reloaded (SIGHUP), as the plan said: same process

    again = plan(path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.strip().splitlines() == ["slice 1: orphan, left intact",
                                                 "plan: nothing would change; 1 orphan left intact"]
