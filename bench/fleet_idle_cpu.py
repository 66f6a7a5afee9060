"""What an idle fleet costs the host: CPU used by an instance's slice containers at rest
(cgroup cpuacct) and by the Docker daemons (dockerd, containerd, shims, runc), over a window;
with --ab, the same containers re-run at other Docker health-check paces (the deploy's own
run_command with only `health_interval` changed: 30 s, the image's own, and 0, off) and
measured again, then restored to the inventory's.

Found while benchmarking no-op deploys of 200 slices: the reference image's HEALTHCHECK
starts a python3 in every container every 30 s through `docker exec`; since then the
deploy runs them every `slice_defaults.health_interval` seconds (300).

    .venv/bin/python bench/fleet_idle_cpu.py --inventory INSTANCE.yaml [--window 120] [--ab]
    .venv/bin/python bench/fleet_idle_cpu.py --inventory INSTANCE.yaml --health-interval SECONDS

The instance must be converged (e.g. left by `bench/noop_deploy.py --keep`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import Figure, append_results, command_line, table

from sliceops.inventory import load  # noqa: E402
from sliceops.operations import docker as dk  # noqa: E402

DAEMONS = ("dockerd", "containerd", "runc")


def container_ns(ids: list[str]) -> int:
    """CPU nanoseconds the containers' cgroups have used (cgroup v1 cpuacct, or v2 cpu.stat)."""
    total = 0
    for cid in ids:
        for path in (Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage"),
                     Path(f"/sys/fs/cgroup/cpu,cpuacct/docker/{cid}/cpuacct.usage")):
            if path.exists():
                total += int(path.read_text())
                break
        else:
            stat = Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat")
            if stat.exists():
                total += int(stat.read_text().split("usage_usec")[1].split()[0]) * 1000
    return total


def daemon_seconds() -> float:
    """utime+stime of the Docker daemons and shims (not their children: a health check's
    python3 is the shim's child and is already counted in its container's cgroup)."""
    ticks = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            if comm in DAEMONS or comm.startswith("containerd-shim"):
                f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(f[11]) + int(f[12])
        except OSError:
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    v = list(map(int, Path("/proc/stat").read_text().splitlines()[0].split()[1:]))
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def measure(instance: str, window: float, label: str) -> list[Figure]:
    ids = subprocess.run(["docker", "ps", "-q", "--no-trunc", "--filter", f"label=sliceops.instance={instance}"],
                         capture_output=True, text=True, check=True).stdout.split()
    c0, d0, m0, t0 = container_ns(ids), daemon_seconds(), machine_busy(), time.time()
    load0 = os.getloadavg()[0]
    time.sleep(window)
    c1, d1, m1, t1 = container_ns(ids), daemon_seconds(), machine_busy(), time.time()
    w = t1 - t0
    inside = Figure(f"{label}: CPU inside the {len(ids)} containers", unit="cores")
    daemons = Figure(f"{label}: CPU of dockerd/containerd/shims/runc (whole host)", unit="cores")
    busy = Figure(f"{label}: whole machine busy (everyone's work)", unit="cores")
    inside.add((c1 - c0) / 1e9 / w)
    daemons.add((d1 - d0) / w)
    busy.add((m1 - m0) / w)
    busy.note = f"load average {load0:.2f} -> {os.getloadavg()[0]:.2f} over {w:.0f} s"
    return [inside, daemons, busy]


def rerun(inv, interval: int) -> None:
    """Re-run every container of the instance with the deploy's own command, the health
    check every `interval` seconds (0: off)."""
    image_id = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", inv.slice_defaults.image],
                              capture_output=True, text=True, check=True).stdout.strip()
    lines = ["set -e"]
    for s in inv.slices:
        env_sha = hashlib.sha256(Path(dk.env_file(inv, s)).read_bytes()).hexdigest()
        spec = {**dk.desired_spec(inv, s, image_id, env_sha), "health_interval": interval}
        cmd = dk.run_command(inv, s, spec)
        lines.append(f"docker rm -f {spec['name']} >/dev/null && {cmd}")
    # On standard input: 200 `docker run`s are more than one argument may hold (128 KiB).
    subprocess.run(["bash"], input="\n".join(lines), text=True, check=True, capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inventory", required=True)
    ap.add_argument("--window", type=float, default=120)
    ap.add_argument("--ab", action="store_true",
                    help="also measure with the health check every 30 s and off, then restore")
    ap.add_argument("--health-interval", type=int,
                    help="only re-run the containers with this health-check pace (0: off), measure nothing")
    args = ap.parse_args()
    inv = load(args.inventory)
    own = inv.slice_defaults.health_interval
    if args.health_interval is not None:
        rerun(inv, args.health_interval)
        print(f"{inv.instance}: containers re-run with the health check every {args.health_interval} s (0: off)")
        return 0
    figures = measure(inv.instance, args.window, f"as deployed (health check every {own} s)")
    if args.ab:
        for interval, label in ((30, "health check every 30 s (the image's own pace)"), (0, "no health check")):
            rerun(inv, interval)
            time.sleep(30)
            figures += measure(inv.instance, args.window, f"same containers, {label}")
        rerun(inv, own)
    print(table(figures))
    append_results("fleet_idle_cpu", command_line(), "\n".join([
        f"Instance `{inv.instance}` ({len(inv.slices)} slices) at rest; window {args.window:.0f} s each. "
        f"Other work on this shared machine shows only in the last row of each group.", "", table(figures)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
