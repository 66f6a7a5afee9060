#!/usr/bin/env python3
"""Time `sliceops status` for @local against N slices (goal: 200 in < 1 s).

Builds a fleet status reads the way it reads a deployed one, without deploying N backends:
a PostgreSQL cluster of its own (`pg_createcluster`, peer authentication like the deploy's),
the gateway schema from sql/gateway/ with N slice rows, half of them assigned to a user,
and a day of telemetry per slice at the monitor's 60 s; N slice databases copied from a
template migrated with sql/slice/ (so pg_database_size walks real relation files); N tiny
busybox containers labelled as the instance's slices. Then times, each --runs times:

- `sliceops status` as an operator runs it (a new process: interpreter, imports, both round
  trips, rendering), text and --json;
- the reading and rendering alone, in this process (what the command does after its imports):
  the psql round trip, the Docker call, and rows + table.

The slice databases' sizes are recorded as the database host's monitor records them
(sliceops.record_database_sizes(), made from the deploy's own grants; sql/gateway/0006), and
that call is timed too: it is what the monitor pays every disk_interval instead.

With `--before DIR` (a checkout of an earlier commit: `git worktree add --detach DIR <commit>`),
each run also times that checkout's `sliceops status` on the same fleet, interleaved with this
one's (this venv's interpreter, the checkout's package first on sys.path), wall time and the
CPU time of the process and what it waited for (psql, runuser; not the PostgreSQL backend).

Prints the figures, appends them to bench/RESULTS.md and removes everything it made.

    .venv/bin/python bench/status_fleet.py [--slices 200] [--runs 7] [--telemetry-hours 24] [--before DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import ROOT, Figure, append_results, command_line, loadavg, table

from tests.fix_docker import TINY_IMAGE, docker_client, ensure_tiny_image

INSTANCE = "benchst"
PG_VERSION = 15
PG_PORT = 5479
PORT_BASE = 23001  # never listened on: status reads the port from the inventory
LABEL = "sliceops.instance"


def psql(sql: str, db: str = "postgres", stdin: bool = False) -> str:
    argv = ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-p", str(PG_PORT), "-d", db]
    proc = subprocess.run(argv + ([] if stdin else ["-c", sql]), input=sql if stdin else None,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"psql failed: {proc.stderr.strip()[:500]}")
    return proc.stdout.strip()


def build_cluster(n: int, hours: int) -> None:
    subprocess.run(["pg_createcluster", str(PG_VERSION), INSTANCE, "-p", str(PG_PORT), "--start"],
                   check=True, capture_output=True)
    psql("CREATE DATABASE wank_saas")
    for f in sorted((ROOT / "sql" / "gateway").glob("[0-9]*.sql")):
        psql(f.read_text(), "wank_saas", stdin=True)
    psql(f"""
INSERT INTO gateway.slices (id, port, status) SELECT i, {PORT_BASE} + 2 * (i - 1), 'available'
  FROM generate_series(1, {n}) i;
INSERT INTO gateway.users (email, password_hash, slice_id)
  SELECT 'customer' || i || '@example.com', 'x', i FROM generate_series(1, {n}, 2) i;
UPDATE gateway.slices s SET status = 'assigned', user_id = u.id, wa_phone = '+49151' || lpad(s.id::text, 7, '0'),
  wa_connected = true FROM gateway.users u WHERE u.slice_id = s.id;
INSERT INTO gateway.telemetry (slice_id, "timestamp", rss_bytes, wa_state, cpu_percent, disk_bytes)
  SELECT i, now() - m * interval '1 minute', 50e6 + i * 1e5, 'CONNECTED', 1.5, 20e6
  FROM generate_series(1, {n}) i, generate_series(0, {hours * 60 - 1}) m;
ANALYZE;""", "wank_saas", stdin=True)
    # The slice schema once, in a template; every slice database is a copy (as the deploy does).
    psql("CREATE ROLE wa_slice")
    psql("CREATE DATABASE bench_template OWNER wa_slice")
    for f in sorted((ROOT / "sql" / "slice").glob("[0-9]*.sql")):
        psql("SET ROLE wa_slice;\n" + f.read_text(), "bench_template", stdin=True)
    for i in range(1, n + 1):
        psql(f"CREATE DATABASE wa_slice_{i} TEMPLATE bench_template")
    # The function the deploy makes for the database host's monitor (as the superuser).
    from sliceops.operations.postgres.grants import monitor_grants

    psql("CREATE ROLE sliceops_monitor LOGIN")
    psql("CREATE SCHEMA sliceops;\n" + monitor_grants(), "wank_saas", stdin=True)
    record_sizes()


def record_sizes() -> None:
    """What the monitor runs every disk_interval (its role may; here the superuser calls it)."""
    psql("SELECT sliceops.record_database_sizes()", "wank_saas")


def timed_process(argv: list[str], cwd: str | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and of the children it waited for)."""
    w = time.perf_counter()
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - w
    if status != 0:
        raise SystemExit(f"{' '.join(argv)} failed in {cwd or '.'}")
    return wall, usage.ru_utime + usage.ru_stime


def start_containers(client, n: int) -> None:
    ensure_tiny_image(client)

    def start(i: int):
        client.containers.run(TINY_IMAGE, ["sleep", "3600"], name=f"{INSTANCE}-wa-slice-{i}", detach=True,
                              labels={LABEL: INSTANCE, "sliceops.slice": str(i)}, network_mode="none",
                              mem_limit="16m")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(start, range(1, n + 1)))


def teardown(client) -> None:
    for c in client.containers.list(all=True, filters={"label": f"{LABEL}={INSTANCE}"}):
        try:
            c.remove(force=True)
        except Exception:  # noqa: BLE001  (already gone)
            pass
    for _ in range(3):
        if INSTANCE not in subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout:
            return
        drop = subprocess.run(["pg_dropcluster", "--stop", str(PG_VERSION), INSTANCE], capture_output=True, text=True)
        if drop.returncode != 0:
            print(f"pg_dropcluster: {drop.stderr.strip()[:300]}", file=sys.stderr)
            time.sleep(2)


def write_inventory(path: Path, n: int) -> None:
    import yaml

    path.write_text(yaml.safe_dump({
        "target": "@local", "instance": INSTANCE, "postgres": {"port": PG_PORT},
        "slice_defaults": {"port_base": PORT_BASE}, "slices": [{"id": i} for i in range(1, n + 1)],
    }, sort_keys=False))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, default=200)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--telemetry-hours", type=int, default=24)
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    ap.add_argument("--before", metavar="DIR", help="a checkout of an earlier commit, timed interleaved with this one")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: it creates a PostgreSQL cluster and containers")

    client = docker_client()
    teardown(client)  # a crashed earlier run's leftovers
    work = Path(tempfile.mkdtemp(prefix="sliceops-bench-status-"))
    inventory = work / "inventory.yaml"
    write_inventory(inventory, args.slices)
    n = args.slices
    cli = Figure(f"`sliceops status`, {n} slices (new process)", "s", goal=1.0)
    cli_json = Figure(f"`sliceops status --json`, {n} slices (new process)", "s", goal=1.0)
    inproc = Figure(f"read + render in-process, {n} slices", "ms")
    pg = Figure("  of which the psql round trip", "ms")
    dk = Figure("  of which the Docker container list", "ms")
    sizes = Figure("pg_database_size of every slice database, alone (psql session, less a `SELECT 1` one)", "ms")
    imports = Figure("interpreter start + imports (`sliceops status -h`)", "s")
    cpu = Figure(f"`sliceops status`, {n} slices: CPU (user+sys, with psql and runuser)", "s")
    before = Figure(f"BEFORE ({args.before}): `sliceops status`, {n} slices (new process)", "s", goal=1.0)
    before_cpu = Figure(f"BEFORE ({args.before}): CPU (user+sys, with psql and runuser)", "s")
    recording = Figure(f"the monitor's sizing call, {n} databases (`SELECT sliceops.record_database_sizes()`, psql session less a `SELECT 1` one)", "ms")
    try:
        t = time.perf_counter()
        print(f"building {n} slice databases and {args.telemetry_hours} h of telemetry ...", file=sys.stderr)
        build_cluster(n, args.telemetry_hours)
        print(f"starting {n} containers ...", file=sys.stderr)
        start_containers(client, n)
        print(f"(set-up {time.perf_counter() - t:.0f} s)", file=sys.stderr)

        from sliceops.inventory import load
        from sliceops.operations.postgres.stamps import slice_stamp
        from sliceops.remote import Target
        from sliceops.status import gather, model, render

        inv = load(inventory)
        stamp = slice_stamp(inv)
        sliceops = [str(ROOT / ".venv" / "bin" / "sliceops")]
        check = subprocess.run(sliceops + ["status", "-i", str(inventory)], capture_output=True, text=True)
        if check.returncode != 0 or f"{n} in service" not in check.stdout:
            raise SystemExit(f"status did not read the fleet: {check.stderr or check.stdout[:500]}")
        python = str(ROOT / ".venv" / "bin" / "python")
        for i in range(args.runs):
            # Which checkout goes first alternates, so neither always meets a cold cache.
            order = ["after", "before"] if i % 2 == 0 else ["before", "after"]
            for which in order:
                if which == "before" and args.before:
                    wall, used = timed_process([python, "-m", "sliceops.cli", "status", "-i", str(inventory)],
                                               cwd=os.path.abspath(args.before))
                    before.add(wall)
                    before_cpu.add(used)
                elif which == "after":
                    wall, used = timed_process(sliceops + ["status", "-i", str(inventory)])
                    cli.add(wall)
                    cpu.add(used)
            w = time.perf_counter()
            subprocess.run(sliceops + ["status", "-i", str(inventory), "--json"], capture_output=True, check=True)
            cli_json.add(time.perf_counter() - w)
            w = time.perf_counter()
            subprocess.run(sliceops + ["status", "-h"], capture_output=True, check=True)
            imports.add(time.perf_counter() - w)
            with Target(inv) as target:
                w = time.perf_counter()
                db = gather.read_database(target, inv, stamp)
                p = time.perf_counter()
                containers = gather.read_containers(target, inv)
                d = time.perf_counter()
                rows = model.build_rows(inv, db, containers)
                render.render(model.sort_rows(rows, "mem"), model.summary(rows), inv.target, inv.instance,
                              inv.monitor.interval, colour=False)
                e = time.perf_counter()
            w0 = time.perf_counter()
            psql("SELECT 1", "wank_saas")
            w1 = time.perf_counter()
            psql("SELECT sum(pg_database_size(oid)) FROM pg_database WHERE datname ~ '^wa_slice_[0-9]+$'", "wank_saas")
            w2 = time.perf_counter()
            record_sizes()
            sizes.add(((w2 - w1) - (w1 - w0)) * 1000)
            recording.add(((time.perf_counter() - w2) - (w1 - w0)) * 1000)
            pg.add((p - w) * 1000)
            dk.add((d - p) * 1000)
            inproc.add((e - w) * 1000)
        figures = [cli, cpu] + ([before, before_cpu] if args.before else []) + [
            cli_json, imports, inproc, pg, dk, sizes, recording]
        body = table(figures) + (
            f"\n\n{n} slice databases copied from a template with sql/slice/, {n} gateway rows (half assigned), "
            f"{args.telemetry_hours} h of telemetry per slice at 60 s ({n * args.telemetry_hours * 60:,} rows), "
            f"{n} busybox containers."
        )
        print(body)
        if not args.no_record:
            append_results("status_fleet", command_line(), body)
        return 0
    finally:
        print(f"removing the cluster and containers ... (load {loadavg()})", file=sys.stderr)
        teardown(client)
        subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    sys.exit(main())
