"""A new slice database from the template: `CREATE DATABASE … TEMPLATE … STRATEGY WAL_LOG`
(PostgreSQL 15's default: the template's blocks copied through the WAL) against
`STRATEGY FILE_COPY` (the files copied, with a checkpoint before and after), interleaved.

Against a converged instance's cluster (`--port`, its `sliceops_slice_template`: the real
template and the deploy's server settings), or, without `--port`, a throwaway cluster whose
template is built from sql/slice/ as the deploy builds it. Before each CREATE, a little
write (what the deploy's roles step and the monitor leave dirty) gives the checkpoint
FILE_COPY needs something to flush, as on a host; each copy is dropped after it is timed.
Wall times are psql's own (`\\timing`), so process start-up is not in them.

    .venv/bin/python bench/template_strategy.py [--port 5715] [--runs 15]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

from _common import ROOT, Figure, append_results, command_line, table

PG_VERSION = 15
SCRATCH = "bstrat"
SCRATCH_PORT = 5719
TEMPLATE = "sliceops_slice_template"


def psql(port: int, sql: str, db: str = "postgres") -> str:
    argv = ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-p", str(port), "-d", db]
    proc = subprocess.run(argv, input=sql, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"psql failed: {proc.stderr.strip()[:500]}")
    return proc.stdout.strip()


def scratch_cluster() -> int:
    subprocess.run(["pg_dropcluster", "--stop", str(PG_VERSION), SCRATCH], capture_output=True)
    subprocess.run(["pg_createcluster", str(PG_VERSION), SCRATCH, "-p", str(SCRATCH_PORT), "--start"],
                   check=True, capture_output=True)
    psql(SCRATCH_PORT, f"CREATE ROLE wa_slice; CREATE DATABASE {TEMPLATE} OWNER wa_slice;")
    for f in sorted((ROOT / "sql" / "slice").glob("[0-9]*.sql")):
        psql(SCRATCH_PORT, "SET ROLE wa_slice;\n" + f.read_text(), TEMPLATE)
    return SCRATCH_PORT


def timed_create(port: int, strategy: str, n: int) -> float:
    """ms of one CREATE DATABASE with `strategy`, after a small write elsewhere."""
    db = f"bench_strategy_{n}"
    out = psql(port, f"""
CREATE TABLE IF NOT EXISTS bench_dirty (id int PRIMARY KEY, v text);
INSERT INTO bench_dirty SELECT i, md5(random()::text) FROM generate_series(1, 200) i
  ON CONFLICT (id) DO UPDATE SET v = excluded.v;
\\timing on
CREATE DATABASE {db} TEMPLATE {TEMPLATE} STRATEGY {strategy};
\\timing off
DROP DATABASE {db};
""")
    m = re.search(r"Time: ([\d.]+) ms", out)
    assert m, out
    return float(m[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, help="a converged instance's PostgreSQL port (default: a throwaway cluster)")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    port = args.port or scratch_cluster()
    try:
        size = psql(port, f"SELECT pg_size_pretty(pg_database_size('{TEMPLATE}')), "
                          f"(SELECT count(*) FROM pg_database) FROM pg_database LIMIT 1")
        settings = psql(port, "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings "
                              "WHERE name IN ('shared_buffers', 'wal_level', 'checkpoint_timeout', 'max_wal_size', "
                              "'wal_compression', 'synchronous_commit', 'fsync')")
        figures = {s: Figure(f"CREATE DATABASE … STRATEGY {s}", unit="ms") for s in ("WAL_LOG", "FILE_COPY")}
        for i in range(args.runs):
            for s in (("WAL_LOG", "FILE_COPY") if i % 2 == 0 else ("FILE_COPY", "WAL_LOG")):
                figures[s].add(timed_create(port, s, i))
            print(f"  run {i + 1}: " + ", ".join(f"{s} {f.samples[-1]:.0f} ms" for s, f in figures.items()), flush=True)
        psql(port, "DROP TABLE IF EXISTS bench_dirty")
    finally:
        if not args.port:
            subprocess.run(["pg_dropcluster", "--stop", str(PG_VERSION), SCRATCH], capture_output=True)
    template_size, databases = size.split("|")
    where = f"the cluster on port {port}" if args.port else "a throwaway cluster (template from sql/slice/)"
    for f in figures.values():
        f.note = f"template {template_size}, {databases} databases in the cluster"
    print("\n".join(f.line() for f in figures.values()))
    body = (f"{where}; server settings: {settings}. The strategies alternate (which goes first too); "
            f"each copy is dropped after it is timed; psql's own timing.\n\n" + table(list(figures.values())))
    if not args.no_record:
        append_results("template_strategy", command_line(), body)
    else:
        print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
