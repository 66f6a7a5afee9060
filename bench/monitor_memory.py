"""Peak memory of the real `sliceops-monitor` process with N slices (goal, issue 4/6: < 60 MB RSS
with 500): its `once` and `run` commands, under the interpreter and libraries the deploy gives
it (Debian's python3 with python3-psycopg and python3-psutil), against N tiny containers
serving /health and a throwaway PostgreSQL with the gateway schema.

Peak RSS is VmHWM from /proc/<pid>/status. `run` is read after several cycles, then
stopped with SIGTERM; `once` exits by itself, so it runs under strace with its exit_group
delayed by a second: VmHWM is read while the process is parked at its very last syscall.

    .venv/bin/python bench/monitor_memory.py [--slices 500] [--cycles 6] [--python /usr/bin/python3] [--metrics]

--metrics turns the Prometheus endpoint on (metrics_port) and scrapes it after every cycle
of `run`, so its peak includes the exposition of N slices (needs python3-prometheus-client).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import ROOT, Figure, append_results, command_line, table

import psycopg  # noqa: E402

from tests.fix_db import LocalCluster, PgServer  # noqa: E402
from tests.fix_docker import TINY_IMAGE, docker_client, ensure_tiny_image, health_command, remove_cgroup  # noqa: E402

GOAL_MB = 60.0
CYCLE = re.compile(r": cycle \d+: ")
LABEL = "sliceops.bench"


def status_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "Threads"):
            out[key] = int(value.split()[0])
        elif key == "State":
            out["zombie"] = value.split()[0] in ("Z", "X")
    return out


def child_of(pid: int, timeout: float = 10) -> int:
    """The process strace started (its only child)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids = (task / "children").read_text().split()
            if kids:
                return int(kids[0])
        time.sleep(0.01)
    raise RuntimeError(f"strace {pid} started nothing")


def free_ports(n: int, start: int) -> list[int]:
    import socket

    ports, port = [], start
    while len(ports) < n:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                ports.append(port)
            except OSError:
                pass
        port += 1
    return ports


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=500)
    ap.add_argument("--cycles", type=int, default=6, help="cycles of `run` before reading its peak")
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--python", default="/usr/bin/python3", help="the monitor's interpreter (the deploy's)")
    ap.add_argument("--metrics", action="store_true", help="serve and scrape /metrics during `run`")
    ap.add_argument("--no-once", action="store_true", help="measure `run` only (what --metrics changes)")
    ap.add_argument("--base-port", type=int, default=23000)
    args = ap.parse_args()
    n = args.slices
    client = docker_client()
    ensure_tiny_image(client)
    run_id = f"mem{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="sliceops-bench-mem-"))
    os.chmod(work, 0o755)
    ports = free_ports(n, args.base_port)
    names = [f"{run_id}-wa-slice-{i + 1}" for i in range(n)]
    # Each under a cgroup of its own, as the deploy runs slices: the monitor finds them there.
    cgroups = [f"sliceops.slice/{run_id}/s{i + 1}" for i in range(n)]
    started: list = []
    cluster = None
    figures: list[Figure] = []
    notes: list[str] = []
    try:
        print(f"starting {n} containers ...", flush=True)

        def start(i: int):
            body = json.dumps({"wa_state": "CONNECTED", "wa_phone": f"+49151{i:07d}"}, separators=(",", ":"))
            return client.containers.run(TINY_IMAGE, health_command(body, port=ports[i]), name=names[i], detach=True,
                                         labels={LABEL: run_id}, network_mode="host", mem_limit="32m",
                cgroup_parent="/" + cgroups[i])

        t = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            started = list(pool.map(start, range(n)))
        print(f"  {time.perf_counter() - t:.0f}s", flush=True)

        cluster = LocalCluster()
        cluster.init()
        cluster.start()
        server = PgServer(cluster.conninfo(), superuser_password=cluster.password)
        with server.connect() as conn:
            conn.execute("CREATE DATABASE bench")
        with psycopg.connect(server.dsn("bench")) as conn:
            for f in sorted((ROOT / "sql" / "gateway").glob("[0-9]*.sql")):
                conn.execute(f.read_text())
            conn.execute("INSERT INTO gateway.slices (id, port, status) "
                         "SELECT i, %s + i, 'assigned' FROM generate_series(1, %s) i", (0, n))
        pw = work / "pw"
        pw.write_text(cluster.password)
        slices = []
        for i in range(n):
            d = work / "slices" / str(i + 1)
            (d / "media").mkdir(parents=True)
            for j in range(20):
                (d / "media" / f"{j}.bin").write_bytes(b"x" * 4096)
            slices.append({"id": i + 1, "port": ports[i], "container": names[i], "cgroup": cgroups[i],
                           "data_dir": str(d)})
        metrics_port = free_ports(1, 29300)[0]
        cfg = work / "monitor.json"
        cfg.write_text(json.dumps({
            "instance": "bench",
            "database": {"host": "127.0.0.1", "port": cluster.port, "dbname": "bench", "user": "postgres",
                         "password_file": str(pw)},
            "interval": args.interval, "health_timeout": min(2.0, args.interval / 2), "slices": slices,
            **({"metrics_port": metrics_port} if args.metrics else {}),
        }))
        env = {**os.environ, "PYTHONPATH": str(ROOT / "monitor")}
        entry = ["-c", "import sys; from sliceops_monitor.cli import main; sys.exit(main())", "--config", str(cfg)]
        version = subprocess.run([args.python, "-c", "import sys, psycopg, psutil; print(sys.version.split()[0], "
                                  "'psycopg', psycopg.__version__, psycopg.pq.__impl__, 'psutil', psutil.__version__)"],
                                 capture_output=True, text=True, env=env).stdout.strip()
        notes.append(f"interpreter {args.python}: Python {version}")

        # Every httpd answering before measuring.
        sys.path.insert(0, str(ROOT / "monitor"))
        from sliceops_monitor.health import check
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not all(check(p, 1.0).answered for p in ports[:5] + ports[-5:]):
            time.sleep(0.5)

        # ---- once: parked at exit_group for a second, VmHWM read there (3 runs)
        once = Figure(f"`sliceops-monitor once` peak RSS (VmHWM), {n} slices", unit="MB", goal=GOAL_MB)
        for _ in range(0 if args.no_once else 3):
            strace = subprocess.Popen(
                ["strace", "-qq", "-o", "/dev/null", "-e", "trace=exit_group", "-e",
                 "inject=exit_group:delay_enter=1500000", args.python, *entry, "once"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            pid = child_of(strace.pid)
            last = {}
            while strace.poll() is None:
                try:
                    now = status_kb(pid)
                except (FileNotFoundError, ProcessLookupError):
                    break
                if now.get("zombie"):  # exited: a zombie has no memory left to report
                    break
                if "VmHWM" in now:  # absent for an instant while execve swaps the image
                    last = now
                time.sleep(0.02)
            out, err = strace.communicate()
            status_line = out.strip().splitlines()[-1] if out.strip() else err.strip()[-300:]
            if not status_line.startswith("cycle "):
                raise SystemExit(f"sliceops-monitor once failed: {out[-1000:]}{err[-2000:]}")
            if "RssFile" in last and last["VmHWM"] < 5000:
                raise SystemExit(f"read {last} before the monitor's image was in place")
            once.add(last["VmHWM"] / 1024)
            once.note = f"threads {last.get('Threads')}; `{status_line}`"
            print(once.line(), flush=True)

        # ---- run: the daemon loop for several cycles
        run = Figure(f"`sliceops-monitor run` peak RSS (VmHWM) after {args.cycles} cycles, {n} slices"
                     + (", /metrics served and scraped each cycle" if args.metrics else ""), unit="MB",
                     goal=GOAL_MB)
        for _ in range(3):
            log = work / "run.log"
            with log.open("w") as logf:
                proc = subprocess.Popen([args.python, *entry, "run"], env=env, stdout=logf, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + args.cycles * args.interval + 120
            scraped = 0
            while time.monotonic() < deadline and proc.poll() is None:
                cycles = len(CYCLE.findall(log.read_text()))
                if args.metrics and cycles > scraped:
                    import urllib.request
                    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
                        r.read()
                    scraped = cycles
                if cycles >= args.cycles:
                    break
                time.sleep(0.5)
            if proc.poll() is not None:
                raise SystemExit(f"sliceops-monitor run exited {proc.returncode}: {log.read_text()[-2000:]}")
            peak = status_kb(proc.pid)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            lines = [ln for ln in log.read_text().splitlines() if CYCLE.search(ln)]
            run.add(peak["VmHWM"] / 1024)
            run.note = (f"RSS at the end {peak['VmRSS'] / 1024:.1f} MB (anon {peak['RssAnon'] / 1024:.1f}, "
                        f"file {peak['RssFile'] / 1024:.1f}), threads {peak['Threads']}; last: `{lines[-1].split(': ', 1)[-1] if lines else '?'}`")
            print(run.line(), flush=True)
        figures += [run] if args.no_once else [once, run]
    finally:
        print("removing containers ...", flush=True)

        def remove(c):
            try:
                c.remove(force=True)
            except Exception:
                pass

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(remove, started))
        for cgroup in cgroups:  # the engine leaves cgroupfs parents behind
            remove_cgroup(cgroup)
        for c in client.containers.list(all=True, filters={"label": f"{LABEL}={run_id}"}):
            remove(c)
        if cluster is not None:
            try:
                cluster.stop()
            finally:
                cluster.remove()
        subprocess.run(["rm", "-rf", str(work)])
    print(table(figures))
    append_results("monitor_memory", command_line(),
                   "\n".join([f"{n} busybox containers serving /health (host network), throwaway PostgreSQL with the "
                              f"gateway schema; the real CLI (`sliceops_monitor.cli:main`, the console script's "
                              f"entry point) with PYTHONPATH=monitor.", "", *[f"- {s}" for s in notes], "",
                              table(figures)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
