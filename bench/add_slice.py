"""What a new tenant costs: adding one slice to a converged host, next to a no-op deploy of
the same host, at each size (issue 15: at most about 1 s more than the no-op, at 3 and 200).

Each size is an instance of its own (cluster, port, subnet, slice ports), converged from
scratch first. Then, in rounds that take the sizes in turn (so every size sees the same
neighbours' load), each size gets one timed no-op deploy and right after it one timed deploy
of the same inventory with the next slice id appended. The added slice is kept: the next
round's no-op is of the grown host, and its add is again a first-time add (volume grown,
role, database, row, container, monitor told), as an operator adding tenants one by one
sees it. (Destroying the slice between rounds would leave the grown volume, never shrunk,
and the destroy's own backup behind; a fresh instance per round costs minutes at 200.)
So N drifts by --runs over the rounds; a no-op is flat in N (noop_deploy.py).

Every figure is a median with its spread and the load average; the extra cost of an add is
the median of each round's add minus its own no-op. The seconds of each pyinfra operation
(from its "Starting operation" line to the next) say where the time goes; with --trace, one
more add per size runs under `strace -f` (bench/proctrace.py) and lists the commands it ran.

    .venv/bin/python bench/add_slice.py --slices 3 200 [--runs 5] [--keep] [--reuse]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

from _common import Figure, append_results, command_line, deploy_ok as deploy, loadavg, table, teardown
import proctrace
from tests.fix_deploy import ROOT, SLICEOPS

GOAL_EXTRA = 1.0  # seconds an add may cost over the no-op of the same host
INSTANCE_PREFIX = "fadd"


def write_inventory(folder: Path, instance: str, slot: int, ids: int, first: int, port_base: int | None = None
                    ) -> Path:
    """An instance of its own: PostgreSQL port, slice subnet and ports no one else uses.
    Slices above `first` (the ones the rounds add) get ports of their own below the kernel's
    ephemeral range (32768-60999 here): a port a client socket holds, even in TIME-WAIT,
    makes `docker run --publish` fail, and busy neighbours hold many."""
    base = port_base or 27001 + 1000 * slot
    data = {
        "target": "@local",
        "instance": instance,
        "postgres": {"port": 5715 + slot},
        "docker": {"subnet": f"172.30.{215 + slot}.0/24"},
        # Small quotas: 200 slices at the default 2g would ask this machine for a 450 GiB volume.
        "slice_defaults": {"port_base": base, "disk": "64m"},
        "slices": [{"id": i} if i <= first else {"id": i, "port": 30001 + 500 * slot + 2 * (i - first)}
                   for i in range(1, ids + 1)],
    }
    path = folder / f"{instance}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def normalise(step: str, instance: str) -> str:
    """An operation's name without what differs by N (instance, counts, ids), to line runs up."""
    step = step.replace(instance, "<instance>")
    return re.sub(r"\b\d+( slice| database| in service| roles)", r"N\1", step)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, nargs="+", default=[3, 200])
    ap.add_argument("--runs", type=int, default=5, help="rounds of (no-op, add one) per size")
    ap.add_argument("--keep", action="store_true", help="leave the instances (default: tear each down)")
    ap.add_argument("--reuse", action="store_true", help="keep instances a --keep run left (no from-scratch converge)")
    ap.add_argument("--inventories", help="write (or reuse) the instances' inventories in this folder")
    ap.add_argument("--trace", action="store_true", help="one more add per size under strace -f: its commands")
    ap.add_argument("--note", default="", help="a sentence for RESULTS.md (what the tree was)")
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = ap.parse_args()
    work = Path(args.inventories) if args.inventories else Path(tempfile.mkdtemp(prefix="sliceops-bench-add-"))
    work.mkdir(parents=True, exist_ok=True)
    instances = {n: (f"{INSTANCE_PREFIX}{n}", slot) for slot, n in enumerate(args.slices)}
    size: dict[int, int] = {}
    bases: dict[int, int] = {}
    stats = {n: {"noop": Figure(f"no-op deploy, {n}+ slices", unit="s"),
                 "add": Figure(f"add one slice, {n}+ slices", unit="s"),
                 "extra": Figure(f"add minus its no-op, {n}+ slices", unit="s", goal=GOAL_EXTRA),
                 "noop_steps": {}, "add_steps": {}, "add_changed": set(), "noop_changed": set()}
             for n in args.slices}
    scratch: dict[int, Figure] = {}
    traces: dict[int, dict] = {}
    try:
        for n, (instance, slot) in instances.items():
            prior = work / f"{instance}.yaml"
            reused = args.reuse and prior.exists() and Path(f"/etc/sliceops/{instance}").exists()
            if reused:  # its port base kept: a new one would recreate every container
                was = yaml.safe_load(prior.read_text())
                size[n], bases[n] = len(was["slices"]), was["slice_defaults"]["port_base"]
            else:
                teardown(instance)
                size[n] = n
            print(f"--- {n} slices: instance {instance}, {'reused at ' + str(size[n]) if reused else 'from scratch'}",
                  flush=True)
            first = deploy(write_inventory(work, instance, slot, size[n], n, bases.get(n)))
            fig = scratch[n] = Figure(f"from-scratch converge, {n} slices", unit="s")
            if reused:
                fig.note = "instance reused from an earlier --keep run: not from scratch"
            else:
                fig.add(first.wall)
            print(f"  {fig.row()}", flush=True)
            deploy(write_inventory(work, instance, slot, size[n], n, bases.get(n)))  # settle: the next run is a no-op
        for r in range(args.runs):
            for n, (instance, slot) in instances.items():
                st = stats[n]
                noop = deploy(write_inventory(work, instance, slot, size[n], n, bases.get(n)))
                size[n] += 1
                add = deploy(write_inventory(work, instance, slot, size[n], n, bases.get(n)))
                st["noop"].add(noop.wall)
                st["add"].add(add.wall)
                st["extra"].add(add.wall - noop.wall)
                st["noop_changed"] |= set(noop.changed_ops)
                st["add_changed"] |= {normalise(op, instance) for op in add.changed_ops}
                for key, result in (("noop_steps", noop), ("add_steps", add)):
                    for name, secs in result.steps:
                        st[key].setdefault(normalise(name, instance), []).append(secs)
                print(f"  {n}: no-op {noop.wall:.2f} s, add slice {size[n]} {add.wall:.2f} s "
                      f"(+{add.wall - noop.wall:.2f}), load {loadavg()}", flush=True)
        if args.trace:
            for n, (instance, slot) in instances.items():
                size[n] += 1
                inventory = write_inventory(work, instance, slot, size[n], n, bases.get(n))
                env = dict(os.environ, SLICEOPS_INVENTORY=str(inventory), PYTHONPATH=str(ROOT))
                trace_file = work / f"{instance}-add.strace"
                proc = proctrace.traced(SLICEOPS + ["deploy", "--inventory", str(inventory)], trace_file, env=env,
                                        cwd=ROOT)
                if proc.returncode != 0:
                    raise SystemExit(f"traced add failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
                traces[n] = proctrace.summarise_pyinfra(proctrace.parse(trace_file))
    finally:
        if not args.keep:
            for instance, _ in instances.values():
                teardown(instance)
            if not args.inventories:
                shutil.rmtree(work, ignore_errors=True)
    figures: list[Figure] = []
    for n in args.slices:
        st = stats[n]
        st["noop"].note = ("none changed" if not st["noop_changed"]
                           else "CHANGED: " + ", ".join(sorted(st["noop_changed"])))
        st["add"].note = "changed: " + ", ".join(sorted(st["add_changed"]))
        figures += [scratch[n], st["noop"], st["add"], st["extra"]]
    print()
    for f in figures:
        print(f.line())
    body = [
        f"Instances `{INSTANCE_PREFIX}<N>` on this machine (own cluster, subnet, ports, disk quota 64m), "
        f"converged from scratch, then {args.runs} rounds taking the sizes in turn: a timed no-op "
        f"deploy, then the same inventory with the next slice id appended (kept: N grows by one a "
        f"round). \"add minus its no-op\" is per round.", "", table(figures), "",
    ]
    if args.note:
        body[0] += f" {args.note}"
    for n in args.slices:
        st = stats[n]
        names = sorted(set(st["add_steps"]) | set(st["noop_steps"]),
                       key=lambda k: -statistics.median(st["add_steps"].get(k, [0])))
        body += [f"<details><summary>{n} slices: seconds per step, median of the runs (no-op, add)</summary>", "",
                 "| step | no-op | add | add - no-op |", "|---|---|---|---|"]
        for name in names:
            a = statistics.median(st["add_steps"].get(name, [0]))
            o = statistics.median(st["noop_steps"].get(name, [0]))
            if max(a, o) >= 0.02:
                body.append(f"| {name} | {o:.2f} | {a:.2f} | {a - o:+.2f} |")
        body += ["", "</details>", ""]
    for n, summary in traces.items():
        body += [f"<details><summary>{n} slices: commands pyinfra ran on the target during one add "
                 f"({summary['target_commands']} commands, {summary['target_processes']} processes)</summary>", "",
                 "```"] + [f"{c:>3}  {label}" for label, c in summary["commands"].most_common()] + ["```", "",
                                                                                                 "</details>", ""]
    if not args.no_record:
        append_results("add_slice", command_line(), "\n".join(body))
    else:
        print("\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
