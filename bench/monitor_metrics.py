#!/usr/bin/env python3
"""What the Prometheus endpoint costs at N slices, without containers: the cycle's share
(`observe` + `written`, run in the cycle thread) and one scrape (`generate_latest`, run in
the endpoint's thread), on a made-up batch shaped like a real one.

    .venv/bin/python bench/monitor_metrics.py [--slices 500] [--runs 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "monitor")]

from prometheus_client import generate_latest  # noqa: E402

from sliceops_monitor.config import parse  # noqa: E402
from sliceops_monitor.metrics import Exporter  # noqa: E402
from sliceops_monitor.samples import CycleBatch, ServerSample, SliceSample  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, default=500)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    n = args.slices
    config = parse({"slices": [{"id": i, "port": 5000 + i, "container": f"wa-slice-{i}", "data_dir": f"/d/{i}",
                                "disk_quota_bytes": 2**30} for i in range(1, n + 1)]})
    ex = Exporter(0)
    cycle, scrape, size = [], [], 0
    for run in range(args.runs):
        batch = CycleBatch(run, datetime.now(timezone.utc), [
            SliceSample(i, "CONNECTED" if i % 7 else "UNPAIRED", rss_bytes=50 * 2**20 + i, cpu_percent=1.5,
                        disk_bytes=2**20 * i, answered=i % 11 != 0, cpu_ns=10**9 * i, memory_limit_bytes=2**28)
            for i in range(1, n + 1)], ServerSample(1, 2, 3, 4, 5.0, 6, 7))
        t = time.perf_counter()
        ex.collector.observe(batch, config, 0.3, 0)
        ex.collector.written(batch, (), 3, n)
        cycle.append(time.perf_counter() - t)
        t = time.perf_counter()
        body = generate_latest(ex.registry)
        scrape.append(time.perf_counter() - t)
        size = len(body)
    ms = lambda xs: f"median {statistics.median(xs) * 1000:.2f} ms, p95 {sorted(xs)[int(len(xs) * 0.95)] * 1000:.2f} ms"  # noqa: E731
    print(f"{n} slices, {args.runs} runs: in the cycle (observe + written) {ms(cycle)}; "
          f"one scrape (generate_latest) {ms(scrape)}, {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
