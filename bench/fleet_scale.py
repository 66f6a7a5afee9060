"""A host of N slices (issue 15: 500): a from-scratch converge, then no-op deploys, of one
instance with the reference backend on this machine, each step's time, the memory the
fleet takes, then the instance torn down completely.

The instance is its own (cluster, /22 network, ports 45001-45999, directories); each slice
gets `--memory` (40m: the reference backend uses ~20 MiB, so 500 limits stay under the
machine's 24 GiB) and a small disk quota. The machine is shared: the run waits for enough
free memory before it starts, and stops the deploy and tears down if free memory falls
below `--floor-mib` while it runs, rather than push other work into the OOM killer.

    flock /tmp/sliceops-itest.lock .venv/bin/python bench/fleet_scale.py --slices 500 [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from _common import Figure, TimedDeploy, append_results, command_line, deploy_timed, loadavg, slowest, table, teardown

INSTANCE = "bscale"
PG_PORT = 5480
SUBNET = "172.30.200.0/22"
PORT_BASE = 45001
PER_SLICE_MIB = 28  # what one running slice takes here: its container (~20 MiB), shim and port proxy (shared pages once)


def mem_available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def write_inventory(folder: Path, n: int, memory: str, disk: str) -> Path:
    data = {
        "target": "@local",
        "instance": INSTANCE,
        "postgres": {"port": PG_PORT},
        "docker": {"subnet": SUBNET},
        "slice_defaults": {"port_base": PORT_BASE, "memory": memory, "disk": disk},
        "slices": [{"id": i} for i in range(1, n + 1)],
    }
    path = folder / f"{INSTANCE}-{n}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Guard:
    """Watches free memory while a deploy runs; below the floor it stops the deploy."""

    def __init__(self, floor_mib: int):
        self.floor = floor_mib
        self.lowest = mem_available_mib()
        self.tripped = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _watch(self):
        while not self._stop.wait(2):
            free = mem_available_mib()
            self.lowest = min(self.lowest, free)
            if free < self.floor and not self.tripped:
                self.tripped = True
                print(f"!! MemAvailable {free} MiB < {self.floor} MiB: stopping the deploy", flush=True)
                for pid in _tree(os.getpid())[1:]:  # this bench's own children: the deploy
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants, parents first."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid] + [p for child in out.split() for p in _tree(int(child))]


def fleet_memory_mib() -> dict[str, float]:
    """What the instance's containers hold (their cgroups, incl. page cache) and the engine's
    per-container helpers (shims, port proxies; RSS, shared pages counted in each)."""
    out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}"],
                         capture_output=True, text=True).stdout
    containers = 0.0
    units = {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0, "B": 1 / 1024 / 1024}
    for line in out.splitlines():
        name, usage = line.split(" ", 1)
        if name.startswith(f"{INSTANCE}-wa-slice-"):
            value = usage.split(" / ")[0]
            unit = next(u for u in units if value.endswith(u))
            containers += float(value[: -len(unit)]) * units[unit]
    return {"containers": containers}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3, help="timed no-op deploys")
    ap.add_argument("--memory", default="40m", help="each slice's memory limit")
    ap.add_argument("--disk", default="8m", help="each slice's disk quota")
    ap.add_argument("--floor-mib", type=int, default=1500, help="stop if MemAvailable falls below this")
    ap.add_argument("--keep", action="store_true", help="leave the instance (default: tear it down)")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    n = args.slices
    need = n * PER_SLICE_MIB + args.floor_mib
    work = Path(tempfile.mkdtemp(prefix="sliceops-bench-scale-"))
    inventory = write_inventory(work, n, args.memory, args.disk)
    figures: list[Figure] = []
    notes: list[str] = []
    teardown(INSTANCE)
    free_before = mem_available_mib()
    if free_before < need:
        print(f"MemAvailable {free_before} MiB < {need} MiB needed for {n} slices: not run", flush=True)
        return 1
    load_before = loadavg()
    scratch = Figure(f"from-scratch converge, {n} slices", unit="s")
    noop = Figure(f"no-op deploy, {n} slices", unit="s")
    first: TimedDeploy | None = None
    try:
        print(f"--- {n} slices, instance {INSTANCE}, MemAvailable {free_before} MiB, load {load_before}", flush=True)
        with Guard(args.floor_mib) as guard:
            first = deploy_timed(inventory, timeout=5400)
        (work / "first.log").write_text(first.output)
        if first.returncode != 0 or guard.tripped:
            tail = "\n".join(first.output.splitlines()[-40:])
            print(tail, flush=True)
            scratch.note = (f"FAILED (exit {first.returncode}) after {first.wall:.0f} s"
                            + (" : stopped, MemAvailable below the floor" if guard.tripped else ""))
            notes.append(f"from-scratch output's last lines:\n\n```\n{tail}\n```")
        else:
            scratch.add(first.wall)
            scratch.note = (f"{first.totals['changed']} of {first.totals['ops']} ops changed; controller CPU "
                            f"{first.cpu:.0f} s; slowest: {slowest(first.steps, 6)}")
        print(scratch.line(), flush=True)
        figures.append(scratch)
        if scratch.samples:
            time.sleep(30)  # the containers' first health checks and the monitor's first cycles
            mem = fleet_memory_mib()
            used = Figure(f"memory the {n} running slices take (MemAvailable before - after)", unit="MiB")
            used.add(free_before - mem_available_mib())
            used.note = (f"containers' cgroups {mem['containers']:.0f} MiB ({mem['containers'] / n:.1f} per slice); "
                         f"lowest MemAvailable during the converge {guard.lowest} MiB")
            figures.append(used)
            print(used.line(), flush=True)
            steps: dict[str, list[float]] = {}
            for r in range(args.runs):
                result = deploy_timed(inventory)
                if result.returncode != 0:
                    noop.note = f"run {r + 1} FAILED: {result.output[-1500:]}"
                    break
                noop.add(result.wall)
                for name, secs in result.steps:
                    steps.setdefault(name.replace(INSTANCE, "<instance>"), []).append(secs)
                changed = result.changed_ops
                noop.note = (f"{result.totals['ops']} ops" + (f"; CHANGED: {', '.join(changed)}" if changed
                                                              else ", none changed"))
                print(f"  no-op {result.wall:.1f} s, load {loadavg()}", flush=True)
            figures.append(noop)
            top = sorted(((statistics_median(v), k) for k, v in steps.items()), reverse=True)[:6]
            notes.append("no-op, slowest steps (median s): " + "; ".join(f"{k} {v:.2f}" for v, k in top))
    finally:
        if not args.keep:
            with_timer = time.perf_counter()
            teardown(INSTANCE)
            left = subprocess.run(["sh", "-c", f"docker ps -aq --filter label=sliceops.instance={INSTANCE} | wc -l; "
                                   f"pg_lsclusters -h | grep -c ' {INSTANCE} ' || true; "
                                   f"ls -d /etc/sliceops/{INSTANCE} /srv/sliceops/{INSTANCE} 2>/dev/null | wc -l"],
                                  capture_output=True, text=True).stdout.split()
            notes.append(f"torn down in {time.perf_counter() - with_timer:.0f} s; left: {left[0]} containers, "
                         f"{left[1]} clusters, {left[2]} directories")
            print(notes[-1], flush=True)
    if first is not None:
        steps_first = "; ".join(f"{name.replace(INSTANCE, '<instance>')} {secs:.1f}s"
                                for name, secs in sorted(first.steps, key=lambda s: -s[1])[:12])
        notes.insert(0, f"from scratch, slowest steps: {steps_first}")
        shown = re.compile(r"^    \[@local\] (roles and credentials|databases|migrations|gateway rows|"
                           r"slice containers): \d+/\d+ \(")
        progress = [line for line in first.output.splitlines() if shown.match(line)]
        notes.append(f"progress lines in the from-scratch output: {len(progress)}")
    body = (f"Instance `{INSTANCE}` of {n} slices (reference backend, memory {args.memory}, disk {args.disk}, "
            f"subnet {SUBNET}, ports from {PORT_BASE}); MemAvailable {free_before} MiB and load {load_before} "
            f"at the start. {args.note}\n\n{table(figures)}\n\n" + "\n\n".join(
                f"- {x}" if not x.startswith("from-scratch output") else x for x in notes))
    append_results("fleet_scale", command_line(), body)
    return 0 if scratch.samples else 1


def statistics_median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


if __name__ == "__main__":
    sys.exit(main())
