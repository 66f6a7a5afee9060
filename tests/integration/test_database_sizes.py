"""Database sizes recorded by the monitor, read by `sliceops status` (sql/gateway/0006), on a
real PostgreSQL: the deploy's own grants (as the superuser), the monitor's own Database class
logged in as a role holding them, and status's own psql script."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from sliceops.operations.postgres.grants import monitor_grants
from sliceops.status import gather
from tests.integration._sql import apply_files, migration_files

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "monitor"))

from sliceops_monitor.config import DatabaseConfig  # noqa: E402
from sliceops_monitor.database import Database  # noqa: E402

pytestmark = pytest.mark.integration

MONITOR = "sliceops_monitor_sz"  # not the deploy's role name: other tests may create that one
TENANT = "wa_slice_sz_tenant"


@pytest.fixture
def gateway(pg_server, scratch_db):
    """A gateway database at every migration, the monitor's grants as the deploy gives them
    (in the transaction that ran as the superuser), two slice databases, a monitor login."""
    password = secrets.token_urlsafe(16)
    first = 9100 + secrets.randbelow(400)  # slice ids no other test of the session uses
    ids = (first, first + 1)
    apply_files(scratch_db.dsn(), migration_files("gateway"))
    with pg_server.connect() as conn:
        conn.autocommit = True
        for role in (MONITOR, TENANT):
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            conn.execute(f"{'ALTER' if exists else 'CREATE'} ROLE {role} LOGIN PASSWORD '{password}'")
        for sid in ids:
            conn.execute(f"CREATE DATABASE wa_slice_{sid}")
            conn.execute(f"REVOKE CONNECT ON DATABASE wa_slice_{sid} FROM PUBLIC")
    with psycopg.connect(scratch_db.dsn(), autocommit=True) as conn:
        # What the migration script runs before the grants (sliceops.operations.postgres.migrations).
        conn.execute("CREATE SCHEMA IF NOT EXISTS sliceops; REVOKE ALL ON SCHEMA sliceops FROM PUBLIC;")
        conn.execute(monitor_grants(MONITOR))
        conn.execute(f"GRANT CONNECT ON DATABASE {scratch_db.name} TO {MONITOR}, {TENANT}")
    try:
        yield scratch_db, password, ids
    finally:
        with pg_server.connect() as conn:
            conn.autocommit = True
            for sid in ids:
                conn.execute(f"DROP DATABASE IF EXISTS wa_slice_{sid}")


def monitor_db(pg_server, scratch_db, password, tmp: Path) -> Database:
    path = tmp / "monitor.password"
    path.write_text(password + "\n")
    path.chmod(0o600)
    cfg = DatabaseConfig(host=pg_server.host, port=pg_server.port, dbname=scratch_db.name, user=MONITOR,
                         password_file=str(path), application_name="sliceops-monitor-sz", retry_deadline=1.0)
    return Database(cfg)


def status_answer(scratch_db) -> dict:
    """status's own psql script (meta-commands and all) against the gateway database."""
    proc = subprocess.run(
        ["psql", scratch_db.dsn(), "-XAtq", "-v", "ON_ERROR_STOP=1", "-v", "slice_stamp=x",
         "-v", "slice_prefix=wa_slice_"],
        input=gather.STATUS_SQL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return gather.parse_database_state(proc.stdout)


def test_the_monitor_records_sizes_and_status_reads_them_with_their_age(pg_server, gateway, tmp_path):
    scratch_db, password, ids = gateway
    before = status_answer(scratch_db)
    # Nothing recorded yet: status measured every database itself (size_at null).
    assert all(before["databases"][sid]["size_at"] is None and before["databases"][sid]["size_bytes"] > 0
               for sid in ids)
    db = monitor_db(pg_server, scratch_db, password, tmp_path)
    try:
        assert db.record_database_sizes() >= 2
    finally:
        db.close()
    with psycopg.connect(scratch_db.dsn()) as conn:
        recorded = dict(conn.execute(
            "SELECT datname, size_bytes FROM sliceops_fleet.database_sizes WHERE datname = ANY(%s)",
            ([f"wa_slice_{sid}" for sid in ids],)).fetchall())
        live = dict(conn.execute("SELECT datname, pg_database_size(datname) FROM pg_database WHERE datname = ANY(%s)",
                                 ([f"wa_slice_{sid}" for sid in ids],)).fetchall())
    assert recorded == live
    after = status_answer(scratch_db)
    for sid in ids:
        row = after["databases"][sid]
        assert row["size_bytes"] == recorded[f"wa_slice_{sid}"]
        assert 0 <= after["now"] - row["size_at"] < 60


def test_a_dropped_database_loses_its_row_and_a_new_one_is_measured_live(pg_server, gateway, tmp_path):
    scratch_db, password, ids = gateway
    db = monitor_db(pg_server, scratch_db, password, tmp_path)
    try:
        db.record_database_sizes()
        with pg_server.connect() as conn:
            conn.autocommit = True
            conn.execute(f"DROP DATABASE wa_slice_{ids[1]}")
            conn.execute(f"CREATE DATABASE wa_slice_{ids[1] + 1}")
        try:
            answer = status_answer(scratch_db)
            assert answer["databases"][ids[0]]["size_at"] is not None
            assert ids[1] not in answer["databases"]
            assert answer["databases"][ids[1] + 1]["size_at"] is None  # not measured by the monitor yet
            db.record_database_sizes()
            with psycopg.connect(scratch_db.dsn()) as conn:
                names = {r[0] for r in conn.execute("SELECT datname FROM sliceops_fleet.database_sizes")}
            assert f"wa_slice_{ids[1]}" not in names and f"wa_slice_{ids[1] + 1}" in names
        finally:
            with pg_server.connect() as conn:
                conn.autocommit = True
                conn.execute(f"DROP DATABASE IF EXISTS wa_slice_{ids[1] + 1}")
    finally:
        db.close()


def test_only_the_monitor_may_record_sizes(pg_server, gateway):
    # The function runs as the superuser: PUBLIC (here a tenant's login) may not call it, and
    # the monitor may call it but still not open a slice database.
    scratch_db, password, ids = gateway
    with psycopg.connect(scratch_db.dsn(user=TENANT, password=password)) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT sliceops.record_database_sizes()")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(pg_server.dsn(f"wa_slice_{ids[0]}", user=MONITOR, password=password)).close()
    with psycopg.connect(scratch_db.dsn(user=MONITOR, password=password)) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT pg_database_size(%s)", (f"wa_slice_{ids[0]}",))


def test_status_reads_a_gateway_before_0006_with_live_sizes(pg_server, scratch_db):
    apply_files(scratch_db.dsn(), migration_files("gateway", upto="0005"))
    sid = 9600 + secrets.randbelow(300)
    with pg_server.connect() as conn:
        conn.autocommit = True
        conn.execute(f"CREATE DATABASE wa_slice_{sid}")
    try:
        answer = status_answer(scratch_db)
        assert answer["databases"][sid]["size_bytes"] > 0 and answer["databases"][sid]["size_at"] is None
    finally:
        with pg_server.connect() as conn:
            conn.autocommit = True
            conn.execute(f"DROP DATABASE IF EXISTS wa_slice_{sid}")
