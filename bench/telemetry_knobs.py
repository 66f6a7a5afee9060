"""Where the telemetry write and prune spend their time, and whether a server setting buys any
of it back: the investigation behind issue 6's telemetry figures, which sit near the 50 ms goal.

In a throwaway cluster (durable: fsync, full_page_writes, synchronous_commit on) with the
gateway schema (sql/gateway/) and 1,000 slices, `--hours` hours of telemetry (60,000 rows an
hour, the size one hourly prune removes), it times, interleaved so each variant sees the
same load:

  prune:  one hour's DELETE (60,000 rows) right after a CHECKPOINT (the hourly prune always
          follows one: checkpoint_timeout is 5 min), per wal_compression setting;
  write:  the monitor's cycle pieces (the gateway.slices UPDATE from arrays, the INSERT of
          1,000 rows, both in one transaction), per wal_compression and gateway.slices
          fillfactor (100, the default, vs 50, which leaves room for HOT updates).

    .venv/bin/python bench/telemetry_knobs.py [--hours 13] [--runs 6]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time

from _common import ROOT, Figure, append_results, command_line, table

sys.path.insert(0, str(ROOT / "monitor"))

import psycopg  # noqa: E402

# The monitor's own statements, so the figures are of what it runs.
from sliceops_monitor.database import _SLICES_UPDATE as UPDATE  # noqa: E402
from sliceops_monitor.database import _TELEMETRY_INSERT as INSERT  # noqa: E402
from tests.fix_db import LocalCluster  # noqa: E402

SLICES = 1000
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
COMPRESSION = ("off", "lz4", "pglz", "zstd")


def dsn(cluster: LocalCluster) -> str:
    return f"host={cluster.root} port={cluster.port} dbname=postgres user=postgres"


def setup(cluster: LocalCluster, hours: int) -> None:
    with psycopg.connect(dsn(cluster), autocommit=True) as conn:
        for name in ("fsync", "full_page_writes", "synchronous_commit"):
            conn.execute(f"ALTER SYSTEM SET {name} = on")
        conn.execute("ALTER SYSTEM SET shared_buffers = '4GB'")
        conn.execute("ALTER SYSTEM SET jit = off")
    cluster.stop()
    cluster.start()
    with psycopg.connect(dsn(cluster), autocommit=True) as conn:
        conn.execute("CREATE ROLE wank_gateway")
        for path in sorted((ROOT / "sql" / "gateway").glob("[0-9]*.sql")):
            conn.execute(path.read_text())
        conn.execute(f"INSERT INTO gateway.slices (id, port) SELECT i, 10000 + i FROM generate_series(1, {SLICES}) i")
        conn.execute(
            'INSERT INTO gateway.telemetry (slice_id, "timestamp", rss_bytes, wa_state, cpu_percent, disk_bytes) '
            f"SELECT s, %s::timestamptz + m * interval '1 minute', 100000000, 'CONNECTED', 1.5, 123456789 "
            f"FROM generate_series(0, {hours * 60 - 1}) m, generate_series(1, {SLICES}) s ORDER BY m, s",
            (T0,),
        )
        conn.execute("VACUUM ANALYZE")


def set_compression(conn: psycopg.Connection, mode: str) -> None:
    conn.execute(f"ALTER SYSTEM SET wal_compression = '{mode}'")
    conn.execute("SELECT pg_reload_conf()")
    time.sleep(0.3)


def write(conn: psycopg.Connection, part: str, at: datetime.datetime) -> float:
    ids = list(range(1, SLICES + 1))
    started = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur:
        if part in ("update", "both"):
            cur.execute(UPDATE, (ids, [at] * SLICES, [True] * SLICES, ["+15550000"] * SLICES, [123456789] * SLICES))
            cur.fetchall()
        if part in ("copy", "both"):
            # (a COPY until sql/gateway/0005: COPY FROM is refused under row-level security)
            cur.execute(INSERT, (at, ids, [100000000] * SLICES, ["CONNECTED"] * SLICES, [1.5] * SLICES,
                                 [123456789] * SLICES))
    return (time.perf_counter() - started) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=int, default=13, help="hours of telemetry loaded (one is pruned per prune sample)")
    ap.add_argument("--runs", type=int, default=6)
    args = ap.parse_args()
    if args.hours < len(COMPRESSION) * 2 + 1:
        ap.error(f"--hours must be at least {len(COMPRESSION) * 2 + 1}")
    cluster = LocalCluster()
    cluster.init()
    cluster.start()
    prunes = {m: Figure(f"prune one hour (60,000 rows) after a CHECKPOINT, wal_compression={m}") for m in COMPRESSION}
    writes = {(ff, m, part): Figure(f"cycle {part} (1,000 slices), gateway.slices fillfactor {ff}, wal_compression={m}")
              for ff in (100, 50) for m in ("off", "lz4") for part in ("update", "copy", "both")}
    try:
        setup(cluster, args.hours)
        with psycopg.connect(dsn(cluster), autocommit=True) as conn:
            # Prunes: round-robin over the settings, each on the next oldest hour.
            hour = 0
            rounds = min(args.runs, (args.hours - 1) // len(COMPRESSION))
            for _ in range(rounds):
                for mode in COMPRESSION:
                    set_compression(conn, mode)
                    conn.execute("CHECKPOINT")
                    cutoff = T0 + datetime.timedelta(hours=hour + 1)
                    hour += 1
                    started = time.perf_counter()
                    with conn.transaction():
                        deleted = conn.execute('DELETE FROM gateway.telemetry WHERE "timestamp" < %s', (cutoff,)).rowcount
                    prunes[mode].add((time.perf_counter() - started) * 1000)
                    prunes[mode].note = f"{deleted} rows deleted"
            # Writes: fillfactor 100 (PostgreSQL's default) first, then 50 (what
            # sql/gateway/0003 sets); VACUUM FULL applies each; settings interleaved.
            at = T0 + datetime.timedelta(hours=args.hours)
            for ff in (100, 50):
                conn.execute(f"ALTER TABLE gateway.slices SET (fillfactor = {ff})")
                conn.execute("VACUUM FULL gateway.slices")
                for _ in range(args.runs):
                    for mode in ("off", "lz4"):
                        set_compression(conn, mode)
                        for part in ("update", "copy", "both"):
                            at += datetime.timedelta(minutes=1)
                            writes[(ff, mode, part)].add(write(conn, part, at))
    finally:
        cluster.stop()
        cluster.remove()
    figures = list(prunes.values()) + list(writes.values())
    for f in figures:
        print(f.line())
    append_results("telemetry_knobs", command_line(), "\n".join([
        f"Throwaway durable cluster (tests/fix_db.py; fsync, full_page_writes, synchronous_commit on), sql/gateway/, "
        f"{SLICES} slices, {args.hours} h of telemetry ({args.hours * 60 * SLICES:,} rows); settings interleaved.",
        "", table(figures)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
