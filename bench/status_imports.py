#!/usr/bin/env python3
"""What `sliceops status` costs before any read: CPU seconds (user + sys of the process and of
what it waited for, psql included) of `sliceops status -h` and `sliceops status --json`, for
two checkouts, interleaved. CPU time moves far less with the load average than wall time on
this shared 2-core machine (loads of 40-140 while other sessions test).

    git worktree add --detach /tmp/before <commit>
    .venv/bin/python bench/status_imports.py /tmp/before . [--runs 7]

Both checkouts run with this venv's interpreter (the checkout's own package comes first on
sys.path) against their inventory/slices.yaml, i.e. the `main` instance: read-only.
"""
import argparse
import os
import statistics
import subprocess
import sys

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("before")
ap.add_argument("after")
ap.add_argument("--runs", type=int, default=7)
args = ap.parse_args()
TREES = {f"before ({args.before})": os.path.abspath(args.before), f"after ({args.after})": os.path.abspath(args.after)}
PY = sys.executable
N = args.runs
cpu = {(t, c): [] for t in TREES for c in ("-h", "--json")}
print("load at the start", os.getloadavg())
for _ in range(N):
    for name, tree in TREES.items():
        for c in ("-h", "--json"):
            p = subprocess.Popen([PY, "-m", "sliceops.cli", "status", c], cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, ru = os.wait4(p.pid, 0)
            assert status == 0
            cpu[(name, c)].append(ru.ru_utime + ru.ru_stime)
print("load at the end", os.getloadavg())
for (name, c), v in cpu.items():
    print(f"{name} status {c}: CPU median {statistics.median(v):.3f}s (min {min(v):.3f}, max {max(v):.3f}), {len(v)} runs")
