#!/usr/bin/env python3
"""Time monitor cycles against N real containers, next to `docker stats --no-stream`.

Starts N tiny busybox containers (each serving /health with httpd on 127.0.0.1,
host network so no proxy per port), a throwaway PostgreSQL with the gateway
schema, then runs the monitor's cycles in a separate process so its wall time,
CPU time (time.process_time, all threads) and peak RSS are the monitor's alone.
Prints the figures, appends them to bench/RESULTS.md, and removes everything.

    python bench/monitor_cycle.py --containers 50 [--cycles 5] [--no-docker-stats] [--metrics]

--metrics times a second run of cycles on the same containers with the Prometheus endpoint
on, scraping it once between cycles (the scrape is timed apart: it runs in the endpoint's
thread, not in the cycle).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "monitor")]

from tests.fix_db import LocalCluster, PgServer  # noqa: E402
from tests.fix_docker import TINY_IMAGE, docker_client, ensure_tiny_image, health_command, remove_cgroup  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
LABEL = "sliceops.bench"

# Runs in a fresh interpreter that imports only the monitor: its RSS is the daemon's.
CHILD = r"""
import json, sys, time
from sliceops_monitor import config
from sliceops_monitor.cycle import Monitor
cfg = config.load(sys.argv[1]); cycles = int(sys.argv[2])
m = Monitor(cfg)
t = time.perf_counter(); m.collector.disk.measure_all_now(); disk_walk = time.perf_counter() - t
out = {"cycles": [], "disk_walk_s": disk_walk}
next_run = time.monotonic()
for i in range(cycles + 1):           # cycle 1 is a warm-up (first prune, connect, no CPU baseline)
    time.sleep(max(0, next_run - time.monotonic())); next_run += cfg.interval
    w, c = time.perf_counter(), time.process_time()
    status = m.run_cycle()
    out["cycles"].append({"wall": time.perf_counter() - w, "cpu": time.process_time() - c, "status": status})
if len(sys.argv) > 3 and sys.argv[3] == "metrics":
    import urllib.request
    from sliceops_monitor.metrics import Exporter
    ex = Exporter(int(sys.argv[4])); ex.serve(); m.metrics = ex.collector
    out["metrics"] = []
    for i in range(cycles + 1):
        time.sleep(max(0, next_run - time.monotonic())); next_run += cfg.interval
        w, c = time.perf_counter(), time.process_time()
        status = m.run_cycle()
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        s, sc = time.perf_counter(), time.process_time()
        body = urllib.request.urlopen(f"http://127.0.0.1:{ex.port}/metrics", timeout=10).read()
        out["metrics"].append({"wall": wall, "cpu": cpu, "status": status, "scrape": time.perf_counter() - s,
                               "scrape_cpu": time.process_time() - sc, "bytes": len(body)})
    ex.stop()
m.close()
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent across exec.
status = open("/proc/self/status").read()
out["hwm_kb"] = int(status.split("VmHWM:")[1].split()[0])
out["rss_kb"] = int(status.split("VmRSS:")[1].split()[0])
print(json.dumps(out))
"""


def free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cg = "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "v1"
    return (f"{socket.gethostname()}: {cpu}, {os.cpu_count()} cores, {mem:.1f} GiB, "
            f"Linux {platform.release()}, cgroup {cg}")


def metrics_lines(result: dict) -> list[str]:
    """The second run's figures (metrics endpoint on, one scrape per cycle), if there was one."""
    if "metrics" not in result:
        return []
    timed = result["metrics"][1:]
    ms = lambda xs: f"median {statistics.median(xs) * 1000:.0f} ms, max {max(xs) * 1000:.0f} ms"  # noqa: E731
    return [
        f"- with the metrics endpoint on: cycle wall {ms([c['wall'] for c in timed])}, "
        f"cycle CPU {ms([c['cpu'] for c in timed])}",
        f"- one scrape of /metrics (its own thread, not in the cycle): wall {ms([c['scrape'] for c in timed])}, "
        f"CPU {ms([c['scrape_cpu'] for c in timed])}, {timed[-1]['bytes'] / 1024:.0f} KiB of text",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--containers", type=int, default=50)
    ap.add_argument("--cycles", type=int, default=5, help="timed cycles after one warm-up (default %(default)s)")
    ap.add_argument("--interval", type=float, default=2.0, help="beat between cycles (default %(default)s)")
    ap.add_argument("--base-port", type=int, default=21000)
    ap.add_argument("--busy", type=int, default=0, help="containers that also spin a busy loop")
    ap.add_argument("--no-docker-stats", action="store_true")
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    ap.add_argument("--metrics", action="store_true", help="also time cycles with the metrics endpoint on")
    args = ap.parse_args()

    run = uuid.uuid4().hex[:8]
    client = docker_client()
    ensure_tiny_image(client)
    info = client.version()
    work = Path(tempfile.mkdtemp(prefix="sliceops-bench-"))
    ports = []
    port = args.base_port
    while len(ports) < args.containers:
        if free(port):
            ports.append(port)
        port += 1
    names = [f"bench{run}-wa-slice-{i + 1}" for i in range(args.containers)]
    # Each under a cgroup of its own, as the deploy runs slices: the monitor finds them there.
    cgroups = [f"sliceops.slice/bench{run}/s{i + 1}" for i in range(args.containers)]
    cluster = None
    started = []
    try:
        print(f"starting {args.containers} containers ...", file=sys.stderr)
        t = time.perf_counter()

        def start(i: int):
            body = json.dumps({"wa_state": "CONNECTED", "wa_phone": f"+49151{i:07d}"}, separators=(",", ":"))
            return client.containers.run(
                TINY_IMAGE, health_command(body, port=ports[i], busy=i < args.busy), name=names[i], detach=True,
                labels={LABEL: run}, network_mode="host", mem_limit="32m",
                cgroup_parent="/" + cgroups[i])

        with ThreadPoolExecutor(8) as pool:
            started = list(pool.map(start, range(args.containers)))
        start_s = time.perf_counter() - t

        print("starting a throwaway PostgreSQL ...", file=sys.stderr)
        cluster = LocalCluster()
        cluster.init()
        cluster.start()
        server = PgServer(cluster.conninfo(), superuser_password=cluster.password)
        with server.connect() as conn:
            conn.execute("CREATE DATABASE bench")
        import psycopg

        with psycopg.connect(server.dsn("bench")) as conn:
            for f in sorted((ROOT / "sql" / "gateway").glob("[0-9]*.sql")):
                conn.execute(f.read_text())
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO gateway.slices (id, port, status) VALUES (%s, %s, 'assigned')",
                                [(i + 1, ports[i]) for i in range(args.containers)])
        pw = work / "pw"
        pw.write_text(cluster.password)
        slices = []
        for i in range(args.containers):
            d = work / "slices" / str(i + 1)
            (d / "media").mkdir(parents=True)
            for j in range(20):
                (d / "media" / f"{j}.bin").write_bytes(b"x" * 4096)
            slices.append({"id": i + 1, "port": ports[i], "container": names[i], "cgroup": cgroups[i],
                           "data_dir": str(d)})
        cfg = {
            "instance": "bench",
            "database": {"host": "127.0.0.1", "port": cluster.port, "dbname": "bench", "user": "postgres",
                         "password_file": str(pw)},
            "interval": args.interval, "health_timeout": min(2.0, args.interval / 2),
            "slices": slices,
        }
        cfg_path = work / "monitor.json"
        cfg_path.write_text(json.dumps(cfg))

        # Every httpd answering before timing starts.
        from sliceops_monitor.health import check

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(check(p, 1.0).answered for p in ports[-5:] + ports[:5]):
            time.sleep(0.5)

        print(f"timing {args.cycles} cycles ...", file=sys.stderr)
        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(cfg_path), str(args.cycles),
             *(["metrics", str(next(p for p in range(29100, 29200) if free(p)))] if args.metrics else [])],
            capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "monitor")}, timeout=600)
        if child.returncode != 0:
            print(child.stderr, file=sys.stderr)
            return 1
        result = json.loads(child.stdout)
        load = os.getloadavg()
        timed = result["cycles"][1:]
        walls = [c["wall"] for c in timed]
        cpus = [c["cpu"] for c in timed]
        hwm_mb, rss_mb = result["hwm_kb"] / 1024, result["rss_kb"] / 1024

        stats_s = None
        if not args.no_docker_stats:
            t = time.perf_counter()
            subprocess.run(["docker", "stats", "--no-stream", *names], capture_output=True, timeout=1800, check=True)
            stats_s = time.perf_counter() - t

        lines = [
            f"### {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {args.containers} containers"
            f"{f' ({args.busy} busy)' if args.busy else ''}",
            "",
            f"- machine: {machine()}, Docker {info.get('Version')}, "
            f"load average {load[0]:.1f} during the cycles (other work on the host shows up here)",
            f"- cycle wall: median {statistics.median(walls) * 1000:.0f} ms, max {max(walls) * 1000:.0f} ms "
            f"({len(walls)} cycles after a warm-up)",
            f"- cycle CPU (process_time, all threads): median {statistics.median(cpus) * 1000:.0f} ms, "
            f"max {max(cpus) * 1000:.0f} ms",
            f"- monitor RSS: {rss_mb:.1f} MB after the cycles, peak {hwm_mb:.1f} MB"
            + (" (both runs, metrics on in the second)" if args.metrics else ""),
            f"- one walk of all data dirs (background worker): {result['disk_walk_s'] * 1000:.0f} ms",
            f"- `docker stats --no-stream` on the same containers: "
            + (f"{stats_s:.1f} s" if stats_s is not None else "not run"),
            f"- last status: `{timed[-1]['status']}`",
            *metrics_lines(result),
            f"- (starting the containers took {start_s:.0f} s)",
            "",
        ]
        text = "\n".join(lines)
        print(text)
        if not args.no_record:
            if not RESULTS.exists():
                RESULTS.write_text("# Benchmark results\n\nAppended by the bench scripts; newest last.\n\n")
            with open(RESULTS, "a") as f:
                f.write(text + "\n")
        return 0
    finally:
        print("removing containers ...", file=sys.stderr)

        def remove(c):
            try:
                c.remove(force=True)
            except Exception:
                pass

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(remove, started))
        for cgroup in cgroups:  # the engine leaves cgroupfs parents behind
            remove_cgroup(cgroup)
        for c in client.containers.list(all=True, filters={"label": f"{LABEL}={run}"}):
            remove(c)
        if cluster is not None:
            try:
                cluster.stop()
            finally:
                cluster.remove()
        subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    sys.exit(main())
