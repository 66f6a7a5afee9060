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
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _common import (Figure, TimedDeploy, append_results, command_line, deploy_ok as deploy, deploy_timed, loadavg,
                     ns_last_pid, pid_delta, slowest, table, teardown)
import proctrace
from tests.fix_deploy import ROOT, SLICEOPS

GOAL_RATIO = 1.5


def write_inventory(folder: Path, instance: str, slot: int, n: int, ids: int | None = None) -> Path:
    """An instance of its own: PostgreSQL port, slice subnet and ports no one else uses."""
    data = {
        "target": "@local",
        "instance": instance,
        "postgres": {"port": 5450 + slot},
        "docker": {"subnet": f"172.30.{50 + slot}.0/24"},
        # Small quotas: 200 slices at the default 2g would ask this machine for a 450 GiB volume.
        "slice_defaults": {"port_base": 41001 + 1000 * slot, "disk": "64m"},
        "slices": [{"id": i} for i in range(1, (ids or n) + 1)],
    }
    path = folder / f"{instance}{'' if ids is None else f'-{ids}'}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def failure(result: TimedDeploy) -> str:
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


def normalise(step: str, instance: str) -> str:
    """An operation's name without what differs by N (instance, counts), to line sizes up."""
    return re.sub(r"\b\d+ (slice|database|in service)", r"N \1", step.replace(instance, "<instance>"))


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
    ap.add_argument("--reuse", action="store_true",
                    help="keep instances a --keep run left (no teardown first; no from-scratch figure for them)")
    ap.add_argument("--note", default="", help="a sentence for RESULTS.md (how the machine was prepared)")
    ap.add_argument("--inventories", help="write (or reuse) the instances' inventories in this folder")
    ap.add_argument("--step", type=int, default=10,
                    help="if a from-scratch converge fails, build the instance up this many slices per deploy")
    args = ap.parse_args()
    work = Path(args.inventories) if args.inventories else Path(tempfile.mkdtemp(prefix="sliceops-bench-noop-"))
    work.mkdir(parents=True, exist_ok=True)
    figures: list[Figure] = []
    commands: dict[int, dict] = {}
    noop_medians: dict[int, float] = {}
    op_times: dict[int, dict[str, float]] = {}
    instances = {n: (f"bnoop{n}", slot) for slot, n in enumerate(args.slices)}
    inventories = {n: write_inventory(work, inst, slot, n) for n, (inst, slot) in instances.items()}
    stats = {n: {"noop": Figure(f"no-op deploy, {n} slices", unit="s"),
                 "cpu": Figure(f"no-op deploy controller CPU (user+sys), {n} slices", unit="s"),
                 "pids": Figure(f"no-op PID counter delta minus idle baseline, {n} slices", unit="pids"),
                 "raw": [], "changed": set(), "steps": {}, "ops": 0}
             for n in args.slices}
    scratch: dict[int, Figure] = {}
    try:
        # 1. every instance converged (from scratch, timed), then settled by one untimed no-op
        for n, (instance, slot) in instances.items():
            reused = args.reuse and Path(f"/etc/sliceops/{instance}").exists()
            if not reused:
                teardown(instance)
            print(f"--- {n} slices: instance {instance}, {'reused' if reused else 'from scratch'} ...", flush=True)
            first = deploy_timed(inventories[n])
            fig = scratch[n] = Figure(f"from-scratch converge, {n} slices", unit="s")
            if reused and first.returncode == 0:
                fig.note = "instance reused from an earlier --keep run: not from scratch"
            elif first.returncode == 0:
                fig.add(first.wall)
                fig.note = (f"{first.totals['changed']} of {first.totals['ops']} ops changed, controller CPU "
                            f"{first.cpu:.1f} s; slowest: {slowest(first.steps, 4)}")
            else:
                # Reported, then the instance is built up a few slices per deploy so the no-op
                # figures can still be taken.
                fig.note = (f"FAILED after {first.wall:.0f} s in {failure(first)}; built up {args.step} slices "
                            f"per deploy instead")
                built = []
                for k in range(args.step, n + args.step, args.step):
                    part = deploy(write_inventory(work, instance, slot, n, ids=min(k, n)))
                    built.append(f"{min(k, n)}: {part.wall:.0f}s")
                print("  built up: " + ", ".join(built), flush=True)
            print(f"  {fig.row()}", flush=True)
            deploy(inventories[n])
        # 2. the timed no-ops, round-robin over N so every size sees the same neighbours' load
        for r in range(args.runs):
            for n in args.slices:
                st = stats[n]
                before = ns_last_pid()
                result = deploy(inventories[n])
                delta = pid_delta(before, ns_last_pid())
                baseline = idle_pids(result.wall)
                st["noop"].add(result.wall)
                st["cpu"].add(result.cpu)
                st["pids"].add(delta - baseline)
                st["raw"].append(f"{delta}-{baseline}")
                st["changed"] |= set(result.changed_ops)
                st["ops"] = result.totals["ops"]
                for name, secs in result.steps:
                    st["steps"].setdefault(normalise(name, instances[n][0]), []).append(secs)
                print(f"  {n} slices: no-op {result.wall:.2f} s, cpu {result.cpu:.2f} s, pids {delta} "
                      f"(idle {baseline}), load {loadavg()}", flush=True)
        # 3. one traced no-op each: the exact process count
        for n, (instance, _) in instances.items():
            st = stats[n]
            trace_file = work / f"{instance}.strace"
            env = dict(os.environ, SLICEOPS_INVENTORY=str(inventories[n]), PYTHONPATH=str(ROOT))
            proc = proctrace.traced(SLICEOPS + ["deploy", "--inventory", str(inventories[n])], trace_file, env=env,
                                    cwd=ROOT)
            if proc.returncode != 0:
                raise SystemExit(f"traced no-op failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
            summary = proctrace.summarise_pyinfra(proctrace.parse(trace_file))
            exact = Figure(f"no-op processes on the target (strace -f, exact), {n} slices", unit="procs")
            exact.add(summary["target_processes"])
            exact.note = (f"{summary['target_commands']} commands run by pyinfra, {summary['execs']} execs; "
                          f"controller threads {summary['all_threads']}")
            commands[n] = summary
            st["noop"].note = f"{st['ops']} pyinfra ops" + (
                f"; CHANGED: {', '.join(sorted(st['changed']))}" if st["changed"] else ", none changed")
            st["pids"].note = "raw delta-idle: " + ", ".join(st["raw"])
            noop_medians[n] = st["noop"].median
            op_times[n] = {name: statistics.median(v) for name, v in st["steps"].items()}
            figures += [scratch[n], st["noop"], st["cpu"], st["pids"], exact]
    finally:
        if not args.keep:
            for instance, _ in instances.values():
                teardown(instance)
            if not args.inventories:
                shutil.rmtree(work, ignore_errors=True)  # the traces are large at 200 slices
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
        f"Instances `bnoop<N>` on this machine (own cluster, network, ports), all converged first, then "
        f"{args.runs} rounds of timed no-ops taking the sizes in turn (so each size sees the same load), "
        f"after one untimed settling run each; torn down at the end. The PID counter counts "
        f"every process and thread created on the machine; the exact count is one more no-op under "
        f"`strace -f` (its time is not used)." + (f" {args.note}" if args.note else ""), "", table(figures), "",
        "<details><summary>commands pyinfra ran on the target during one no-op (by first words, count)</summary>", "",
    ]
    for n, summary in commands.items():
        body += [f"**{n} slices**: {summary['target_commands']} commands, {summary['target_processes']} processes", "",
                 "```"] + [f"{c:>3}  {label}" for label, c in summary["commands"].most_common()] + ["```", ""]
    body.append("</details>")
    sizes = sorted(op_times)
    body += ["", "<details><summary>where a no-op's time goes: seconds per step (median), by N</summary>", "",
             "| step | " + " | ".join(str(n) for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
    names = sorted({name for t in op_times.values() for name in t}, key=lambda k: -op_times[sizes[-1]].get(k, 0))
    for name in names:
        body.append(f"| {name} | " + " | ".join(f"{op_times[n].get(name, 0):.2f}" for n in sizes) + " |")
    body += ["", "</details>"]
    append_results("noop_deploy", command_line(), "\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
