"""What per-host monitors cost the monitor's cycle write (goal: < 50 ms for 1,000 slices):
row-level security (sql/gateway/0005) against the write as it was, and against the
alternative, a SECURITY DEFINER function that checks the host once per call.

In a throwaway durable cluster (fsync, full_page_writes, synchronous_commit on) with 1,000
slices and `--hours` of telemetry (60,000 rows an hour), it times one cycle's write in one
transaction (the gateway.slices UPDATE from arrays, 1,000 telemetry rows, the server row),
logged in as the monitor's role, variants interleaved:

  before 0005, COPY          the write as the monitor did it before per-host roles
  before 0005, INSERT        the same rows by INSERT ... SELECT FROM unnest(arrays)
                             (COPY FROM is refused on a table with row-level security)
  0005, database monitor     RLS on, a role not in sliceops_fleet.monitor_hosts (no restriction)
  0005, host monitor         RLS on, a role mapped to host app1, which runs all 1,000 slices
  function, host monitor     no RLS; gateway.record_cycle_rows() SECURITY DEFINER refuses a
                             batch naming a slice of another host, then inserts

    .venv/bin/python bench/monitor_write_rls.py [--hours 6] [--runs 15]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time

from _common import ROOT, Figure, append_results, command_line, table

sys.path.insert(0, str(ROOT / "monitor"))

import psycopg  # noqa: E402

from sliceops_monitor.database import _SERVER_INSERT as SERVER  # noqa: E402
from sliceops_monitor.database import _SLICES_UPDATE as UPDATE  # noqa: E402
from sliceops_monitor.database import _TELEMETRY_INSERT as INSERT  # noqa: E402
from tests.fix_db import LocalCluster  # noqa: E402

SLICES = 1000
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
COPY = 'COPY gateway.telemetry (slice_id, "timestamp", rss_bytes, wa_state, cpu_percent, disk_bytes) FROM STDIN'
GRANTS = """
GRANT USAGE ON SCHEMA gateway TO {r};
GRANT SELECT ON gateway.slices TO {r};
GRANT UPDATE (last_health_at, wa_connected, wa_phone, storage_bytes) ON gateway.slices TO {r};
GRANT SELECT, INSERT, DELETE ON gateway.telemetry, gateway.server_telemetry TO {r};
GRANT USAGE ON ALL SEQUENCES IN SCHEMA gateway TO {r};
"""
# The alternative to RLS: one function per cycle that checks every slice is on the caller's
# host, then inserts (owner: wank_gateway; the monitor gets EXECUTE, no INSERT).
FUNCTION = """
CREATE SCHEMA sliceops_fleet;
CREATE TABLE sliceops_fleet.monitor_hosts (role name PRIMARY KEY, host text NOT NULL);
CREATE FUNCTION gateway.record_cycle_rows(at timestamptz, ids integer[], rss bigint[], wa text[],
                                          cpu numeric[], disk bigint[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE mine text; n integer;
BEGIN
    SELECT host INTO mine FROM sliceops_fleet.monitor_hosts WHERE role = session_user;
    IF mine IS NULL OR EXISTS (SELECT 1 FROM gateway.slices s WHERE s.id = ANY (ids) AND s.host IS DISTINCT FROM mine) THEN
        RAISE EXCEPTION 'slices of another host' USING ERRCODE = '42501';
    END IF;
    INSERT INTO gateway.telemetry (slice_id, "timestamp", rss_bytes, wa_state, cpu_percent, disk_bytes)
    SELECT v.i, at, v.r, v.w, v.c, v.d FROM unnest(ids, rss, wa, cpu, disk) AS v(i, r, w, c, d);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
"""


def dsn(cluster: LocalCluster, db: str) -> str:
    return f"host={cluster.root} port={cluster.port} dbname={db} user=postgres"


def migrate(conn: psycopg.Connection, upto: int) -> None:
    conn.execute("SET ROLE wank_gateway")
    for path in sorted((ROOT / "sql" / "gateway").glob("[0-9]*.sql")):
        if int(path.name[:4]) <= upto:
            conn.execute(path.read_text())
    conn.execute("RESET ROLE")


def load(conn: psycopg.Connection, hours: int) -> None:
    conn.execute(f"INSERT INTO gateway.slices (id, port, host) SELECT i, 10000 + i, 'app1' FROM generate_series(1, {SLICES}) i")
    conn.execute(
        'INSERT INTO gateway.telemetry (slice_id, "timestamp", rss_bytes, wa_state, cpu_percent, disk_bytes) '
        f"SELECT s, %s::timestamptz + m * interval '1 minute', 100000000, 'CONNECTED', 1.5, 123456789 "
        f"FROM generate_series(0, {hours * 60 - 1}) m, generate_series(1, {SLICES}) s ORDER BY m, s", (T0,))
    conn.execute("VACUUM ANALYZE")


def setup(cluster: LocalCluster, hours: int) -> None:
    with psycopg.connect(dsn(cluster, "postgres"), autocommit=True) as conn:
        for name in ("fsync", "full_page_writes", "synchronous_commit"):
            conn.execute(f"ALTER SYSTEM SET {name} = on")
        conn.execute("ALTER SYSTEM SET jit = off")
        conn.execute("ALTER SYSTEM SET wal_compression = lz4")
        for role in ("wank_gateway", "sliceops_monitor", "sliceops_monitor_app1"):
            conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute("CREATE DATABASE before OWNER wank_gateway")
        conn.execute("CREATE DATABASE rls OWNER wank_gateway")
    cluster.stop()
    cluster.start()
    for db, upto in (("before", 4), ("rls", 5)):
        with psycopg.connect(dsn(cluster, db), autocommit=True) as conn:
            migrate(conn, upto)
            for role in ("sliceops_monitor", "sliceops_monitor_app1"):
                conn.execute(GRANTS.format(r=role))
            if db == "rls":
                conn.execute("INSERT INTO sliceops_fleet.monitor_hosts VALUES ('sliceops_monitor_app1', 'app1')")
            else:
                conn.execute("SET ROLE wank_gateway")
                conn.execute(FUNCTION)
                conn.execute("RESET ROLE")
                conn.execute("INSERT INTO sliceops_fleet.monitor_hosts VALUES ('sliceops_monitor_app1', 'app1')")
                conn.execute("GRANT EXECUTE ON FUNCTION gateway.record_cycle_rows TO sliceops_monitor_app1")
            load(conn, hours)


def write(conn: psycopg.Connection, how: str, at: datetime.datetime) -> float:
    ids = list(range(1, SLICES + 1))
    rss, wa, cpu, disk = [100000000] * SLICES, ["CONNECTED"] * SLICES, [1.5] * SLICES, [123456789] * SLICES
    started = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(UPDATE, (ids, [at] * SLICES, [True] * SLICES, ["+15550000"] * SLICES, disk))
        assert len(cur.fetchall()) == SLICES
        if how == "copy":
            with cur.copy(COPY) as copy:
                for i in ids:
                    copy.write_row((i, at, 100000000, "CONNECTED", 1.5, 123456789))
        elif how == "insert":
            cur.execute(INSERT, (at, ids, rss, wa, cpu, disk))
            assert cur.rowcount == SLICES
        else:
            cur.execute("SELECT gateway.record_cycle_rows(%s, %s::integer[], %s::bigint[], %s::text[], %s::numeric[], %s::bigint[])", (at, ids, rss, wa, cpu, disk))
            assert cur.fetchone()[0] == SLICES
        cur.execute(SERVER, (at, 1, 2, 3, 4, 5.0, 6, 7, "app1"))
        assert cur.fetchone()[1] == SLICES
    return (time.perf_counter() - started) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=int, default=6)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    variants = [  # (label, database, role, how)
        ("before 0005, COPY (as before), sliceops_monitor", "before", "sliceops_monitor", "copy"),
        ("before 0005, INSERT from arrays, sliceops_monitor", "before", "sliceops_monitor", "insert"),
        ("0005 RLS, INSERT, database monitor (unmapped)", "rls", "sliceops_monitor", "insert"),
        ("0005 RLS, INSERT, host monitor (1,000 slices on its host)", "rls", "sliceops_monitor_app1", "insert"),
        ("SECURITY DEFINER function, host monitor", "before", "sliceops_monitor_app1", "function"),
    ]
    figures = {v[0]: Figure(f"cycle write, 1,000 slices: {v[0]}", goal=50.0) for v in variants}
    cluster = LocalCluster()
    cluster.init()
    cluster.start()
    try:
        setup(cluster, args.hours)
        # One login per database and role, as the monitor logs in (RLS and session_user are its).
        conns = {(db, role): psycopg.connect(dsn(cluster, db).replace("user=postgres", f"user={role}"), autocommit=True)
                 for _, db, role, _ in variants}
        at = T0 + datetime.timedelta(hours=args.hours)
        for run in range(args.runs + 2):
            for label, db, role, how in variants:
                at += datetime.timedelta(minutes=1)
                ms = write(conns[(db, role)], how, at)
                if run >= 2:  # two warm-up rounds: plans cached, pages in memory
                    figures[label].add(ms)
        # The refusal the figures are worth measuring for: a host monitor naming a slice
        # of another host.
        with psycopg.connect(dsn(cluster, "rls"), autocommit=True) as su:
            su.execute("UPDATE gateway.slices SET host = 'app2' WHERE id = 1")
        conn = conns[("rls", "sliceops_monitor_app1")]
        try:
            with conn.transaction():
                conn.execute(INSERT, (at, [1], [1], ["CONNECTED"], [1.0], [1]))
            refused = "NOT refused"
        except psycopg.errors.InsufficientPrivilege as exc:
            refused = f"refused: {str(exc).strip()}"
        for c in conns.values():
            c.close()
    finally:
        cluster.stop()
        cluster.remove()
    for f in figures.values():
        print(f.line())
    print(f"host monitor writing a slice of app2: {refused}")
    append_results("monitor_write_rls", command_line(), "\n".join([
        f"Throwaway durable cluster (tests/fix_db.py; fsync, full_page_writes, synchronous_commit on, wal_compression "
        f"lz4, jit off), sql/gateway/ up to 0004 (before) or 0005 (RLS), {SLICES} slices, {args.hours} h of telemetry "
        f"({args.hours * 60 * SLICES:,} rows); one transaction per cycle (UPDATE gateway.slices, 1,000 telemetry rows, "
        f"the server row), logged in as the role named; variants interleaved, 2 warm-up rounds dropped.",
        "", table(list(figures.values())), "", f"A host monitor inserting telemetry for a slice of another host: {refused}."]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
