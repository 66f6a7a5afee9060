"""Backup of N slices' databases by the backup agent, next to the sum of plain sequential
`pg_dump -Fc`s of the same databases (the floor: what one dump per database costs alone).

A converged instance of N suspended slices (databases, roles, data directories; no
containers), each database filled with `--rows` rows. Per run, interleaved:
  sequential pg_dump sum: `pg_dump -Fc` of each database into a file, one after another (the
                          sum of their wall times);
  agent, parallel P:      `sliceops-backup run --all` with `parallel: P` (dump in one snapshot
                          with row counts, pg_restore --list, tar + list of the data directory,
                          sha256, manifest, state file, prune), wall time.

    .venv/bin/python bench/backup_fleet.py [--slices 50] [--rows 5000] [--runs 3] [--parallel 1 2 4] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from _common import Figure, append_results, command_line, table, teardown

from tests.fix_deploy import run_deploy  # noqa: E402

INSTANCE = "bbk50"
PG_PORT = 5647


def psql(db: str, sql: str) -> str:
    return subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-p",
                           str(PG_PORT), "-d", db], input=sql, capture_output=True, text=True, check=True).stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=50)
    ap.add_argument("--rows", type=int, default=5000, help="rows per slice database")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--parallel", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--keep", action="store_true", help="leave the instance for another run")
    args = ap.parse_args()
    import yaml

    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    inv = work / f"{INSTANCE}.yaml"
    inv.write_text(yaml.safe_dump({
        "target": "@local", "instance": INSTANCE, "postgres": {"port": PG_PORT},
        "docker": {"subnet": "172.30.147.0/24"}, "slice_defaults": {"port_base": 7001},
        "slices": [{"id": i, "status": "suspended"} for i in range(1, args.slices + 1)],
    }))
    dbs = [f"wa_slice_{i}" for i in range(1, args.slices + 1)]
    figures = [Figure(f"sequential pg_dump -Fc, sum of {args.slices}", "s")]
    figures += [Figure(f"agent run --all, parallel {p} ({args.slices} slices + gateway)", "s") for p in args.parallel]
    try:
        done = run_deploy(inv)
        assert done.returncode == 0, done.output[-3000:]
        for db in dbs:
            # seed 004's verification table: no foreign key to satisfy.
            if psql(db, "SELECT count(*) FROM public.verification").strip() != str(args.rows):
                psql(db, 'TRUNCATE public.verification; INSERT INTO public.verification (id, identifier, value, "expiresAt") '
                         f"SELECT 'v' || g, g || '@c.us', md5(g::text), now() FROM generate_series(1, {args.rows}) g;")
        size = psql("postgres", "SELECT pg_size_pretty(sum(pg_database_size(datname))) FROM pg_database "
                                "WHERE datname LIKE 'wa_slice_%'").strip()
        config = json.loads(Path(f"/etc/sliceops/{INSTANCE}/backup.json").read_text())
        agent = f"/usr/local/share/sliceops/{INSTANCE}/backup/sliceops-backup"
        for _ in range(args.runs):
            out = work / "seq"
            out.mkdir(exist_ok=True)
            total = 0.0
            for db in dbs:
                t = time.perf_counter()
                with (out / f"{db}.dump").open("wb") as fh:
                    subprocess.run(["runuser", "-u", "postgres", "--", "pg_dump", "-Fc", "-p", str(PG_PORT), db],
                                   stdout=fh, check=True)
                total += time.perf_counter() - t
            figures[0].add(total)
            shutil.rmtree(out)
            for fig, p in zip(figures[1:], args.parallel):
                cfg = work / f"backup-{p}.json"
                cfg.write_text(json.dumps({**config, "parallel": p, "dir": str(work / f"backups-{p}"),
                                           "state_file": str(work / f"state-{p}.json")}))
                t = time.perf_counter()
                subprocess.run(["/usr/bin/python3", agent, "--config", str(cfg), "run", "--all", "--gateway"],
                               check=True, capture_output=True)
                fig.add(time.perf_counter() - t)
                shutil.rmtree(work / f"backups-{p}")
        for f in figures:
            print(f.line())
        note = (f"{args.slices} slice databases of {args.rows} rows each ({size} in all), data directories "
                "empty; the agent also dumps the gateway, counts every table, lists each dump and archive and "
                "hashes every file; pg_dump/tar at nice 10")
        append_results("backup_fleet", command_line(), table(figures) + "\n\n" + note)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            teardown(INSTANCE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
