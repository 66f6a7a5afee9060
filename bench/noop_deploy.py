"""No-op deploys at fleet scale: for each N, converge an instance of N slices from scratch
(timed), then time `sliceops deploy` three times with nothing to change, and count the
processes each no-op spawns on the target.

Processes are counted two ways: the kernel's PID counter (/proc/sys/kernel/ns_last_pid)
across the deploy minus the same counter over an idle interval of the same length right
after it (other work on this shared machine moves it too), and exactly, from one more
no-op run under `strace -f` (bench/proctrace.py), which also lists the commands pyinfra ran.
Goal (issue 6): no-op of 200 slices <= 1.5 x no-op of 3; the process count flat in N.

    .venv/bin/python bench/noop_deploy.py --slices 3 50 200 [--runs 3] [--keep]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _common import Figure, Stopwatch, append_results, command_line, loadavg, ns_last_pid, pid_delta, table, teardown
import proctrace
from tests.fix_deploy import ROOT, SLICEOPS, DeployResult, run_deploy

GOAL_RATIO = 1.5


def write_inventory(folder: Path, instance: str, slot: int, n: int) -> Path:
    """An instance of its own: PostgreSQL port, slice subnet and ports no one else uses."""
    data = {
        "target": "@local",
        "instance": instance,
        "postgres": {"port": 5450 + slot},
        "docker": {"subnet": f"172.30.{50 + slot}.0/24"},
        "slice_defaults": {"port_base": 41001 + 1000 * slot},
        "slices": [{"id": i} for i in range(1, n + 1)],
    }
    path = folder / f"{instance}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def deploy(inventory: Path) -> tuple[DeployResult, Stopwatch]:
    with Stopwatch() as sw:
        result = run_deploy(inventory, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"deploy of {inventory} failed ({result.returncode}):\n{result.output[-4000:]}")
    return result, sw


def idle_pids(seconds: float) -> int:
    """PIDs the rest of the machine used while we did nothing for `seconds`."""
    before = ns_last_pid()
    time.sleep(seconds)
    return pid_delta(before, ns_last_pid())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, nargs="+", default=[3, 50, 200])
    ap.add_argument("--runs", type=int, default=3, help="timed no-op deploys per N")
    ap.add_argument("--keep", action="store_true", help="leave the instances (default: tear each down)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sliceops-bench-noop-"))
    figures: list[Figure] = []
    rows: list[str] = []
    commands: dict[int, dict] = {}
    noop_medians: dict[int, float] = {}
    for slot, n in enumerate(args.slices):
        instance = f"bnoop{n}"
        teardown(instance)
        inventory = write_inventory(work, instance, slot, n)
        try:
            print(f"--- {n} slices: instance {instance}, from scratch ...", flush=True)
            first, sw = deploy(inventory)
            scratch = Figure(f"from-scratch converge, {n} slices", unit="s")
            scratch.add(sw.wall)
            scratch.note = f"{first.totals['changed']} of {first.totals['ops']} ops changed, controller CPU {sw.cpu:.1f} s"
            print(scratch.line(), flush=True)
            # The first no-op after a from-scratch run may still settle (e.g. a service's
            # pid file); run one untimed so the timed ones are the steady state.
            deploy(inventory)
            noop = Figure(f"no-op deploy, {n} slices", unit="s")
            cpu = Figure(f"no-op deploy controller CPU (user+sys), {n} slices", unit="s")
            pids = Figure(f"no-op PID counter delta minus idle baseline, {n} slices", unit="pids")
            raw = []
            changed = set()
            for _ in range(args.runs):
                before = ns_last_pid()
                result, sw = deploy(inventory)
                delta = pid_delta(before, ns_last_pid())
                baseline = idle_pids(sw.wall)
                noop.add(sw.wall)
                cpu.add(sw.cpu)
                pids.add(delta - baseline)
                raw.append(f"{delta}-{baseline}")
                changed |= set(result.changed_ops)
                ops = result.totals["ops"]
                print(f"  no-op {sw.wall:.2f} s, cpu {sw.cpu:.2f} s, pids {delta} (idle {baseline}), load {loadavg()}",
                      flush=True)
            noop.note = f"{ops} pyinfra ops" + (f"; CHANGED: {', '.join(sorted(changed))}" if changed else ", none changed")
            pids.note = "raw delta-idle: " + ", ".join(raw)
            trace_file = work / f"{instance}.strace"
            env = dict(os.environ, SLICEOPS_INVENTORY=str(inventory), PYTHONPATH=str(ROOT))
            proc = proctrace.traced(SLICEOPS + ["deploy", "--inventory", str(inventory)], trace_file, env=env, cwd=ROOT)
            if proc.returncode != 0:
                raise SystemExit(f"traced no-op failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
            summary = proctrace.summarise_pyinfra(proctrace.parse(trace_file))
            exact = Figure(f"no-op processes on the target (strace -f, exact), {n} slices", unit="procs")
            exact.add(summary["target_processes"])
            exact.note = (f"{summary['target_commands']} commands run by pyinfra, {summary['execs']} execs; "
                          f"controller threads {summary['all_threads']}")
            commands[n] = summary
            noop_medians[n] = noop.median
            figures += [scratch, noop, cpu, pids, exact]
            print(table(figures[-5:]), flush=True)
        finally:
            if not args.keep:
                teardown(instance)
    small, big = min(noop_medians), max(noop_medians)
    ratio = Figure(f"no-op {big} slices / no-op {small} slices", unit="x", goal=GOAL_RATIO)
    ratio.add(noop_medians[big] / noop_medians[small])
    figures.append(ratio)
    procs = [commands[n]["target_processes"] for n in sorted(commands)]
    flat = Figure(f"process count {big} slices / {small} slices (exact)", unit="x", goal=1.0)
    flat.add(procs[-1] / procs[0])
    figures.append(flat)
    print()
    for f in figures:
        print(f.line())
    body = [
        f"Instances `bnoop<N>` on this machine (own cluster, network, ports), each torn down after its N. "
        f"No-op figures: {args.runs} timed runs after one untimed settling run. The PID counter counts "
        f"every process and thread created on the machine; the exact count is one more no-op under "
        f"`strace -f` (its time is not used).", "", table(figures), "",
        "<details><summary>commands pyinfra ran on the target during one no-op (by first words, count)</summary>", "",
    ]
    for n, summary in commands.items():
        body += [f"**{n} slices**: {summary['target_commands']} commands, {summary['target_processes']} processes", "",
                 "```"] + [f"{c:>3}  {label}" for label, c in summary["commands"].most_common()] + ["```", ""]
    body.append("</details>")
    append_results("noop_deploy", command_line(), "\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
