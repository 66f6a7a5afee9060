"""The floor under adding a slice: what the engine and the cluster themselves take for the
two things a new tenant cannot do without, measured outside the deploy.

add_slice.py measures what an add costs over a no-op deploy (issue 15: about 1 s). Part of
that is not the tool's: Docker starting a container and PostgreSQL copying the template. This
bench times exactly those, on a converged instance, with the options the deploy uses:

* `docker run -d` of the slice image with a slice's own options (the spec the deploy would
  run for a new slice: network, published port, read-only root, tmpfs, limits, its cgroup
  parent, health check), on a free port and a scratch data directory, removed after;
* one psql session doing what the add's PostgreSQL step does for the cluster: a login role,
  `CREATE DATABASE … TEMPLATE sliceops_slice_template` (the cluster's default strategy),
  then dropped;
* a psql session that does nothing (`SELECT 1`): what starting one costs.

Interleaved, each a median with its spread and the load average. Their sum is the least an
add can cost over a no-op on this machine, whatever the tool does.

    .venv/bin/python bench/add_floor.py [--inventory inventory/slices.yaml] [--runs 9]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time

from _common import Figure, append_results, command_line, table

from sliceops.inventory import load
from sliceops.names import CONTAINER_PG_CA, TEMPLATE_DB
from sliceops.operations.docker import desired_spec, run_command

SCRATCH_PORT = 24999  # below the ephemeral range, used by no instance here
ROLE = "bench_floor_role"
DATABASE = "bench_floor_db"


def psql_seconds(port: int, sql: str) -> float:
    argv = ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-p", str(port)]
    t = time.perf_counter()
    proc = subprocess.run(argv, input=sql, capture_output=True, text=True)
    took = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"psql failed: {proc.stderr.strip()[:500]}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inventory", default="inventory/slices.yaml")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    inv = load(args.inventory)
    model = inv.slices[0]
    image_id = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", inv.slice_defaults.image],
                              capture_output=True, text=True, check=True).stdout.strip()
    driver = subprocess.run(["docker", "info", "--format", "{{.CgroupDriver}}"],
                            capture_output=True, text=True, check=True).stdout.strip()
    scratch = tempfile.mkdtemp(prefix="sliceops-floor-")
    shutil.chown(scratch, 10001, 10001)
    spec = desired_spec(inv, model, image_id, None, driver)
    name = "sliceops-bench-floor"
    spec.update(name=name, publish=f"127.0.0.1:{SCRATCH_PORT}:{SCRATCH_PORT}",
                volumes=[f"{scratch}:/data", f"{inv.pg_ca_file}:{CONTAINER_PG_CA}:ro"],
                # A cgroup of its own, beside the slices' (not inside slice 1's).
                cgroup_parent="sliceops-bench-floor.slice" if driver == "systemd" else "/sliceops-bench-floor")
    spec["env"]["PORT"] = str(SCRATCH_PORT)
    run = run_command(inv, model, spec).replace(f"sliceops.instance={inv.instance}", "sliceops.instance=bench-floor")
    start = Figure(f"docker run -d of one slice container (the deploy's options, {inv.slice_defaults.image})", unit="s")
    create = Figure("one psql: CREATE ROLE, CREATE DATABASE from the slice template (cluster's default strategy)",
                    unit="s")
    empty = Figure("one psql that does nothing (SELECT 1)", unit="s")
    port = inv.postgres.port
    cleanup = f"DROP DATABASE IF EXISTS {DATABASE}; DROP ROLE IF EXISTS {ROLE};"
    try:
        psql_seconds(port, cleanup)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        for _ in range(args.runs):
            t = time.perf_counter()
            subprocess.run(["sh", "-c", run], check=True)
            start.add(time.perf_counter() - t)
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=True)
            create.add(psql_seconds(port, f"CREATE ROLE {ROLE} LOGIN; CREATE DATABASE {DATABASE} "
                                          f"TEMPLATE {TEMPLATE_DB} OWNER {ROLE};"))
            psql_seconds(port, cleanup)
            empty.add(psql_seconds(port, "SELECT 1;"))
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        psql_seconds(port, cleanup)
        shutil.rmtree(scratch, ignore_errors=True)
    floor = Figure("their sum (median + median): the least an add costs over a no-op here", unit="s")
    floor.samples, floor.loads = [start.median + create.median], [start.loads[-1]]
    figures = [start, create, empty, floor]
    for f in figures:
        print(f.line())
    body = (f"Against instance `{inv.instance}` (cluster port {port}), {args.runs} interleaved rounds; the "
            f"container runs with slice {model.id}'s spec on port {SCRATCH_PORT} and a scratch /data, then is "
            "removed; the role and database are dropped after each round.\n\n" + table(figures))
    if not args.no_record:
        append_results("add_floor", command_line(), body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
