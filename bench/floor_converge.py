"""From-scratch converge of N slices: `sliceops deploy` next to its physical floor,
bench/floor.sh, which builds the same end state with the plainest commands in one go.

Each run starts from nothing (the instance torn down before and after) and alternates which
side goes first, so a warm cache or a busy neighbour does not favour one. Both sides use the
same inventory: floor.sh reads the configuration files rendered from the deploy's templates
and the same docker run flags (sliceops/operations/docker.py). Goal (issue 6): the deploy
takes at most 1.5 x the floor.

    .venv/bin/python bench/floor_converge.py --slices 50 [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _common import (BENCH, Figure, Stopwatch, append_results, command_line, deploy_timed, loadavg, sh, slowest,
                     table, teardown)

from jinja2 import Environment, FileSystemLoader, StrictUndefined  # noqa: E402

from sliceops.inventory import load  # noqa: E402
from sliceops.operations.docker import bridge_name  # noqa: E402
from sliceops.names import MONITOR_ROLE  # noqa: E402
from sliceops.paths import TEMPLATES  # noqa: E402
from sliceops.tasks.monitor import USER as MONITOR_USER  # noqa: E402
from sliceops.tasks.monitor import config as monitor_config  # noqa: E402
from sliceops.operations.tls import certificate_command, certificate_sans  # noqa: E402
from sliceops.tuning import listen_addresses, pg_tuning, remote_slice_hosts  # noqa: E402

GOAL_RATIO = 1.5


def write_inventory(folder: Path, instance: str, n: int) -> Path:
    data = {
        "target": "@local",
        "instance": instance,
        "postgres": {"port": 5458},
        "docker": {"subnet": "172.30.58.0/24"},
        # floor.sh makes plain data directories: compare like with like (no quota volume).
        "slice_defaults": {"port_base": 47001, "disk": False},
        "slices": [{"id": i} for i in range(1, n + 1)],
    }
    path = folder / f"{instance}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def render(inventory: Path, out: Path) -> None:
    """What the deploy renders on the controller, written for floor.sh: the three PostgreSQL
    files, the monitor's configuration and init script, and floor.env naming everything."""
    inv = load(inventory)
    ram = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0]) * 1024
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), undefined=StrictUndefined, keep_trailing_newline=True)
    common = dict(inv=inv, monitor_role=MONITOR_ROLE)
    (out / "50-sliceops.conf").write_text(env.get_template("postgresql/sliceops.conf.j2").render(
        tuning=pg_tuning(inv, ram), listen=listen_addresses(inv), ram_bytes=ram, **common))
    (out / "pg_hba.conf").write_text(env.get_template("postgresql/pg_hba.conf.j2").render(remote=remote_slice_hosts(inv), **common))
    (out / "pg_ident.conf").write_text(env.get_template("postgresql/pg_ident.conf.j2").render(**common))
    # PostgreSQL's certificate, made as the deploy makes it (the configuration names it).
    (out / "tls.sh").write_text(certificate_command(inv.tls_dir, inv.instance, certificate_sans(inv), new_ca=True) + "\n")
    (out / "monitor.json").write_text(json.dumps(monitor_config(inv), indent=2) + "\n")
    name = inv.monitor_service
    (out / "monitor.init").write_text(env.get_template("monitor/sliceops-monitor.init.j2").render(
        instance=inv.instance, venv=f"/opt/sliceops/{inv.instance}/monitor-venv",
        config_path=f"{inv.etc_dir}/monitor.json", run_user=MONITOR_USER,
        log_path=f"/var/log/sliceops/{name}.log", interval=inv.monitor.interval))
    s = inv.slices[0]
    values = dict(
        INSTANCE=inv.instance, N=len(inv.slices), PG_VERSION=inv.postgres.version, PG_PORT=inv.postgres.port,
        SUBNET=inv.docker.subnet, GATEWAY_ADDR=inv.docker.gateway_address,
        PORT_BASE=inv.slice_defaults.port_base, PORT_STEP=inv.slice_defaults.port_step,
        IMAGE=inv.slice_defaults.image, GATEWAY_DB=inv.gateway.database, GATEWAY_ROLE=inv.gateway.role,
        SLICE_ROLE=inv.slice_defaults.role, NETWORK=inv.network, BRIDGE=bridge_name(inv.instance),
        PREFIX=inv.container_name(1)[:-1], DATA_DIR=inv.slices_data_dir,
        MEMORY=s.memory, CPUS=f"{s.cpus:g}", PIDS=s.pids, HEALTH_INTERVAL=inv.slice_defaults.health_interval,
    )
    (out / "floor.env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))


def failure(result) -> str:
    """The operation that failed and pyinfra's error line."""
    op, error = "?", "?"
    for line in result.output.splitlines():
        text = line.strip()
        if text.startswith("--> Starting operation: "):
            op = text[len("--> Starting operation: "):]
        elif "error" in text.lower() and "[@local]" in text and not text.endswith("executed 0 commands"):
            error = text.replace("[@local] ", "")
            break
    return f"{op!r}: {error}"


def check_converged(instance: str, n: int, port: int) -> str:
    """The same end state either way: n running containers, n + 1 databases at the newest migration."""
    running = sh(f"docker ps -q --filter label=sliceops.instance={instance} --filter status=running | wc -l").stdout
    dbs = sh(f"runuser -u postgres -- psql -XAtq -p {port} -d postgres -c "
             f"\"SELECT count(*) FROM pg_database WHERE datname ~ '^wa_slice_[0-9]+$' OR datname = 'wank_saas'\"",
             check=False).stdout
    monitor = sh(f"/etc/init.d/sliceops-monitor-{instance} status >/dev/null 2>&1 && echo running || echo down",
                 check=False).stdout
    got = f"{running.strip()} containers running, {dbs.strip()} databases, monitor {monitor.strip()}"
    if running.strip() != str(n) or dbs.strip() != str(n + 1):
        raise SystemExit(f"{instance} did not converge: {got}")
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--instance", default="bfloor")
    args = ap.parse_args()
    n, instance = args.slices, args.instance
    work = Path(tempfile.mkdtemp(prefix="sliceops-bench-floor-"))
    inventory = write_inventory(work, instance, n)
    render(inventory, work)
    port = load(inventory).postgres.port
    floor = Figure(f"floor.sh from scratch, {n} slices", unit="s")
    deploy = Figure(f"sliceops deploy from scratch, {n} slices", unit="s")
    deploy_cpu = Figure(f"sliceops deploy controller CPU (user+sys), {n} slices", unit="s")
    phases: dict[str, list[float]] = {}
    steps_all: dict[str, list[float]] = {}
    checks = []
    deploy_failed = ""
    teardown(instance)
    try:
        for r in range(args.runs):
            for side in (("floor", "deploy") if r % 2 == 0 else ("deploy", "floor")):
                if side == "floor":
                    with Stopwatch() as sw:
                        proc = subprocess.run(["bash", str(BENCH / "floor.sh"), str(work)], capture_output=True,
                                              text=True, timeout=3600)
                    if proc.returncode != 0:
                        raise SystemExit(f"floor.sh failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
                    floor.add(sw.wall)
                    for line in proc.stdout.splitlines():
                        if line.startswith("phase "):
                            _, name, secs = line.split()
                            phases.setdefault(name, []).append(float(secs))
                    print(f"  floor {sw.wall:.1f} s, load {loadavg()}: {proc.stdout.strip().replace(chr(10), ', ')}",
                          flush=True)
                else:
                    if deploy_failed:
                        continue
                    result = deploy_timed(inventory)
                    if result.returncode != 0:
                        # Recorded, not fatal: the floor's figures still stand, and the failure
                        # is the finding.
                        deploy_failed = f"FAILED after {result.wall:.0f} s in {failure(result)}"
                        deploy.note = deploy_failed
                        print(f"  deploy {deploy_failed}", flush=True)
                        teardown(instance)
                        continue
                    deploy.add(result.wall)
                    deploy_cpu.add(result.cpu)
                    for name, secs in result.steps:
                        steps_all.setdefault(name, []).append(secs)
                    print(f"  deploy {result.wall:.1f} s (cpu {result.cpu:.1f} s), load {loadavg()}; slowest: "
                          f"{slowest(result.steps, 5)}", flush=True)
                checks.append(f"{side}: {check_converged(instance, n, port)}")
                teardown(instance)
                time.sleep(2)
    finally:
        teardown(instance)
        shutil.rmtree(work, ignore_errors=True)
    ratio = Figure(f"deploy / floor, {n} slices from scratch", unit="x", goal=GOAL_RATIO)
    if deploy.samples:
        ratio.add(deploy.median / floor.median)
    else:
        ratio.note = "the deploy did not converge"
    figures = [floor, deploy, deploy_cpu, ratio]
    print(table(figures))
    if deploy.samples:
        ratio.note = (f"floor: {', '.join(f'{k} {statistics.median(v):.1f}' for k, v in phases.items() if k != 'total')} s")
    phase_rows = [f"| {name} | {statistics.median(v):.2f} |" for name, v in phases.items()]
    step_rows = [f"| {name} | {statistics.median(v):.2f} |"
                 for name, v in sorted(steps_all.items(), key=lambda kv: -statistics.median(kv[1]))]
    body = [
        f"Instance `{instance}` ({n} slices), torn down before each side; {args.runs} runs each, alternating "
        f"which side goes first. Both end states checked: " + "; ".join(sorted(set(checks))) + ".", "",
        table(figures), "",
        "floor.sh phases (median s):", "", "| phase | s |", "|---|---|", *phase_rows, "",
        "<details><summary>the deploy's operations by time (median s; from each \"Starting operation\" line "
        "to the next)</summary>", "", "| step | s |", "|---|---|", *step_rows, "", "</details>",
    ]
    append_results("floor_converge", command_line(), "\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
