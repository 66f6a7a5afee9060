"""Issue 14 on real machines: one inventory, a database host and two slice hosts (tests/e2e/
fix_fleet.py), converged by one deploy over SSH; each slice answers /health on its own host
with its database on the database host; verify and status cover every host; a second deploy
changes nothing."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time

import pytest

from tests.fix_deploy import ROOT, run_deploy

pytestmark = pytest.mark.e2e

SLICES = [{"id": 1, "host": "app1"}, {"id": 2, "host": "app2"}, {"id": 3, "host": "app1"}]
PORT_BASE = 7401
METRICS_PORT = 9670  # every host's monitor, on its own loopback
SETTINGS = dict(
    postgres={"port": 5470},
    docker={"subnet": "172.30.70.0/24"},
    # No disk quotas: the hosts are containers without loop devices.
    slice_defaults={"port_base": PORT_BASE, "disk": False},
    monitor={"interval": 10, "metrics_port": METRICS_PORT},
)


def port_of(slice_id: int) -> int:
    return PORT_BASE + 2 * (slice_id - 1)  # slice_defaults.port_step's default 2


@pytest.fixture(scope="module")
def inventory(fleet, tmp_path_factory):
    return fleet.write_inventory(tmp_path_factory.mktemp("fleet") / "fleet.yaml", SLICES, **SETTINGS)


@pytest.fixture(scope="module")
def first_converge(inventory):
    started = time.monotonic()
    result = run_deploy(inventory, timeout=1500)
    print(f"\nfleet: first converge of 3 hosts over SSH: {time.monotonic() - started:.1f}s")
    assert result.returncode == 0, result.output[-8000:]
    return result


def sh(host, command: str) -> subprocess.CompletedProcess:
    return host.run(command, timeout=120)


def test_the_database_host_runs_postgresql_and_no_slices(fleet, first_converge):
    db = fleet.database_host
    assert sh(db, "systemctl is-active postgresql@15-fleet").stdout.strip() == "active"
    rows = sh(db, "su postgres -c \"psql -p 5470 -AtX -d wank_saas -c 'SELECT id, host FROM gateway.slices ORDER BY id'\"")
    assert rows.stdout.split() == ["1|app1", "2|app2", "3|app1"], rows.stderr
    assert sh(db, "command -v dockerd").returncode != 0  # no engine where no slice runs


@pytest.mark.parametrize(("name", "ids"), [("app1", [1, 3]), ("app2", [2])])
def test_each_slice_host_runs_its_slices_and_their_health_answers(fleet, first_converge, name, ids):
    host = fleet.hosts[name]
    running = sh(host, "docker ps --format '{{.Names}}' --filter label=sliceops.instance=fleet")
    assert sorted(running.stdout.split()) == sorted(f"fleet-wa-slice-{i}" for i in ids)
    for i in ids:
        # 200 only when the slice reached its database on the database host.
        deadline = time.monotonic() + 60
        while True:
            health = sh(host, f"curl -s -w '\\n%{{http_code}}' http://127.0.0.1:{port_of(i)}/health")
            body, _, code = health.stdout.rpartition("\n")
            if code == "200" or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert code == "200", health.stdout
        assert json.loads(body)["db"] == "ok"
    assert sh(host, f"systemctl is-active sliceops-monitor-fleet").stdout.strip() == "active"


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sliceops.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_verify_covers_every_host(inventory, first_converge):
    time.sleep(21)  # two monitor beats: fresh telemetry for every slice
    proc = cli("verify", "--inventory", str(inventory))
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    for name in ("db", "app1", "app2"):
        assert name in proc.stdout


def test_status_sees_every_slice_on_its_host(inventory, first_converge):
    deadline = time.monotonic() + 60
    while True:
        status = cli("status", "--json", "--inventory", str(inventory), timeout=120)
        assert status.returncode == 0, status.stderr
        doc = json.loads(status.stdout)
        if doc["summary"]["healthy"] == 3 or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert doc["summary"]["in_service"] == 3 and doc["summary"]["healthy"] == 3, doc["slices"]


def test_second_converge_changes_nothing(inventory, first_converge):
    started = time.monotonic()
    again = run_deploy(inventory, timeout=900)
    print(f"\nfleet: no-op converge of 3 hosts: {time.monotonic() - started:.1f}s")
    assert again.returncode == 0, again.output[-4000:]
    assert again.totals["changed"] == 0, again.changed_ops or again.output[-8000:]


def _psql_slice(db, sql: str, database: str = "wa_slice_1") -> subprocess.CompletedProcess:
    return db.run(["runuser", "-u", "postgres", "--", "psql", "-p", "5470", "-XAtq", "-v", "ON_ERROR_STOP=1",
                   "-d", database, "-c", sql], timeout=60)


def test_a_slice_moves_by_an_edit_with_its_data(fleet, inventory, first_converge, tmp_path):
    """Slice 1 from app1 to app2: its row (the database stays on the database host) and a file
    in its data directory are there after the move, the gateway row names app2, /health
    answers on app2, and app1 keeps the old copy archived and runs no container for it."""
    from sliceops.inventory import load

    inv = load(inventory)
    data = inv.slice_data_dir(1)
    app1, app2, db = fleet.hosts["app1"], fleet.hosts["app2"], fleet.database_host
    insert = ("INSERT INTO \"user\" (id, name, email, \"emailVerified\", \"createdAt\", \"updatedAt\") "
              "VALUES ('moved-1', 'moved', 'moved@example.org', false, now(), now())")
    assert _psql_slice(db, insert).returncode == 0
    assert sh(app1, f"echo kept >{data}/moved.txt && chown 10001:10001 {data}/moved.txt").returncode == 0

    moved = [dict(s, host="app2") if s["id"] == 1 else s for s in SLICES]
    edited = fleet.write_inventory(tmp_path / "moved.yaml", moved, **SETTINGS)
    started = time.monotonic()
    result = run_deploy(edited, timeout=900)
    print(f"\nfleet: move of slice 1 app1 -> app2: {time.monotonic() - started:.1f}s")
    assert result.returncode == 0, result.output[-6000:]
    assert "moved slice 1 from app1 to app2" in result.output, result.output[-4000:]

    rows = sh(db, "runuser -u postgres -- psql -p 5470 -AtX -d wank_saas -c 'SELECT id, host FROM gateway.slices ORDER BY id'")
    assert rows.stdout.split() == ["1|app2", "2|app2", "3|app1"], rows.stderr
    assert sh(app2, f"cat {data}/moved.txt").stdout == "kept\n"
    assert _psql_slice(db, "SELECT name FROM \"user\" WHERE id = 'moved-1'").stdout.strip() == "moved"
    health = sh(app2, f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{port_of(1)}/health")
    assert health.stdout == "200"
    # The old host: no container for slice 1, its data kept aside (never deleted), nothing in its place.
    assert sh(app1, "docker ps -a --format '{{.Names}}' --filter name=fleet-wa-slice-1$").stdout.strip() == ""
    archived = sh(app1, f"cat {inv.slices_data_dir}/.moved-1-*/moved.txt")
    assert archived.stdout == "kept\n", archived.stderr
    assert sh(app1, f"test -e {data}").returncode != 0
    # The password came along: none was made anew, and app1 keeps no copy.
    assert sh(app1, f"test -e {inv.secrets_dir}/wa_slice_1.password").returncode != 0
    # The monitors followed the move in the same deploy: app2's serves slice 1's data part's backup
    # time (no "backup": false), app1's no longer lists it (no backup_data).
    monitors = {h: json.loads(sh(fleet.hosts[h], f"cat {inv.etc_dir}/monitor.json").stdout) for h in ("app1", "app2")}
    assert [s.get("backup", True) for s in monitors["app2"]["slices"] if s["id"] == 1] == [True], monitors["app2"]
    assert "backup_data" not in monitors["app1"], monitors["app1"]


def _gateway_hosts(db) -> dict[str, str]:
    rows = sh(db, "runuser -u postgres -- psql -p 5470 -AtX -d wank_saas -c 'SELECT id, host FROM gateway.slices'")
    assert rows.returncode == 0, rows.stderr
    return dict(row.split("|") for row in rows.stdout.split())


def _health_code(host, port: int, wait: float = 60) -> str:
    """/health's status code on `host`, waiting up to `wait` seconds for a 200."""
    deadline = time.monotonic() + wait
    while True:
        code = sh(host, f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{port}/health").stdout
        if code == "200" or time.monotonic() > deadline:
            return code
        time.sleep(2)


def _leave_a_row_and_a_file(db, host, slice_id: int, data: str, name: str) -> None:
    """A user row named `name` in the slice's database, kept.txt in its data directory on `host`."""
    insert = ("INSERT INTO \"user\" (id, name, email, \"emailVerified\", \"createdAt\", \"updatedAt\") "
              f"VALUES ('row-{slice_id}', '{name}', 'row-{slice_id}@example.org', false, now(), now())")
    assert _psql_slice(db, insert, database=f"wa_slice_{slice_id}").returncode == 0
    assert sh(host, f"echo kept >{data}/kept.txt && chown 10001:10001 {data}/kept.txt").returncode == 0


def _deploy_move(inventory, slice_id: int, source: str, destination: str, when: str = "") -> None:
    started = time.monotonic()
    result = run_deploy(inventory, timeout=900)
    print(f"\nfleet: move of slice {slice_id} {source} -> {destination}{when}: {time.monotonic() - started:.1f}s")
    assert result.returncode == 0, result.output[-6000:]
    assert f"moved slice {slice_id} from {source} to {destination}" in result.output, result.output[-4000:]


def _runs_there_with_its_data(db, host, slice_id: int, port: int, data: str, name: str) -> None:
    """The gateway row names `host`, whose /health answers 200 with the database reached, the
    file kept.txt and the user row named `name` are there."""
    assert _gateway_hosts(db)[str(slice_id)] == host.name
    assert _health_code(host, port) == "200"
    health = sh(host, f"curl -s http://127.0.0.1:{port}/health")
    assert json.loads(health.stdout)["db"] == "ok", health.stdout
    assert sh(host, f"cat {data}/kept.txt").stdout == "kept\n"
    rows = _psql_slice(db, f"SELECT name FROM \"user\" WHERE name = '{name}'", database=f"wa_slice_{slice_id}")
    assert rows.stdout.strip() == name, rows.stderr


SQUATTER = "sliceops-e2e-port-squatter"  # a systemd unit on app2 holding slice 3's port


def test_a_failed_move_runs_the_slice_where_it_was_and_the_next_deploy_moves_it(fleet, inventory, first_converge,
                                                                                   tmp_path):
    """Slice 3 from app1 to app2 while another program listens on its port on app2: the new
    container is created there and cannot start (a realistic fault at the move's last steps,
    after its data and password were copied). The deploy ends non-zero naming the slice; the
    slice runs on app1 again with its row and file, the gateway row still names app1; on app2
    no container, the copy moved aside (.failed-move-3-*, never deleted), no password or
    credentials file. With the port freed, the next deploy moves it."""
    from sliceops.inventory import load
    from sliceops.operations.docker import env_file, password_file

    inv = load(inventory)
    s, data, port = inv.slice(3), inv.slice_data_dir(3), port_of(3)
    secrets = [password_file(inv, s), env_file(inv, s)]
    app1, app2, db = fleet.hosts["app1"], fleet.hosts["app2"], fleet.database_host
    where = _gateway_hosts(db)
    assert where["3"] == "app1", where
    _leave_a_row_and_a_file(db, app1, 3, data, "stays")

    squat = sh(app2, f"systemd-run --unit={SQUATTER} python3 -m http.server --bind 127.0.0.1 --directory /var/empty {port}")
    assert squat.returncode == 0, squat.stderr
    # Slice 1 stays wherever the test above left it: only slice 3 moves here.
    moved = [{"id": 1, "host": where["1"]}, {"id": 2, "host": "app2"}, {"id": 3, "host": "app2"}]
    edited = fleet.write_inventory(tmp_path / "move3.yaml", moved, **SETTINGS)
    try:
        assert _health_code(app2, port, wait=20) == "404", "the squatter does not listen on app2"
        started = time.monotonic()
        failed = run_deploy(edited, timeout=900)
        print(f"\nfleet: failed move of slice 3 app1 -> app2: {time.monotonic() - started:.1f}s")
    finally:
        fixed = sh(app2, f"systemctl stop {SQUATTER}")
    assert failed.returncode != 0, failed.output[-4000:]
    assert "slice 3 was not moved from app1 to app2" in failed.output, failed.output[-4000:]
    assert "runs on app1 again" in failed.output, failed.output[-4000:]

    # Where it was: running, healthy, its data and row intact, the gateway unchanged.
    assert _health_code(app1, port) == "200"
    assert sh(app1, f"cat {data}/kept.txt").stdout == "kept\n"
    assert _psql_slice(db, "SELECT name FROM \"user\" WHERE id = 'row-3'", database="wa_slice_3").stdout.strip() == "stays"
    assert _gateway_hosts(db)["3"] == "app1"
    for path in secrets:
        assert sh(app1, f"test -s {path}").returncode == 0, f"{path} left app1"
    # Where it was going: nothing runs, the copy is kept aside, no secret stays.
    assert sh(app2, "docker ps -a --format '{{.Names}}' --filter name=fleet-wa-slice-3$").stdout.strip() == ""
    aside = sh(app2, f"cat {inv.slices_data_dir}/.failed-move-3-*/kept.txt")
    assert aside.stdout == "kept\n", aside.stderr
    assert sh(app2, f"test -e {data}").returncode != 0
    for path in secrets:
        assert sh(app2, f"test -e {path}").returncode != 0, f"{path} stayed on app2"
    # Its move not finished, its data part is backed up where the data is: on app1, not app2.
    backup = cli("backup", "3", "--inventory", str(edited), timeout=300)
    assert backup.returncode == 0, backup.stdout + backup.stderr
    assert "sliceops: on app1 (data directories):" in backup.stderr and "on app2" not in backup.stderr, backup.stderr
    parts = {row["host"]: row for row in _backups(edited, 3) if row["kind"] == "manual"}
    assert set(parts) == {"db", "app1"} and all(r["verified"] for r in parts.values()), parts
    assert "./kept.txt" in sh(app1, f"tar -tzf {parts['app1']['path']}/data.tar.gz").stdout.split()
    # Its backup metric is served where its data part is: app1's monitor (backup_data), not app2's.
    monitors = {h: json.loads(sh(fleet.hosts[h], f"cat {inv.etc_dir}/monitor.json").stdout) for h in ("app1", "app2")}
    assert {x["id"] for x in monitors["app1"].get("backup_data", [])} == {3}, monitors["app1"]
    # (app2's deploy stopped at the failed move: its monitor does not list the slice yet, or with backup false.)
    assert [x for x in monitors["app2"]["slices"] if x["id"] == 3 and x.get("backup", True)] == [], monitors["app2"]

    # The cause fixed, the next deploy finishes the move, and hands the data part to app2's agent.
    assert fixed.returncode == 0, fixed.stderr
    _deploy_move(edited, 3, "app1", "app2", " after the fix")
    _runs_there_with_its_data(db, app2, 3, port, data, "stays")
    assert sh(app2, f"cat {inv.slices_data_dir}/.failed-move-3-*/kept.txt").stdout == "kept\n"  # still kept
    agents = {name: json.loads(sh(fleet.hosts[name], f"cat {inv.backup_config}").stdout) for name in ("app1", "app2")}
    assert [x["data_dir"] for x in agents["app2"]["slices"] if x["id"] == 3] == [data], agents["app2"]
    assert [x for x in agents["app1"]["slices"] if x["id"] == 3] == [], agents["app1"]


# After the moves above every slice runs on app2 (slice 1 moved, slice 3's move finished by
# the second deploy). Slice 3 is backed up, destroyed by an edit and brought back by adding
# it again and restoring its final backups (issue 14: backups and destroy for slices on pure
# slice hosts). The tests read where it runs from the gateway, so they follow the ones above.
MARK = "bk14-row-3"


def _now(db) -> tuple[list[dict], str | None]:
    """The slices as the gateway places them now (the inventory that changes nothing), and slice
    3's host (None: not registered)."""
    where = _gateway_hosts(db)
    return [{"id": int(i), "host": h} for i, h in sorted(where.items())], where.get("3")


def _backups(inventory, slice_id: int) -> list[dict]:
    listed = cli("backups", str(slice_id), "--json", "--inventory", str(inventory), timeout=120)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def test_a_slice_on_a_slice_host_is_backed_up_in_two_parts_each_verified(fleet, first_converge, tmp_path):
    """`sliceops backup 3`: its dump on the database host, its data directory's archive on its
    own slice host, each verified; that host runs the nightly timer too."""
    from sliceops.inventory import load

    db = fleet.database_host
    slices, name = _now(db)
    inventory = fleet.write_inventory(tmp_path / "now.yaml", slices, **SETTINGS)
    inv = load(inventory)
    app = fleet.hosts[name]
    insert = ("INSERT INTO \"user\" (id, name, email, \"emailVerified\", \"createdAt\", \"updatedAt\") "
              f"VALUES ('{MARK}', 'kept', 'kept3@example.org', false, now(), now())")
    assert _psql_slice(db, insert, database="wa_slice_3").returncode == 0
    assert sh(app, f"echo kept >{inv.slice_data_dir(3)}/kept3.txt && chown 10001:10001 "
                   f"{inv.slice_data_dir(3)}/kept3.txt").returncode == 0
    started = time.monotonic()
    backup = cli("backup", "3", "--inventory", str(inventory))
    print(f"\nfleet: backup of slice 3 (database on db, data on {name}): {time.monotonic() - started:.1f}s")
    assert backup.returncode == 0, backup.stdout + backup.stderr
    assert "sliceops: on db (databases):" in backup.stderr, backup.stderr
    assert f"sliceops: on {name} (data directories):" in backup.stderr, backup.stderr
    rows = {row["host"]: row for row in _backups(inventory, 3)}
    assert set(rows) == {"db", name} and all(r["verified"] and r["kind"] == "manual" for r in rows.values()), rows
    assert rows["db"]["migration"]  # a dump knows its migration level; the data part has none
    assert sh(db, f"test -s {rows['db']['path']}/wa_slice_3.dump && test ! -e {rows['db']['path']}/data.tar.gz"
              ).returncode == 0
    listing = sh(app, f"tar -tzf {rows[name]['path']}/data.tar.gz")
    assert "./kept3.txt" in listing.stdout.split(), listing.stdout
    assert sh(app, f"test ! -e {rows[name]['path']}/wa_slice_3.dump").returncode == 0
    assert sh(app, "systemctl is-enabled sliceops-backup-fleet.timer").stdout.strip() == "enabled"
    # Each part's time is served where it is kept: the dump's by db's monitor (slice 3 runs
    # elsewhere), the data part's by its own host's, so either failing fires SliceBackupMissing.
    for host, part in ((db, rows["db"]), (app, rows[name])):
        served = _backup_metric(host, 3)
        assert served == _epoch(part["at"]), (served, part)


def _epoch(at: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def _backup_metric(host, slice_id: int) -> float | None:
    """sliceops_slice_backup_last_success_timestamp_seconds of the slice, from the host's monitor."""
    from prometheus_client.parser import text_string_to_metric_families

    scrape = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/metrics').read().decode())"
    deadline = time.monotonic() + 30
    while True:
        text = sh(host, f"python3 -c {shlex.quote(scrape)}").stdout
        values = [s.value for f in text_string_to_metric_families(text) for s in f.samples
                  if s.name == "sliceops_slice_backup_last_success_timestamp_seconds" and s.labels["slice"] == str(slice_id)]
        if values or time.monotonic() > deadline:
            return values[0] if values else None
        time.sleep(2)


def test_a_slice_on_a_slice_host_is_destroyed_after_both_final_backups(fleet, first_converge, tmp_path):
    from sliceops.inventory import load

    db = fleet.database_host
    slices, name = _now(db)
    destroying = [dict(s, status="destroying") if s["id"] == 3 else s for s in slices]
    inventory = fleet.write_inventory(tmp_path / "destroy.yaml", destroying, **SETTINGS)
    inv = load(inventory)
    app = fleet.hosts[name]
    started = time.monotonic()
    result = run_deploy(inventory, timeout=900)
    print(f"\nfleet: destroy of slice 3 on {name}: {time.monotonic() - started:.1f}s")
    assert result.returncode == 0, result.output[-6000:]
    assert "destroyed slice 3's database part" in result.output and "destroyed slice 3: container" in result.output

    finals = {row["host"]: row for row in _backups(inventory, 3) if row["kind"] == "final"}
    assert set(finals) == {"db", name} and all(r["verified"] for r in finals.values()), finals
    dump = sh(db, f"pg_restore -f - {finals['db']['path']}/wa_slice_3.dump | grep -c {MARK}")
    assert dump.stdout.strip() == "1", dump.stderr
    archive = sh(app, f"tar -xzOf {finals[name]['path']}/data.tar.gz ./kept3.txt")
    assert archive.stdout == "kept\n", archive.stderr
    # Both parts gone, nothing else touched.
    assert sh(app, "docker ps -a --format '{{.Names}}' --filter name=fleet-wa-slice-3$").stdout.strip() == ""
    assert sh(app, f"test -e {inv.slice_data_dir(3)}").returncode != 0
    assert sh(app, f"test -e {inv.secrets_dir}/wa_slice_3.password").returncode != 0
    gone = _psql_slice(db, "SELECT count(*) FROM pg_database WHERE datname = 'wa_slice_3'", database="postgres")
    assert gone.stdout.strip() == "0"
    assert "3" not in _gateway_hosts(db) and len(_gateway_hosts(db)) == len(slices) - 1
    again = run_deploy(inventory, timeout=900)
    assert again.returncode == 0 and again.totals["changed"] == 0, again.changed_ops


def test_a_destroyed_slice_on_a_slice_host_comes_back_from_its_final_backups(fleet, first_converge, tmp_path):
    """Added back on the same host, then `sliceops restore 3`: its row and its file are there again."""
    from sliceops.inventory import load

    db = fleet.database_host
    slices, _ = _now(db)
    name = next(r["host"] for r in _backups(fleet.write_inventory(tmp_path / "probe.yaml", slices, **SETTINGS), 3)
                if r["kind"] == "final" and r["host"] != "db")
    inventory = fleet.write_inventory(tmp_path / "back.yaml", slices + [{"id": 3, "host": name}], **SETTINGS)
    inv = load(inventory)
    app = fleet.hosts[name]
    added = run_deploy(inventory, timeout=900)
    assert added.returncode == 0, added.output[-6000:]
    started = time.monotonic()
    restore = cli("restore", "3", "--inventory", str(inventory), timeout=900)
    print(f"\nfleet: restore of slice 3 from its final backups (and the deploy): {time.monotonic() - started:.1f}s")
    assert restore.returncode == 0, restore.stdout[-4000:] + restore.stderr[-4000:]
    # Both parts of one run (the destroy's final backups), chosen before any agent restored.
    assert f"({name}: its data directory)" in restore.stderr and "restoring the backup taken" in restore.stderr
    assert restore.stdout.count("-final (taken") == 2, restore.stdout
    assert _psql_slice(db, f"SELECT name FROM \"user\" WHERE id = '{MARK}'", database="wa_slice_3").stdout.strip() == "kept"
    assert sh(app, f"cat {inv.slice_data_dir(3)}/kept3.txt").stdout == "kept\n"
    assert _health_code(app, port_of(3)) == "200"


# Last: slice 2 (on app2 since the first converge; the tests above leave it there) moves to
# the database host.
def test_a_slice_moves_to_the_database_host(fleet, inventory, first_converge, tmp_path):
    """Slice 2 from app2 to db, the host with PostgreSQL and no slices until now: the deploy
    makes db a slice host too; the slice reaches its database there through the bridge, with
    its data and its password (the verifier PostgreSQL keeps) carried along. db gets its engine
    and the slice image before the deploy, as the bed gives every slice host (building the
    reference image offline is a debootstrap)."""
    from sliceops.inventory import load
    from sliceops.operations.docker import env_file, password_file
    from tests.e2e.fix_fleet import _provision_engine

    inv = load(inventory)
    s, data, port = inv.slice(2), inv.slice_data_dir(2), port_of(2)
    app2, db = fleet.hosts["app2"], fleet.database_host
    where = _gateway_hosts(db)
    assert where["2"] == "app2", where
    _leave_a_row_and_a_file(db, app2, 2, data, "to db")
    started = time.monotonic()
    _provision_engine(db)
    print(f"\nfleet: docker.io and the slice image on db: {time.monotonic() - started:.1f}s")

    moved = [{"id": i, "host": "db" if i == 2 else where[str(i)]} for i in (1, 2, 3)]
    edited = fleet.write_inventory(tmp_path / "to-db.yaml", moved, **SETTINGS)
    _deploy_move(edited, 2, "app2", "db")
    _runs_there_with_its_data(db, db, 2, port, data, "to db")
    assert sh(app2, f"cat {inv.slices_data_dir}/.moved-2-*/kept.txt").stdout == "kept\n"
    assert sh(app2, "docker ps -a --format '{{.Names}}' --filter name=fleet-wa-slice-2$").stdout.strip() == ""
    for path in (password_file(inv, s), env_file(inv, s)):
        assert sh(app2, f"test -e {path}").returncode != 0, f"{path} stayed on app2"
