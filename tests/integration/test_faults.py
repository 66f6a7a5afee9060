"""A deploy killed with SIGKILL at any point is finished by the next one: same end state as
an uninterrupted run, no half-applied migration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.fix_deploy import ROOT, run_deploy

pytestmark = pytest.mark.integration

PG_PORT = 5441


def _psql(db: str, sql: str) -> str:
    proc = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-p", str(PG_PORT), "-d", db, "-c", sql],
        capture_output=True, text=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _slice_dbs() -> int:
    return int(_psql("postgres", "SELECT count(*) FROM pg_database WHERE datname ~ '^wa_slice_'") or 0)


def _any_ledger_row() -> bool:
    return _psql("wa_slice_1", "SELECT count(*) FROM sliceops.schema_migrations") not in ("", "0")


def _containers(instance: str) -> int:
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=sliceops.instance={instance}"],
                         capture_output=True, text=True).stdout
    return len(out.split())


TRIGGERS = {
    "database creation": lambda inst: _slice_dbs() >= 1,
    "migrations": lambda inst: _any_ledger_row(),
    "container creation": lambda inst: _containers(inst) >= 1,
}


def _end_state(instance: str) -> dict:
    return {
        "databases": _psql("postgres", "SELECT string_agg(datname || ':' || pg_get_userbyid(datdba), ',' ORDER BY datname) "
                                        "FROM pg_database WHERE datname ~ '^(wank_saas|wa_slice_)'"),
        "ledgers": {db: _psql(db, "SELECT string_agg(version || checksum, ',' ORDER BY version) FROM sliceops.schema_migrations")
                    for db in ("wank_saas", "wa_slice_1", "wa_slice_2", "wa_slice_3", "wa_slice_4")},
        "rows": _psql("wank_saas", "SELECT string_agg(id || ':' || port || ':' || status, ',' ORDER BY id) FROM gateway.slices"),
        "containers": sorted(subprocess.run(
            ["docker", "ps", "-a", "--filter", f"label=sliceops.instance={instance}", "--format", "{{.Names}} {{.State}}"],
            capture_output=True, text=True).stdout.split()),
    }


@pytest.mark.parametrize("point", list(TRIGGERS))
def test_killed_deploy_is_finished_by_the_next(make_inventory, point):
    instance = "itkill"
    inv = make_inventory(
        instance, [{"id": i} for i in range(1, 5)],
        postgres={"port": PG_PORT}, docker={"subnet": "172.30.41.0/24"}, slice_defaults={"port_base": 6201},
    )
    env = dict(os.environ, SLICEOPS_INVENTORY=str(inv), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "sliceops.cli", "deploy", "--inventory", str(inv)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    fired = False
    while time.monotonic() < deadline and proc.poll() is None:
        if TRIGGERS[point](instance):
            os.killpg(proc.pid, signal.SIGKILL)
            fired = True
            break
        time.sleep(0.05)
    proc.wait()
    assert fired, f"the deploy finished before reaching {point}; the fault was not injected"

    resumed = run_deploy(inv)
    assert resumed.returncode == 0, resumed.output[-4000:]
    state = _end_state(instance)
    # Every database complete, every ledger full, every row and container there.
    assert state["databases"].count("wa_slice_") == 4
    for db, ledger in state["ledgers"].items():
        assert ledger, f"{db} has no ledger after the resumed deploy"
    again = run_deploy(inv)
    assert again.returncode == 0 and again.totals["changed"] == 0, again.changed_ops
    assert _end_state(instance) == state
