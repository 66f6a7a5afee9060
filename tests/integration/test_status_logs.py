"""`sliceops status` and `sliceops logs` against a real converged instance: the real psql
round trip, the real Docker engine, the real monitor's telemetry. The host's state is read
before and after: status and logs change nothing. No secret reaches any output."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.fix_deploy import ROOT, SLICEOPS, run_deploy

pytestmark = pytest.mark.integration

INSTANCE = "st12"
PG_PORT = 5496
BASE = 7601
SECTIONS = dict(postgres={"port": PG_PORT}, docker={"subnet": "172.30.96.0/24"},
                slice_defaults={"port_base": BASE}, monitor={"interval": 5})
EMAIL = "ana.status@example.com"


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def su(sql: str, db: str = "wank_saas") -> str:
    return sh("runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-p", str(PG_PORT),
              "-d", db, "-c", sql).strip()


def sliceops(inventory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SLICEOPS, *args, "--inventory", str(inventory)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def host_state() -> dict:
    """What status and logs must leave alone: the gateway's rows (minus the monitor's own
    columns, which it refreshes every cycle), databases and their stamps, roles, containers,
    and the instance's files."""
    files = {}
    for top in (f"/etc/sliceops/{INSTANCE}", f"/usr/local/share/sliceops/{INSTANCE}"):
        for dirpath, _, names in os.walk(top):
            for name in names:
                st = os.lstat(os.path.join(dirpath, name))
                files[os.path.join(dirpath, name)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return {
        "users": su("SELECT * FROM gateway.users ORDER BY id"),
        "slices": su("SELECT id, port, status, user_id, created_at FROM gateway.slices ORDER BY id"),
        "databases": su("SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database ORDER BY 1", "postgres"),
        "roles": su("SELECT rolname, rolpassword FROM pg_authid ORDER BY 1", "postgres"),
        "containers": sh("sh", "-c", f"docker inspect --format '{{{{.Name}}}} {{{{.Id}}}} {{{{.State.Status}}}} "
                                     f"{{{{.State.StartedAt}}}} {{{{.RestartCount}}}}' "
                                     f"$(docker ps -aq --filter label=sliceops.instance={INSTANCE})"),
        "files": files,
    }


def wait_for_telemetry(sid: int, after: float, answered: bool, seconds: float = 60) -> None:
    """Until the monitor wrote a row for `sid` newer than `after` (epoch) whose wa_state says
    /health answered (or did not)."""
    deadline = time.monotonic() + seconds
    op = "NOT IN" if answered else "IN"
    while time.monotonic() < deadline:
        if su(f"""SELECT count(*) FROM gateway.telemetry WHERE slice_id = {sid}
                  AND "timestamp" > to_timestamp({after}) AND wa_state IS NOT NULL
                  AND wa_state {op} ('BACKEND_UNREACHABLE', 'BACKEND_TIMEOUT', 'BACKEND_ERROR',
                                     'CONTAINER_STOPPED', 'CONTAINER_MISSING')""") != "0":
            return
        time.sleep(1)
    raise AssertionError(f"no telemetry for slice {sid} within {seconds}s")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Slices 1 and 2 in service, 3 suspended; then, by hand: a customer on slice 1, slice 2's
    container stopped, and a database of a slice the inventory does not list (an orphan)."""
    import yaml

    from tests.fix_deploy import teardown_instance

    path = tmp_path_factory.mktemp("inv") / f"{INSTANCE}.yaml"
    path.write_text(yaml.safe_dump({"target": "@local", "instance": INSTANCE, **SECTIONS, "slices": [
        {"id": 1}, {"id": 2}, {"id": 3, "status": "suspended"}]}, sort_keys=False))
    try:
        result = run_deploy(path)
        assert result.returncode == 0, result.output[-4000:]
        su(f"INSERT INTO gateway.users (email, password_hash, slice_id) VALUES ('{EMAIL}', 'x', 1);"
           f"UPDATE gateway.slices SET status = 'assigned', user_id = (SELECT id FROM gateway.users "
           f"WHERE email = '{EMAIL}') WHERE id = 1")
        su("CREATE DATABASE wa_slice_9", "postgres")
        stopped = time.time()
        sh("docker", "stop", "-t", "1", f"{INSTANCE}-wa-slice-2")
        wait_for_telemetry(1, stopped, answered=True)
        wait_for_telemetry(2, stopped, answered=False)
        # The monitor recorded every slice database's size with its first cycle (through the
        # function the deploy made); mark slice 1's row so that status visibly reads it.
        assert su("UPDATE sliceops_fleet.database_sizes SET size_bytes = 123456789, "
                  "measured_at = now() - interval '1 hour' WHERE datname = 'wa_slice_1' RETURNING 1") == "1"
        yield path
    finally:
        teardown_instance(INSTANCE)


@pytest.fixture(scope="module")
def runs(fleet):
    """Every read, between two snapshots of the host."""
    before = host_state()
    out = {
        "plain": sliceops(fleet, "status"),
        "json": sliceops(fleet, "status", "--json"),
        "find": sliceops(fleet, "status", "--json", "--find", "ANA.STATUS@"),
        "sorted": sliceops(fleet, "status", "--json", "--sort", "age"),
        "logs": sliceops(fleet, "logs", "1"),
        "logs_since": sliceops(fleet, "logs", "1", "--since", "1h", "--tail", "1"),
        "logs_unknown": sliceops(fleet, "logs", "9"),
        "bad_sort": sliceops(fleet, "status", "--sort", "size"),
    }
    after = host_state()
    return before, out, after


def test_status_and_logs_change_nothing_on_the_host(runs):
    before, _, after = runs
    assert before == after


def test_status_json_tells_the_fleet_as_it_is(runs):
    proc = runs[1]["json"]
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["instance"] == INSTANCE and doc["monitor_interval"] == 5
    assert doc["summary"] == {"in_service": 2, "suspended": 1, "destroying": 0, "healthy": 1, "unhealthy": 1,
                              "orphans": 1}
    rows = {r["id"]: r for r in doc["slices"]}
    assert sorted(rows) == [1, 2, 3, 9]

    one = rows[1]
    assert one["healthy"] is True and one["problems"] == []
    assert one["gateway"]["status"] == "assigned" and one["gateway"]["email"] == EMAIL
    assert one["container"]["name"] == f"{INSTANCE}-wa-slice-1" and one["container"]["state"] == "running"
    assert one["port"] == BASE
    assert one["wa_state"] == "UNPAIRED"  # the reference backend without a WhatsApp session
    assert one["memory"]["limit_bytes"] == 256 * 1024**2 and 0 < one["memory"]["used_bytes"] < 256 * 1024**2
    assert one["database"]["name"] == "wa_slice_1" and one["host"] == "local"
    # The size the monitor recorded (marked by the fixture), and how old it is.
    assert one["database"]["size_bytes"] == 123456789 and 3590 <= one["database"]["size_age_seconds"] <= 3900
    assert rows[2]["database"]["size_bytes"] > 1_000_000
    assert one["database"]["migration"] == "current"
    assert one["telemetry_age_seconds"] < 10

    two = rows[2]
    assert two["healthy"] is False and two["container"]["state"] == "exited"
    assert "container exited" in two["problems"] and two["wa_state"] == "CONTAINER_STOPPED"

    assert rows[3]["inventory_status"] == "suspended" and rows[3]["healthy"] is None
    # Suspended from its first deploy: it never had a container.
    assert rows[3]["container"]["state"] == "missing" and rows[3]["gateway"]["status"] == "suspended"
    assert rows[3]["problems"] == []

    orphan = rows[9]
    assert orphan["inventory_status"] == "orphan" and orphan["container"]["state"] == "missing"
    assert orphan["database"]["migration"] == "unstamped" and orphan["gateway"] is None


def test_status_text_is_plain_when_piped(runs):
    proc = runs[1]["plain"]
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"@local instance {INSTANCE}: 2 in service, 1 suspended, 0 destroying; "
                               f"1 healthy, 1 unhealthy; 1 orphans (database sizes ")
    assert re.search(r"-6[0-5]m old", lines[0]), lines[0]  # the oldest: slice 1's, marked by the fixture
    assert lines[1].split()[:3] == ["ID", "INVENTORY", "GATEWAY"]
    assert [line.split()[0] for line in lines[2:]] == ["1", "2", "3", "9"]
    assert "\x1b[" not in proc.stdout


def test_find_and_sort(runs):
    found = json.loads(runs[1]["find"].stdout)
    assert [r["id"] for r in found["slices"]] == [1]
    assert found["summary"]["in_service"] == 2  # the summary still counts the fleet
    by_age = [r["id"] for r in json.loads(runs[1]["sorted"].stdout)["slices"]]
    assert by_age[:2] == [3, 9]  # no telemetry at all (suspended, orphan): the stalest, then by id


def test_logs_by_slice_id(runs):
    out = runs[1]
    assert out["logs"].returncode == 0, out["logs"].stderr
    assert f"slice 1: listening on :{BASE}" in out["logs"].stdout
    assert out["logs_since"].returncode == 0 and len(out["logs_since"].stdout.splitlines()) <= 1


def test_user_errors_are_one_line_and_status_2(runs):
    for key in ("logs_unknown", "bad_sort"):
        proc = runs[1][key]
        assert proc.returncode == 2, (key, proc.stdout, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "no slice with id 9" in runs[1]["logs_unknown"].stderr


def test_no_secret_in_any_output(runs):
    secrets_dir = Path(f"/etc/sliceops/{INSTANCE}/secrets")
    secrets = [p.read_text().strip() for p in secrets_dir.glob("*.password")]
    assert secrets
    for name, proc in runs[1].items():
        text = proc.stdout + proc.stderr
        assert "DATABASE_URL" not in text, name
        assert not [s for s in secrets if s in text], name


def test_logs_follow_streams_until_interrupted(fleet):
    # --tail 0: nothing old; the monitor asks /health every 5 s, so a new line arrives while we follow.
    # Ctrl-C's disposition as at a terminal: a run started in the background by a
    # non-interactive shell inherits SIGINT ignored, and Python then installs no handler.
    proc = subprocess.Popen([*SLICEOPS, "logs", "1", "-f", "--tail", "0", "--inventory", str(fleet)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert "GET /health" in proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
    finally:
        proc.kill()
