"""The monitor against a real PostgreSQL (gateway schema from sql/gateway, the deploy's
grants) and real containers: rows for every slice, the slices refresh, prune, `once`."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

# Until tests/conftest.py lists tests.fix_docker in pytest_plugins: let pytest rewrite
# its asserts although this module imports it first.
pytest.register_assert_rewrite("tests.fix_docker")

from tests.fix_docker import RUN_ID, health_command, wait_until
from tests.integration._sql import apply_files, migration_files

ROOT = Path(__file__).resolve().parents[2]
MONITOR_SRC = ROOT / "monitor"
sys.path.insert(0, str(MONITOR_SRC))

from sliceops_monitor import cli, config  # noqa: E402
from sliceops_monitor.cycle import Monitor  # noqa: E402
from sliceops_monitor.health import check  # noqa: E402

pytestmark = pytest.mark.integration

# The interpreter that runs the monitor as a process; set it to /usr/bin/python3 to test
# against Debian's python3-psycopg and python3-psutil, as deployed.
MONITOR_PYTHON = os.environ.get("SLICEOPS_MONITOR_PYTHON", sys.executable)
ROLE = "sliceops_monitor_it"  # not the deploy's role name: other tests may create that one
# What sliceops/operations/postgres/grants.py grants the monitor's role, so the monitor is
# tested with exactly the privileges it gets on a host.
GRANTS = [
    "GRANT USAGE ON SCHEMA gateway TO {r}",
    "GRANT SELECT ON gateway.slices TO {r}",
    "GRANT UPDATE (last_health_at, wa_connected, wa_phone, storage_bytes) ON gateway.slices TO {r}",
    "GRANT SELECT, INSERT, DELETE ON gateway.telemetry, gateway.server_telemetry TO {r}",
    "GRANT USAGE ON ALL SEQUENCES IN SCHEMA gateway TO {r}",
]
CONNECTED = '{"wa_state":"CONNECTED","wa_phone":"+4915100000001"}'
QR = '{"wa_state":"QR_PENDING"}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def monitor_role(pg_server) -> str:
    """A login role for the monitor with a password (TCP to the test server asks for one)."""
    password = secrets.token_urlsafe(16)
    with pg_server.connect() as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone()
        conn.execute(f"{'ALTER' if exists else 'CREATE'} ROLE {ROLE} LOGIN PASSWORD '{password}'")
    return password


@dataclass
class Env:
    """One test's gateway database, monitor credentials and scratch space."""

    db: object
    server: object
    password_file: Path
    tmp: Path
    prefix: str
    started: list = field(default_factory=list)

    def sql(self, query: str, params=None) -> list[tuple]:
        with psycopg.connect(self.db.dsn(), autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def container_name(self, slice_id: int) -> str:
        return f"{self.prefix}-wa-slice-{slice_id}"

    def cgroup(self, slice_id: int) -> str:
        """The slice's cgroup, laid out as the deploy lays it out (tests run containers under it)."""
        return f"sliceops.slice/sliceops-{self.prefix}.slice/sliceops-{self.prefix}-s{slice_id}.slice"

    def slice(self, slice_id: int, port: int, **extra) -> dict:
        """The monitor's config entry of a slice."""
        return {"id": slice_id, "port": port, "container": self.container_name(slice_id),
                "cgroup": self.cgroup(slice_id), "data_dir": self.data_dir(slice_id), **extra}

    def run(self, containers, slice_id: int, command=None, **kwargs):
        """A container of the slice, under the slice's cgroup as the deploy runs it."""
        return containers.run(self.container_name(slice_id), command, cgroup_parent="/" + self.cgroup(slice_id),
                              **kwargs)

    def write_config(self, slices: list[dict], database: dict | None = None, **extra) -> str:
        doc = {
            "instance": "it",
            "database": {"host": self.server.host, "port": self.server.port, "dbname": self.db.name,
                         "user": ROLE, "password_file": str(self.password_file),
                         "application_name": "sliceops-monitor-it", "connect_timeout": 2,
                         "retry_deadline": 1.0, **(database or {})},
            "interval": 1, "health_timeout": 0.5, "disk_interval": 0.5,
            "slices": slices, **extra,
        }
        path = self.tmp / "monitor.json"
        path.write_text(json.dumps(doc, indent=2))
        return str(path)

    def data_dir(self, slice_id: int, size: int = 100_000) -> str:
        d = self.tmp / "slices" / str(slice_id)
        d.mkdir(parents=True, exist_ok=True)
        (d / "store.bin").write_bytes(os.urandom(size))
        return str(d)


@pytest.fixture
def env(pg_server, scratch_db, monitor_role, tmp_path) -> Env:
    apply_files(scratch_db.dsn(), migration_files("gateway"))
    with psycopg.connect(scratch_db.dsn(), autocommit=True) as conn:
        conn.execute(f"GRANT CONNECT ON DATABASE {scratch_db.name} TO {ROLE}")
        for grant in GRANTS:
            conn.execute(grant.format(r=ROLE))
    pw = tmp_path / "monitor.password"
    pw.write_text(monitor_role + "\n")
    pw.chmod(0o600)
    return Env(scratch_db, pg_server, pw, tmp_path, f"mon{RUN_ID[:6]}{secrets.token_hex(2)}")


def add_slices(env: Env, rows: list[tuple[int, int, str]]) -> None:
    """gateway.slices rows (id, port, status)."""
    for sid, port, status in rows:
        env.sql("INSERT INTO gateway.slices (id, port, status) VALUES (%s, %s, %s)", (sid, port, status))


def start_backend(env: Env, containers, sid: int, body: str, *, busy: bool = False) -> tuple[object, int]:
    port = free_port()
    c = env.run(containers, sid, health_command(body, busy=busy), ports={"8080/tcp": ("127.0.0.1", port)})
    wait_until(lambda: check(port, 1.0).answered, what=f"httpd of slice {sid} on {port}")
    return c, port


@pytest.fixture
def fleet(env, containers):
    """Five configured slices: busy+connected, idle QR, stopped, missing, suspended."""
    c1, p1 = start_backend(env, containers, 1, CONNECTED, busy=True)
    c2, p2 = start_backend(env, containers, 2, QR)
    c3 = env.run(containers, 3, ["sleep", "3600"])
    c3.stop(timeout=0)
    slices = [
        {**env.slice(1, p1), "data_dir": env.data_dir(1, 100_000)},
        {**env.slice(2, p2), "data_dir": env.data_dir(2, 20_000)},
        env.slice(3, free_port()),
        env.slice(4, free_port()),  # never ran: no cgroup at all
        env.slice(5, free_port(), status="suspended"),
    ]
    add_slices(env, [(1, p1, "assigned"), (2, p2, "assigned"), (3, slices[2]["port"], "available"),
                     (4, slices[3]["port"], "suspended"), (5, slices[4]["port"], "suspended")])
    return {"slices": slices, "containers": {1: c1, 2: c2, 3: c3}}


def test_two_cycles_write_a_row_per_slice_a_server_row_and_refresh_slices(env, fleet):
    cfg = config.load(env.write_config(fleet["slices"]))
    monitor = Monitor(cfg)
    try:
        monitor.collector.disk.measure_all_now()
        first = monitor.run_cycle()
        time.sleep(1.0)
        second = monitor.run_cycle()
    finally:
        monitor.close()
    expected = "4 slices (2 ok, 1 CONTAINER_MISSING, 1 CONTAINER_STOPPED), server row, wrote 5 rows, 0 buffered"
    assert expected in first and expected in second, (first, second)

    rows = env.sql('SELECT slice_id, "timestamp", rss_bytes, wa_state, cpu_percent, disk_bytes '
                   'FROM gateway.telemetry ORDER BY "timestamp", slice_id')
    assert len(rows) == 8 and len({r[1] for r in rows}) == 2
    last = {r[0]: r for r in rows[4:]}
    assert sorted(last) == [1, 2, 3, 4]  # the suspended slice 5 is not measured
    assert last[1][3] == "CONNECTED" and last[2][3] == "QR_PENDING"
    assert last[3][3] == "CONTAINER_STOPPED" and last[4][3] == "CONTAINER_MISSING"
    assert last[1][2] > 0 and last[2][2] > 0                      # memory of running containers
    assert last[3][2] is None and last[4][2] is None
    # The busy loop takes what it can get of a core (less on a loaded machine); an idle
    # httpd takes next to nothing.
    assert last[1][4] > 15 and last[1][4] > 5 * last[2][4], (last[1][4], last[2][4])
    assert last[1][5] >= 100_000 and last[2][5] >= 20_000         # du of the data dirs
    assert all(r[4] is None for r in rows[:2])                    # no CPU baseline in cycle 1

    server = env.sql("SELECT ram_used_bytes, ram_total_bytes, swap_used_bytes, swap_total_bytes, cpu_percent, "
                     "disk_used_bytes, disk_total_bytes, active_slices, total_slices FROM gateway.server_telemetry")
    assert len(server) == 2
    ram_used, ram_total, swap_used, swap_total, cpu, disk_used, disk_total, active, total = server[-1]
    assert 0 < ram_used < ram_total and 0 <= swap_used <= swap_total
    assert 0 <= cpu <= 100 and 0 < disk_used < disk_total
    assert (active, total) == (2, 5)

    slices = {r[0]: r[1:] for r in env.sql(
        "SELECT id, wa_connected, wa_phone, last_health_at IS NOT NULL, storage_bytes FROM gateway.slices")}
    assert slices[1][:3] == (True, "+4915100000001", True) and slices[1][3] >= 100_000
    assert slices[2][:3] == (False, None, True)
    assert slices[3][:3] == (False, None, False)   # no answer: last_health_at stays NULL
    assert slices[5] == (False, None, False, 0)    # suspended: untouched


def test_rss_is_what_docker_stats_shows(env, fleet):
    cfg = config.load(env.write_config(fleet["slices"][:1]))
    monitor = Monitor(cfg)
    try:
        monitor.run_cycle()
    finally:
        monitor.close()
    ours = env.sql("SELECT rss_bytes FROM gateway.telemetry WHERE slice_id = 1")[0][0]
    stats = fleet["containers"][1].stats(stream=False)["memory_stats"]
    theirs = stats["usage"] - stats["stats"].get("total_inactive_file", stats["stats"].get("inactive_file", 0))
    assert abs(ours - theirs) <= max(256 * 1024, theirs * 0.2), (ours, theirs)


def test_prune_removes_exactly_the_rows_older_than_the_retention(env, capsys):
    add_slices(env, [(1, 5001, "assigned")])
    ages = ["30 days", "8 days", "7 days 1 minute", "6 days 23 hours 59 minutes", "1 day", "1 minute"]
    for age in ages:
        env.sql('INSERT INTO gateway.telemetry (slice_id, "timestamp", wa_state) '
                "VALUES (1, now() - %s::interval, %s)", (age, age))
        env.sql('INSERT INTO gateway.server_telemetry ("timestamp", total_slices) '
                "VALUES (now() - %s::interval, 1)", (age,))
    path = env.write_config([{"id": 1, "port": 5001, "container": "x", "cgroup": "x", "data_dir": "/srv/1"}],
                            retention_days=7)
    assert cli.main(["--config", path, "prune"]) == 0
    assert capsys.readouterr().out.strip() == ("deleted 3 rows from gateway.telemetry and 3 rows from "
                                               "gateway.server_telemetry (older than 7 days)")
    kept = [r[0] for r in env.sql('SELECT wa_state FROM gateway.telemetry ORDER BY "timestamp"')]
    assert kept == ["6 days 23 hours 59 minutes", "1 day", "1 minute"]
    assert env.sql("SELECT count(*) FROM gateway.server_telemetry")[0][0] == 3
    assert cli.main(["--config", path, "prune"]) == 0
    assert capsys.readouterr().out.startswith("deleted 0 rows from gateway.telemetry and 0 rows")


def test_prune_uses_the_timestamp_index(env):
    # The monitor's DELETE must be able to use the btree on "timestamp" (cost ~ expired rows).
    with psycopg.connect(env.db.dsn(), autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = conn.execute('EXPLAIN DELETE FROM gateway.telemetry WHERE "timestamp" < now() - '
                            "make_interval(secs => 604800.0)").fetchall()
    assert any("idx_telemetry_timestamp" in line[0] for line in plan), plan


def test_once_prints_json_and_writes_it(env, fleet):
    path = env.write_config(fleet["slices"])
    out = subprocess.run([MONITOR_PYTHON, "-m", "sliceops_monitor", "--config", path, "once", "--json",
                          "--sample", "0.5"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(MONITOR_SRC)})
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    states = {s["slice_id"]: s["wa_state"] for s in doc["slices"]}
    assert states == {1: "CONNECTED", 2: "QR_PENDING", 3: "CONTAINER_STOPPED", 4: "CONTAINER_MISSING"}
    assert doc["slices"][0]["cpu_percent"] > 15 > doc["slices"][1]["cpu_percent"]
    assert doc["written_rows"] == 5 and doc["buffered_cycles"] == 0
    assert doc["server"]["ram_total_bytes"] > 0
    assert env.sql("SELECT count(*) FROM gateway.telemetry")[0][0] == 4
    assert "cycle 1: 4 slices" in out.stderr  # the status line goes to the log, not stdout


def test_once_table_and_a_database_that_refuses(env, fleet):
    path = env.write_config(fleet["slices"][:2], database={"port": free_port(), "retry_deadline": 0})
    out = subprocess.run([MONITOR_PYTHON, "-m", "sliceops_monitor", "--config", path, "once", "--sample", "0"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(MONITOR_SRC)})
    assert out.returncode == 1  # a one-shot run cannot keep its rows for later
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["slice", "container", "wa_state", "rss", "cpu%", "disk", "phone"]
    assert lines[1].split()[:3] == ["1", env.container_name(1), "CONNECTED"]
    assert lines[-1].startswith("cycle 1: 2 slices (2 ok), server row, wrote 0 rows, 1 buffered, database unavailable")
    assert "Traceback" not in out.stderr
