"""Telemetry storage at fleet scale: 7 days of 1,000 slices sampled every 60 s (~10.08 M rows in
gateway.telemetry) in a throwaway PostgreSQL 15 cluster built from sql/gateway/.

Measures, each server-side (EXPLAIN ANALYZE BUFFERS, pg_stat_statements) and client-side:
one cycle's write (the monitor's own Database.write: slices UPDATE + COPY of 1,000 rows +
server row), one hourly prune (the monitor's own Database.prune of the oldest hour, then a
fresh hour re-inserted so the size stays constant) at 1/4, 1/2 and the whole of the 7 days,
the latest row per slice, and one slice's last 24 hours. Goal (issue 6): each < 50 ms.

    .venv/bin/python bench/telemetry_scale.py [--slices 1000] [--days 7] [--runs 7] [--keep]
"""

from __future__ import annotations

import argparse
import datetime
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, Figure, Stopwatch, append_results, command_line, loadavg, table

sys.path.insert(0, str(ROOT / "monitor"))

import psycopg  # noqa: E402
from psycopg import ClientCursor  # noqa: E402

from sliceops_monitor.config import DatabaseConfig  # noqa: E402
from sliceops_monitor.database import Database  # noqa: E402
from sliceops_monitor.samples import CycleBatch, ServerSample, SliceSample  # noqa: E402
from tests.fix_db import LocalCluster  # noqa: E402

GOAL_MS = 50.0
GATEWAY_DB = "wank_saas"
OWNER = "wank_gateway"
HOUR = datetime.timedelta(hours=1)
MINUTE = datetime.timedelta(minutes=1)

# What sliceops.tuning.pg_tuning gives a 1,000-slice inventory on this 24 GB host, except
# max_connections (the deploy would say 5,020; these statements do not depend on it).
# Autovacuum is off so it cannot land inside a timing; VACUUM is run and timed explicitly
# after each prune instead, which is the work autovacuum does there in the background.
MEASURE_SETTINGS = {
    "max_connections": "100",
    "autovacuum": "off",
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
    "track_io_timing": "on",
    "autovacuum_vacuum_scale_factor": "0.05",
    "log_min_duration_statement": "-1",
}

# The latest row per slice, as the gateway's dashboard would read it: one probe of
# idx_telemetry_slice_time (slice_id, "timestamp" DESC) per registered slice.
LATEST_LATERAL = """
SELECT s.id, t."timestamp", t.rss_bytes, t.wa_state, t.cpu_percent, t.disk_bytes
FROM gateway.slices s
CROSS JOIN LATERAL (
    SELECT "timestamp", rss_bytes, wa_state, cpu_percent, disk_bytes
    FROM gateway.telemetry
    WHERE slice_id = s.id
    ORDER BY "timestamp" DESC
    LIMIT 1
) t
ORDER BY s.id
"""
# The obvious alternative, shown for contrast: it reads every row of the table.
LATEST_DISTINCT_ON = """
SELECT DISTINCT ON (slice_id) slice_id, "timestamp", rss_bytes, wa_state, cpu_percent, disk_bytes
FROM gateway.telemetry
ORDER BY slice_id, "timestamp" DESC
"""
# One slice's chart: its last 24 hours, newest first (idx_telemetry_slice_time's order).
SLICE_DAY = """
SELECT "timestamp", rss_bytes, wa_state, cpu_percent, disk_bytes
FROM gateway.telemetry
WHERE slice_id = %s AND "timestamp" > %s::timestamptz - interval '24 hours'
ORDER BY "timestamp" DESC
"""
# The monitor's prune statement (sliceops_monitor/database.py _PRUNE["telemetry"]).
PRUNE = 'DELETE FROM gateway.telemetry WHERE "timestamp" < now() - make_interval(secs => %s)'
# The same, bounded to the last minutes: on a partitioned table only the newest day is probed.
LATEST_RECENT = LATEST_LATERAL.replace("WHERE slice_id = s.id",
                                       "WHERE slice_id = s.id AND \"timestamp\" > %s::timestamptz - interval '10 minutes'")
# The proposal's prune (bench/proposals/0004_telemetry_partitioned.sql) and the monitor's
# server_telemetry prune, in one transaction as Database.prune does.
PROPOSAL = Path(__file__).resolve().parent / "proposals" / "0004_telemetry_partitioned.sql"
MAINTAIN = "SELECT gateway.telemetry_maintain(make_interval(secs => %s))"
SERVER_PRUNE = 'DELETE FROM gateway.server_telemetry WHERE "timestamp" < now() - make_interval(secs => %s)'
# The same 1,000 rows the monitor COPYs, as one INSERT: COPY cannot be EXPLAINed, this can,
# and it shows where the time goes (index inserts, the foreign key's trigger).
INSERT_EQUIVALENT = """
INSERT INTO gateway.telemetry (slice_id, "timestamp", rss_bytes, wa_state, cpu_percent, disk_bytes)
SELECT * FROM unnest(%s::integer[], %s::timestamptz[], %s::bigint[], %s::text[], %s::numeric[], %s::bigint[])
"""

_FILL = """
INSERT INTO gateway.telemetry (slice_id, "timestamp", rss_bytes, wa_state, cpu_percent, disk_bytes)
SELECT s, ts,
       (120 + s %% 80) * 1048576 + (random() * 4194304)::bigint,
       CASE WHEN s %% 17 = 0 THEN 'DISCONNECTED' ELSE 'CONNECTED' END,
       round((random() * 40)::numeric, 2),
       (s %% 200 + 10) * 1048576::bigint
FROM generate_series(%(start)s::timestamptz, %(start)s::timestamptz + interval '59 minutes', interval '1 minute') ts,
     generate_series(1, %(slices)s) s
ORDER BY ts, s
"""
_FILL_SERVER = """
INSERT INTO gateway.server_telemetry ("timestamp", ram_used_bytes, ram_total_bytes, swap_used_bytes,
    swap_total_bytes, cpu_percent, disk_used_bytes, disk_total_bytes, active_slices, total_slices)
SELECT ts, 18e9::bigint, 24e9::bigint, 0, 0, (random() * 100)::real, 150e9::bigint, 250e9::bigint,
       %(slices)s, %(slices)s
FROM generate_series(%(start)s::timestamptz, %(start)s::timestamptz + interval '59 minutes', interval '1 minute') ts
"""


class BenchCluster(LocalCluster):
    """tests/fix_db.py's private cluster, started with the deploy's memory settings.

    fsync, full_page_writes and synchronous_commit are toggled with ALTER SYSTEM (all
    reloadable): off while bulk-loading, on (the deploy's defaults) while measuring.
    """

    def start_with(self, settings: dict[str, str]) -> None:
        self.port = _free_port()
        opts = " ".join(f"-c {k}={v}" for k, v in {
            "port": str(self.port), "listen_addresses": "''", "unix_socket_directories": str(self.root),
            **settings}.items())
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
                  "-w", "-t", "120", "-o", opts, "start")
        self.running = True
        self._opts = opts

    def restart(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
                  "-w", "-t", "300", "-m", "fast", "-o", self._opts, "restart")

    def dsn(self, dbname: str = GATEWAY_DB) -> str:
        return f"host={self.root} port={self.port} user=postgres dbname={dbname} application_name=bench-telemetry"


def _free_port() -> int:
    from tests.fix_db import _free_port as free
    return free()


def deploy_tuning(slices: int) -> dict[str, str]:
    """shared_buffers and friends exactly as the deploy would derive them for `slices` slices."""
    import yaml

    from sliceops.facts.host import MemTotal  # noqa: F401  (the deploy reads RAM through this fact)
    from sliceops.inventory import load
    from sliceops.tuning import pg_tuning

    path = Path("/tmp/bench-telemetry-inventory.yaml")
    path.write_text(yaml.safe_dump({"target": "@local", "instance": "benchtel",
                                    "slices": [{"id": i} for i in range(1, slices + 1)]}))
    ram = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0]) * 1024
    t = pg_tuning(load(path), ram)
    path.unlink()
    return {
        "shared_buffers": f"{t['shared_buffers_mb']}MB",
        "effective_cache_size": f"{t['effective_cache_size_mb']}MB",
        "work_mem": f"{t['work_mem_mb']}MB",
        "maintenance_work_mem": f"{t['maintenance_work_mem_mb']}MB",
        "jit": "off",  # as templates/postgresql/sliceops.conf.j2
        "wal_compression": "lz4",
    }


def set_durability(conn: psycopg.Connection, on: bool) -> None:
    value = "on" if on else "off"
    for name in ("fsync", "full_page_writes", "synchronous_commit"):
        conn.execute(f"ALTER SYSTEM SET {name} = {value}")
    conn.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)


def create_gateway(cluster: BenchCluster, slices: int, partitioned: bool = False) -> None:
    """Roles and database as the deploy makes them, then sql/gateway/*.sql in order, in one
    transaction, as the owner (what the migration runner does)."""
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{OWNER}" LOGIN')
        conn.execute(f'CREATE DATABASE "{GATEWAY_DB}" OWNER "{OWNER}"')
    files = sorted((ROOT / "sql" / "gateway").glob("[0-9][0-9][0-9][0-9]_*.sql")) + ([PROPOSAL] if partitioned else [])
    with psycopg.connect(cluster.dsn()) as conn:
        with conn.transaction():
            conn.execute(f'SET ROLE "{OWNER}"')
            for f in files:
                conn.execute(f.read_text())
            conn.execute("RESET ROLE")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("INSERT INTO gateway.slices (id, port, status) "
                     "SELECT i, 5001 + 2 * (i - 1), CASE WHEN i %% 4 = 0 THEN 'available' ELSE 'assigned' END "
                     "FROM generate_series(1, %s) i", (slices,))
        conn.execute("SELECT setval(pg_get_serial_sequence('gateway.slices', 'id'), %s)", (slices,))
        conn.commit()
    print(f"gateway schema: {', '.join(f.name for f in files)}", flush=True)


def fill_hours(conn: psycopg.Connection, first: datetime.datetime, hours: int, slices: int, label: str) -> None:
    """Insert `hours` whole hours of samples starting at `first`, in time order (as written)."""
    t0 = time.perf_counter()
    for h in range(hours):
        start = first + h * HOUR
        with conn.transaction():
            conn.execute(_FILL, {"start": start, "slices": slices})
            conn.execute(_FILL_SERVER, {"start": start, "slices": slices})
        if hours > 1 and ((h + 1) % 24 == 0 or h + 1 == hours):
            print(f"  {label}: {h + 1}/{hours} hours, {time.perf_counter() - t0:.0f}s", flush=True)


def table_size(conn: psycopg.Connection) -> tuple[int, str, str]:
    rows = conn.execute("SELECT count(*) FROM gateway.telemetry").fetchone()[0]
    heap, idx = conn.execute(
        "SELECT pg_size_pretty(sum(pg_table_size(relid))), pg_size_pretty(sum(pg_indexes_size(relid))) "
        "FROM pg_partition_tree('gateway.telemetry')").fetchone()
    return rows, heap, idx


def explain(conn: psycopg.Connection, query: str, params=None) -> tuple[float, float, str]:
    """(execution ms, planning ms, plan text) of EXPLAIN (ANALYZE, BUFFERS) query."""
    with ClientCursor(conn) as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + query, params)
        text = "\n".join(r[0] for r in cur.fetchall())
    exe = float(re.search(r"Execution Time: ([\d.]+) ms", text)[1])
    plan = float(re.search(r"Planning Time: ([\d.]+) ms", text)[1])
    return exe, plan, text


def timed(conn: psycopg.Connection, query: str, params=None) -> tuple[float, int]:
    t = time.perf_counter()
    rows = conn.execute(query, params).fetchall()
    return (time.perf_counter() - t) * 1000, len(rows)


def cycle_batch(number: int, at: datetime.datetime, slices: int) -> CycleBatch:
    samples = [SliceSample(slice_id=i, wa_state="CONNECTED", rss_bytes=150 * 1048576 + i, cpu_percent=1.5 + i % 7,
                           disk_bytes=20 * 1048576 + i, wa_phone=f"+3460000{i:04d}", answered=True)
               for i in range(1, slices + 1)]
    server = ServerSample(18 * 10**9, 24 * 10**9, 0, 0, 37.5, 150 * 10**9, 250 * 10**9)
    return CycleBatch(number=number, collected_at=at, slices=samples, server=server)


def vacuum(conn: psycopg.Connection) -> tuple[float, str]:
    """VACUUM ANALYZE the table as autovacuum would after a prune: (ms, what it did with the indexes)."""
    notes: list[str] = []

    def keep(diag) -> None:
        notes.append(diag.message_primary or "")

    conn.add_notice_handler(keep)
    t = time.perf_counter()
    conn.execute("VACUUM (VERBOSE, ANALYZE) gateway.telemetry")
    ms = (time.perf_counter() - t) * 1000
    conn.remove_notice_handler(keep)
    text = "\n".join(notes)
    if "index scan bypassed" in text:
        how = "index scan bypassed"
    elif "index scan needed" in text or "scanned index" in text:
        how = "scanned every index"
    else:
        how = "no index pass"
    return ms, how


def prune_plain(conn, db, n, runs, st, label, figures, plans) -> None:
    """The monitor's own hourly prune (DELETE of the oldest hour), then a fresh hour on top so
    the size stays put, then VACUUM ANALYZE (what autovacuum does after it, timed apart)."""
    client = Figure(f"hourly prune, client (Database.prune: both DELETEs + commit), {label}", goal=GOAL_MS)
    server = Figure(f"hourly prune, server (EXPLAIN ANALYZE of the DELETE), {label}", goal=GOAL_MS)
    vac = Figure(f"VACUUM ANALYZE after the prune (autovacuum's work, not the monitor's), {label}", unit="ms")
    how_list, deleted, plan = [], [], ""
    for _ in range(runs):
        # a retention that puts the cutoff 30 s before the end of the oldest hour: exactly its
        # 60 minutes of rows go, whatever milliseconds pass before the DELETE runs.
        for via in ("monitor", "explain"):
            now = conn.execute("SELECT now()").fetchone()[0]
            secs = (now - (st.oldest + HOUR - datetime.timedelta(seconds=30))).total_seconds()
            if via == "monitor":
                with Stopwatch() as sw:
                    d = db.prune(secs / 86400.0)
                client.add(sw.wall * 1000)
                deleted.append(d["telemetry"])
            else:
                with conn.transaction():
                    exe, plan_ms, plan = explain(conn, PRUNE, (secs,))
                server.add(exe + plan_ms)
            st.oldest += HOUR
            st.fill_top(conn, 1)
            ms, how = vacuum(conn)
            vac.add(ms)
            how_list.append(how)
    vac.note = ", ".join(f"{h} x{how_list.count(h)}" for h in sorted(set(how_list)))
    client.note = f"deleted {min(deleted):,}-{max(deleted):,} rows each"
    figures += [client, server, vac]
    plans.append((f"hourly prune at {label} (the monitor's DELETE, now() - retention)", plan))


def prune_partitioned(conn, monitor_conn, n, runs, st, label, figures, plans) -> None:
    """The proposal's prune: gateway.telemetry_maintain() in the monitor's transaction shape.
    Most hours it drops nothing (the cutoff is inside the oldest day); once a day it drops a
    whole day partition; both timed, the dropped day refilled on top."""

    def maintain(cutoff: datetime.datetime) -> tuple[float, int]:
        now = monitor_conn.execute("SELECT now()").fetchone()[0]
        secs = (now - cutoff).total_seconds()
        with Stopwatch() as sw:
            with monitor_conn.transaction():
                monitor_conn.execute("SELECT set_config('statement_timeout', '300000', true)")
                dropped = monitor_conn.execute(MAINTAIN, (secs,)).fetchone()[0]
                monitor_conn.execute(SERVER_PRUNE, (secs,))
        return sw.wall * 1000, dropped

    hourly = Figure(f"hourly prune, client (telemetry_maintain, nothing to drop + server DELETE + commit), {label}",
                    goal=GOAL_MS)
    for _ in range(runs):
        ms, dropped = maintain(st.oldest)  # nothing is older than the oldest row
        assert dropped == 0, dropped
        hourly.add(ms)
    daily = Figure(f"daily prune, client (telemetry_maintain dropping a whole day + commit), {label}", goal=GOAL_MS)
    sizes = []
    for _ in range(max(2, runs // 2)):
        part, upper = conn.execute(
            "SELECT c.relname, (to_date(substr(c.relname, 11), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC' "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'gateway.telemetry'::regclass AND c.relname ~ '^telemetry_[0-9]{8}$' "
            "ORDER BY c.relname LIMIT 1").fetchone()
        rows = conn.execute(f"SELECT count(*) FROM gateway.{part}").fetchone()[0]
        ms, dropped = maintain(upper + datetime.timedelta(seconds=1))
        assert dropped == 1, dropped
        daily.add(ms)
        sizes.append(rows)
        hours = round(rows / (n * 60))
        st.oldest = max(st.oldest, upper)
        st.fill_top(conn, hours)  # keep the size: as many hours on top as the day held
    daily.note = f"dropped {min(sizes):,}-{max(sizes):,} rows each, refilled on top"
    vac = Figure(f"VACUUM after the prune, {label}", unit="ms")
    vac.note = "none needed: nothing is deleted, no dead rows"
    figures += [hourly, daily, vac]


class Span:
    """The simulated clock: telemetry covers [oldest, end); fresh rows go on top at `end`."""

    def __init__(self, end: datetime.datetime, n: int, partitioned: bool):
        self.end = end
        self.oldest = end
        self.n = n
        self.partitioned = partitioned

    def ensure(self, conn, first: datetime.datetime, last: datetime.datetime) -> None:
        if self.partitioned:
            conn.execute("SELECT gateway.telemetry_partitions(%s, %s)", (first, last))

    def fill_top(self, conn, hours: int) -> None:
        self.ensure(conn, self.end, self.end + hours * HOUR)
        fill_hours(conn, self.end, hours, self.n, "fresh hours")
        self.end += hours * HOUR

    def fill_below(self, conn, hours: int, label: str) -> None:
        first = self.oldest - hours * HOUR
        self.ensure(conn, first, self.oldest)
        fill_hours(conn, first, hours, self.n, label)
        self.oldest = first


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=1000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--runs", type=int, default=7, help="repetitions of each timed statement")
    ap.add_argument("--layout", choices=["plain", "partitioned"], default="plain",
                    help="plain: sql/gateway as it is; partitioned: plus bench/proposals/" + PROPOSAL.name)
    ap.add_argument("--keep", action="store_true", help="leave the cluster running (prints where)")
    args = ap.parse_args()
    n, hours_total, runs = args.slices, args.days * 24, args.runs
    partitioned = args.layout == "partitioned"
    stages = sorted({max(2, hours_total // 4), max(2, hours_total // 2), hours_total})

    cluster = BenchCluster()
    cluster.init()
    tuning = deploy_tuning(n)
    cluster.start_with({**MEASURE_SETTINGS, **tuning})
    print(f"throwaway cluster {cluster.datadir} port {cluster.port}; deploy tuning {tuning}", flush=True)
    figures: list[Figure] = []
    plans: list[tuple[str, str]] = []
    notes: list[str] = []
    try:
        create_gateway(cluster, n, partitioned)
        conn = psycopg.connect(cluster.dsn(), autocommit=True)
        admin = psycopg.connect(cluster.dsn("postgres"), autocommit=True)
        monitor_conn = psycopg.connect(cluster.dsn(), autocommit=True)
        # The simulated clock starts 12 days back so that, with every hour the prunes add on
        # top, it stays behind the real now(): telemetry_maintain() creates partitions for the
        # real today and the next two days, which must stay newer than the data, as in life.
        st = Span(conn.execute("SELECT date_trunc('hour', now()) - interval '12 days'").fetchone()[0], n, partitioned)
        db = Database(DatabaseConfig(host=str(cluster.root), port=cluster.port, dbname=GATEWAY_DB, user="postgres",
                                     application_name="bench-telemetry-monitor"))
        db.prune(3650)  # open the monitor's connection outside any timing
        cycle_no = 0
        for stage_hours in stages:
            # Load older hours below what is there: the newest data stays where the prunes left it.
            set_durability(admin, False)
            conn.execute("SET session_replication_role = replica")  # skip the FK trigger while bulk-loading
            have = round((st.end - st.oldest) / HOUR)
            st.fill_below(conn, stage_hours - have, f"load to {stage_hours} h")
            conn.execute("RESET session_replication_role")
            t = time.perf_counter()
            conn.execute("VACUUM ANALYZE gateway.telemetry")
            conn.execute("VACUUM ANALYZE gateway.server_telemetry")
            set_durability(admin, True)
            admin.execute("CHECKPOINT")
            subprocess.run(["sync"])
            rows, heap, idx = table_size(conn)
            label = f"{rows / 1e6:.2f} M rows"
            print(f"stage {stage_hours} h: {label}, heap {heap}, indexes {idx} "
                  f"(vacuum+checkpoint {time.perf_counter() - t:.0f}s)", flush=True)
            notes.append(f"{stage_hours} h loaded: {rows:,} rows, heap {heap}, indexes {idx}")
            conn.execute("SELECT pg_stat_statements_reset()")

            if partitioned:
                prune_partitioned(conn, monitor_conn, n, runs, st, label, figures, plans)
            else:
                prune_plain(conn, db, n, runs, st, label, figures, plans)

            # ---- one cycle's write: the monitor's Database.write of 1,000 slices + the server row
            st.ensure(conn, st.end, st.end + HOUR)
            write = Figure(f"cycle write, client (Database.write: UPDATE slices + COPY {n} rows + server row, 1 txn), "
                           f"{label}", goal=GOAL_MS)
            for r in range(runs):
                cycle_no += 1
                batch = cycle_batch(cycle_no, st.end, n)
                st.end += MINUTE
                with Stopwatch() as sw:
                    db.write(batch)
                write.add(sw.wall * 1000)
            ins = Figure(f"same {n} rows as one INSERT, server (EXPLAIN ANALYZE), {label}", goal=GOAL_MS)
            ins_plan = ""
            for r in range(runs):
                b = cycle_batch(0, st.end, n)
                st.end += MINUTE
                cols = list(zip(*[(s.slice_id, b.collected_at, s.rss_bytes, s.wa_state, s.cpu_percent, s.disk_bytes)
                                  for s in b.slices]))
                with conn.transaction():
                    exe, plan_ms, ins_plan = explain(conn, INSERT_EQUIVALENT, [list(c) for c in cols])
                ins.add(exe + plan_ms)
            # fill the minutes the cycles used up to a whole hour, so the next prune stays aligned
            used = 2 * runs
            conn.execute(_FILL.replace("interval '59 minutes'", "%(span)s::interval"),
                         {"start": st.end, "slices": n, "span": f"{59 - used} minutes"})
            st.end += (60 - used) * MINUTE
            figures += [write, ins]
            stats = conn.execute(
                "SELECT query, calls, round(mean_exec_time::numeric, 2), round(max_exec_time::numeric, 2), "
                "rows / greatest(calls, 1), shared_blks_hit / greatest(calls, 1), "
                "shared_blks_read / greatest(calls, 1), shared_blks_dirtied / greatest(calls, 1) "
                "FROM pg_stat_statements WHERE query ~* '^\\s*(copy|update gateway|insert into gateway.server|"
                "delete from gateway|select gateway.telemetry_maintain|drop table|create table)' AND calls > 0 "
                "ORDER BY mean_exec_time DESC").fetchall()
            plans.append((f"pg_stat_statements at {label} (server-side, per call)", "\n".join(
                f"{calls:>4} calls  mean {mean} ms  max {mx} ms  rows {rws}  hit {hit} read {rd} dirtied {dt}  "
                f"{' '.join(q.split())[:110]}" for q, calls, mean, mx, rws, hit, rd, dt in stats)))
            for q, calls, mean, mx, *_ in stats:
                if q.lstrip().upper().startswith("COPY"):
                    f = Figure(f"COPY of {n} rows alone, server (pg_stat_statements mean, {calls} calls), {label}",
                               goal=GOAL_MS)
                    f.add(float(mean))
                    figures.append(f)
            plans.append((f"the {n} rows as one INSERT at {label}", ins_plan))
            print(table(figures[-6:]), flush=True)

        # ---- reads at the full size
        rows, heap, idx = table_size(conn)
        label = f"{rows / 1e6:.2f} M rows"
        newest = st.end
        lat_c = Figure(f"latest row per slice (LATERAL over gateway.slices), client, {label}", goal=GOAL_MS)
        lat_s = Figure(f"latest row per slice (LATERAL over gateway.slices), server, {label}", goal=GOAL_MS)
        rec_s = Figure(f"latest row per slice (LATERAL, last 10 minutes only), server, {label}", goal=GOAL_MS)
        for r in range(runs):
            ms, got = timed(conn, LATEST_LATERAL)
            lat_c.add(ms)
            exe, plan_ms, lat_plan = explain(conn, LATEST_LATERAL)
            lat_s.add(exe + plan_ms)
            exe, plan_ms, rec_plan = explain(conn, LATEST_RECENT, (newest,))
            rec_s.add(exe + plan_ms)
        lat_c.note = f"{got} rows"
        dist = Figure(f"latest row per slice (DISTINCT ON, for contrast), server, {label}", goal=GOAL_MS)
        conn.execute("SET statement_timeout = '300s'")
        for r in range(3):
            exe, plan_ms, dist_plan = explain(conn, LATEST_DISTINCT_ON)
            dist.add(exe + plan_ms)
        day_c = Figure(f"one slice's last 24 h, client, {label}", goal=GOAL_MS)
        day_s = Figure(f"one slice's last 24 h, server, {label}", goal=GOAL_MS)
        rng = random.Random(6)
        for r in range(runs):
            sid = rng.randint(1, n)
            ms, got = timed(conn, SLICE_DAY, (sid, newest))
            day_c.add(ms)
            exe, plan_ms, day_plan = explain(conn, SLICE_DAY, (sid, newest))
            day_s.add(exe + plan_ms)
        day_c.note = f"{got} rows"
        figures += [lat_c, lat_s, rec_s, dist, day_c, day_s]
        plans += [("latest row per slice: LATERAL (the query the gateway should use)", lat_plan),
                  ("latest row per slice: LATERAL bounded to the last 10 minutes", rec_plan),
                  ("latest row per slice: DISTINCT ON (do not use)", dist_plan),
                  ("one slice's last 24 hours (warm)", day_plan)]

        # ---- the same reads with shared_buffers cold (the OS page cache stays warm)
        for c in (conn, monitor_conn, admin):
            c.close()
        db.close()
        cluster.restart()
        conn = psycopg.connect(cluster.dsn(), autocommit=True)
        cold_day = Figure(f"one slice's last 24 h, server, cold shared_buffers, {label}", goal=GOAL_MS)
        for r in range(runs):
            exe, plan_ms, cold_plan = explain(conn, SLICE_DAY, (rng.randint(1, n), newest))
            cold_day.add(exe + plan_ms)
        cold_lat = Figure(f"latest row per slice (LATERAL), server, cold shared_buffers, {label}", goal=GOAL_MS)
        exe, plan_ms, cold_lat_plan = explain(conn, LATEST_LATERAL)
        cold_lat.add(exe + plan_ms)
        cold_lat.note = "first run after a restart only"
        figures += [cold_day, cold_lat]
        plans += [("one slice's last 24 hours, cold shared_buffers", cold_plan),
                  ("latest row per slice, cold shared_buffers", cold_lat_plan)]
        conn.close()
    finally:
        if args.keep:
            print(f"kept: {cluster.dsn()} (data {cluster.datadir})")
        else:
            cluster.stop()
            cluster.remove()

    print()
    for f in figures:
        print(f.line())
    prune_how = (f"{runs} hourly calls of the proposal's gateway.telemetry_maintain() with nothing to drop, and "
                 f"{max(2, runs // 2)} that drop the oldest day (refilled on top)" if partitioned else
                 f"{runs} prunes of the oldest hour per size, each followed by a fresh hour (size constant)")
    body = [
        f"Layout **{args.layout}**" + (f" (sql/gateway + `bench/proposals/{PROPOSAL.name}`)" if partitioned else
                                       " (sql/gateway as committed)") + ". "
        f"{n} slices x {args.days} days x 60 s; PostgreSQL 15 throwaway cluster with the deploy's memory "
        f"settings ({', '.join(f'{k}={v}' for k, v in tuning.items())}), fsync/full_page_writes/synchronous_commit "
        f"on while measuring, autovacuum off (VACUUM timed explicitly). Prune figures: {prune_how}.",
        "", *[f"- {s}" for s in notes], "", table(figures), "",
        "<details><summary>plans and server-side statistics</summary>", "",
    ]
    for title, text in plans:
        body += [f"**{title}**", "", "```", text, "```", ""]
    body.append("</details>")
    append_results(f"telemetry_scale ({args.layout})", command_line(), "\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
