"""The `sliceops-monitor` command: `run` (the daemon loop), `once` (one cycle,
printed and written) and `prune` (retention now). A user's mistake is one line
on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from . import __version__
from . import config as config_mod
from .errors import ConfigError, DatabaseError, MonitorError
from .samples import CycleBatch

logger = logging.getLogger("sliceops_monitor")

# Exit statuses: 0 done; 1 the database or engine failed; 2 the config or usage is wrong.
EXIT_FAILED = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sliceops-monitor", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=config_mod.DEFAULT_PATH, help="JSON config (default %(default)s)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="{run,once,prune}")
    sub.add_parser("run", help="measure and write every interval until SIGTERM (SIGHUP reloads)")
    once = sub.add_parser("once", help="one cycle: print what was measured and write it")
    once.add_argument("--json", action="store_true", help="print JSON instead of a table")
    once.add_argument("--dry-run", action="store_true", help="measure and print, write nothing")
    once.add_argument("--sample", type=float, default=1.0, metavar="SECONDS",
                      help="CPU sampling window (default %(default)s)")
    sub.add_parser("prune", help="delete telemetry older than retention_days now")
    return p


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _human(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def batch_table(batch: CycleBatch, containers: dict[int, str], quotas: dict[int, int | None] | None = None) -> str:
    """`quotas`: slice id -> disk quota in bytes; the disk column then reads `used / quota`."""
    quotas = quotas or {}
    rows = [("slice", "container", "wa_state", "rss", "cpu%", "disk", "phone")]
    for s in batch.slices:
        disk = _human(s.disk_bytes)
        if quotas.get(s.slice_id):
            disk += f" / {_human(quotas[s.slice_id])}"
        rows.append((str(s.slice_id), containers.get(s.slice_id, "?"), s.wa_state, _human(s.rss_bytes),
                     "-" if s.cpu_percent is None else f"{s.cpu_percent:.1f}", disk,
                     s.wa_phone or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    v = batch.server
    if v is not None:
        cpu = "-" if v.cpu_percent is None else f"{v.cpu_percent:.1f}%"
        lines.append(f"server: ram {_human(v.ram_used_bytes)} / {_human(v.ram_total_bytes)}, "
                     f"swap {_human(v.swap_used_bytes)} / {_human(v.swap_total_bytes)}, cpu {cpu}, "
                     f"disk {_human(v.disk_used_bytes)} / {_human(v.disk_total_bytes)}")
    else:
        lines.append("server: not measured")
    return "\n".join(lines)


def batch_json(batch: CycleBatch, status: str, written: int, buffered: int,
               quotas: dict[int, int | None] | None = None) -> str:
    quotas = quotas or {}
    doc = {
        "cycle": batch.number,
        "collected_at": batch.collected_at.isoformat(),
        "slices": [{
            "slice_id": s.slice_id, "wa_state": s.wa_state, "rss_bytes": s.rss_bytes,
            "cpu_percent": s.cpu_percent, "disk_bytes": s.disk_bytes,
            "disk_quota_bytes": quotas.get(s.slice_id), "wa_phone": s.wa_phone,
            "health_answered": s.answered,
        } for s in batch.slices],
        "server": None if batch.server is None else {
            k: getattr(batch.server, k) for k in batch.server.__slots__},
        "written_rows": written,
        "buffered_cycles": buffered,
        "status": status,
    }
    return json.dumps(doc, indent=2)


def _once(cfg: config_mod.MonitorConfig, args) -> int:
    from .cycle import Monitor

    monitor = Monitor(cfg, dry_run=args.dry_run)
    try:
        # CPU figures need two readings; disk figures are measured here, not in the background.
        monitor.collector.prime()
        time.sleep(max(0.0, args.sample))
        monitor.collector.disk.measure_all_now()
        monitor.next_prune = float("inf")  # `once` measures; `prune` prunes
        status = monitor.run_cycle()
        batch = monitor.last_batch
        quotas = {s.id: s.disk_quota_bytes for s in cfg.in_service}
        if batch is None:
            print(status, file=sys.stderr)
            return EXIT_FAILED
        if args.json:
            logger.info("%s", status)  # stdout carries only the JSON document
            print(batch_json(batch, status, monitor.last_written, len(monitor.outbox), quotas))
        else:
            print(batch_table(batch, {s.id: s.container for s in cfg.in_service}, quotas))
            print(status)
        # A one-shot run cannot keep rows for later: unwritten means failed.
        return EXIT_FAILED if len(monitor.outbox) and not args.dry_run else 0
    finally:
        monitor.close()


def _prune(cfg: config_mod.MonitorConfig) -> int:
    from .database import Database

    db = Database(cfg.database)
    try:
        deleted = db.prune(cfg.retention_days)
    finally:
        db.close()
    print(f"deleted {deleted['telemetry']} rows from gateway.telemetry and "
          f"{deleted['server_telemetry']} rows from gateway.server_telemetry "
          f"(older than {cfg.retention_days:g} days)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        cfg = config_mod.load(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"sliceops-monitor: {exc.path}: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        if args.command == "run":
            from .daemon import run

            return run(cfg, args.config)
        if args.command == "once":
            return _once(cfg, args)
        return _prune(cfg)
    except DatabaseError as exc:
        print(f"sliceops-monitor: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except MonitorError as exc:
        print(f"sliceops-monitor: {exc}", file=sys.stderr)
        return EXIT_FAILED
