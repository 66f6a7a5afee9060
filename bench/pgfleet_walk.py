"""What the no-op deploy's PostgreSQL fact costs per database, and what a shared-catalog
digest would cost instead, in a throwaway cluster with N slice databases at the newest
migration (the deploy's own ledger and schema).

  walk, 1 session:   psql `\\c` into every database and read its ledger (PgFleet before d877d25)
  walk, 4 sessions:  the same split over 4 psql sessions (PgFleet since d877d25)
  catalog, 1 query:  every database's ledger digest from pg_shdescription (COMMENT ON DATABASE,
                     written by the migration transaction), read from `postgres` in one query:
                     what PgFleet has done since the stamps (f4263dc): only databases whose
                     stamp differs are walked.

    .venv/bin/python bench/pgfleet_walk.py [--databases 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, Figure, append_results, command_line, table

import psycopg  # noqa: E402

from tests.fix_db import LocalCluster  # noqa: E402

LEDGER = ("CREATE SCHEMA sliceops; CREATE TABLE sliceops.schema_migrations (version text PRIMARY KEY, "
          "name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());")
READ = ("SELECT json_build_object('kind', 'ledger', 'db', current_database(), 'rows', "
        "(SELECT coalesce(json_agg(json_build_array(version, checksum) ORDER BY version), '[]') "
        "FROM sliceops.schema_migrations));")


def psql(cluster: LocalCluster, script: str) -> float:
    t = time.perf_counter()
    subprocess.run(["runuser", "-u", "postgres", "--", str(cluster.bindir / "psql"), "-XAtq", "-h", str(cluster.root),
                    "-p", str(cluster.port), "-d", "postgres"], input=script, text=True, capture_output=True,
                   check=True)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--databases", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    n = args.databases
    files = sorted((ROOT / "sql" / "slice").glob("[0-9]*.sql"))
    rows = ", ".join(f"('{f.name[:4]}', '{f.stem[5:]}', '{hashlib.sha256(f.read_bytes()).hexdigest()}')" for f in files)
    digest = hashlib.sha256(rows.encode()).hexdigest()
    cluster = LocalCluster()
    cluster.init()
    cluster.start()
    figures = []
    try:
        dsn = f"host={cluster.root} port={cluster.port} user=postgres"
        with psycopg.connect(dsn + " dbname=postgres", autocommit=True) as conn:
            conn.execute("CREATE ROLE wa_slice")
            conn.execute("CREATE DATABASE wa_slice_template OWNER wa_slice")
        with psycopg.connect(dsn + " dbname=wa_slice_template") as conn:
            conn.execute(LEDGER + "SET ROLE wa_slice;" + "".join(f.read_text() for f in files) + "RESET ROLE;"
                         + f"INSERT INTO sliceops.schema_migrations (version, name, checksum) VALUES {rows};")
        with psycopg.connect(dsn + " dbname=postgres", autocommit=True) as conn:
            for i in range(1, n + 1):
                conn.execute(f"CREATE DATABASE wa_slice_{i} TEMPLATE wa_slice_template OWNER wa_slice")
                conn.execute(f"COMMENT ON DATABASE wa_slice_{i} IS 'sliceops ledger {digest}'")
        walk = "".join(f"\\c wa_slice_{i}\n{READ}\n" for i in range(1, n + 1))
        parts = ["".join(f"\\c wa_slice_{i}\n{READ}\n" for i in range(1 + k, n + 1, 4)) for k in range(4)]
        catalog = ("SELECT json_agg(json_build_array(datname, shobj_description(oid, 'pg_database'))) "
                   "FROM pg_database WHERE datname ~ '^wa_slice_[0-9]+$';")
        f1 = Figure(f"walk, 1 psql session, {n} databases", unit="ms")
        f4 = Figure(f"walk, 4 psql sessions at once, {n} databases", unit="ms")
        fc = Figure(f"catalog digest, 1 query, {n} databases", unit="ms")
        with tempfile.TemporaryDirectory() as tmp:
            for k, text in enumerate(parts):
                Path(tmp, f"p{k}.sql").write_text(text)
            subprocess.run(["chmod", "-R", "a+rX", tmp], check=True)
            par = " & ".join(f"psql -XAtq -h {cluster.root} -p {cluster.port} -d postgres -f {tmp}/p{k}.sql >/dev/null"
                             for k in range(4))
            for _ in range(args.runs):
                f1.add(psql(cluster, walk) * 1000)
                t = time.perf_counter()
                subprocess.run(["runuser", "-u", "postgres", "--", "sh", "-c",
                                f"PATH={cluster.bindir}:$PATH; {par} & wait"], check=True)
                f4.add((time.perf_counter() - t) * 1000)
                fc.add(psql(cluster, catalog) * 1000)
        f1.note = "one backend start per database"
        fc.note = "COMMENT ON DATABASE (pg_shdescription is a shared catalog)"
        figures = [f1, f4, fc]
    finally:
        cluster.stop()
        cluster.remove()
    print(table(figures))
    append_results("pgfleet_walk", command_line(), "\n".join([
        f"Throwaway cluster (tests/fix_db.py), {n} databases with sql/slice/ applied and a ledger; each figure "
        f"includes starting psql.", "", table(figures)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
