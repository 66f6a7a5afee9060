"""Prometheus metrics: the latest cycle's figures in the text exposition format, served on
127.0.0.1:<metrics_port> by prometheus_client (Debian's python3-prometheus-client).

The cycle only hands over references (`observe`, `written`); the metric families are built
when Prometheus scrapes, in the server's thread, from those immutable snapshots. So
collecting costs the cycle nothing whatever the fleet size, and a scrape never sees half
a cycle. Names follow cAdvisor (`..._memory_working_set_bytes`,
`..._spec_memory_limit_bytes`, `..._cpu_usage_seconds_total`, `..._fs_usage_bytes`,
`..._fs_limit_bytes`) and postgres_exporter (`..._up`) under the `sliceops_` namespace;
the list with their meaning is in monitor/README.md.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import MetricsHandler

from . import __version__
from .backups import ResultsFile
from .config import MonitorConfig
from .samples import CycleBatch

logger = logging.getLogger(__name__)

ADDRESS = "127.0.0.1"  # never another interface: the figures name every tenant's slice
SLICE_LABELS = ["slice", "container"]


@dataclass(frozen=True)
class _Cycle:
    """What the last cycle measured, with the configuration it measured it under."""

    batch: CycleBatch
    config: MonitorConfig
    duration: float
    buffered: int
    finished_at: float  # Unix time


class FleetCollector:
    """A prometheus_client collector over the latest cycle (read-only, thread-safe by replacement)."""

    def __init__(self) -> None:
        self._cycle: _Cycle | None = None
        self._cycles = 0
        # slice id -> Unix time of its newest row in gateway.telemetry; replaced, never
        # mutated, so the scrape thread can iterate it while a cycle writes.
        self._written: Mapping[int, float] = {}
        self._gateway_counts: tuple[int | None, int | None] = (None, None)
        # slice id -> consecutive cycles whose /health did not answer (alert: 3 cycles).
        self._down_cycles: Mapping[int, int] = {}
        self._backups = ResultsFile(None)

    # -- the monitor's side (the cycle thread)

    def observe(self, batch: CycleBatch, config: MonitorConfig, duration: float, buffered: int) -> None:
        down = self._down_cycles
        self._down_cycles = {s.slice_id: 0 if s.answered else down.get(s.slice_id, 0) + 1 for s in batch.slices}
        self._cycle = _Cycle(batch, config, duration, buffered, time.time())
        self._cycles += 1

    def written(self, batch: CycleBatch, unknown: tuple[int, ...], active: int | None, total: int | None) -> None:
        """A batch reached the database (maybe late, from the buffer): its slices' rows exist."""
        at = batch.collected_at.timestamp()
        skip = set(unknown)
        newer = dict(self._written)
        for s in batch.slices:
            if s.slice_id not in skip and at > newer.get(s.slice_id, 0.0):
                newer[s.slice_id] = at
        self._written = newer
        if total is not None:
            self._gateway_counts = (active, total)

    def backup_results(self, path: str | None) -> None:
        """Where the backup agent records its results (the configuration's backup_state)."""
        if path != self._backups.path:
            self._backups = ResultsFile(path)

    def forget(self, keep: set[int]) -> None:
        """Drop slices no longer configured (a reload), so their series end."""
        self._written = {k: v for k, v in self._written.items() if k in keep}

    # -- prometheus_client's side (the scrape thread)

    def describe(self) -> list:
        # Without describe() the registry would call collect() at registration.
        return []

    def collect(self) -> Iterator:
        cycle, written, cycles, down = self._cycle, self._written, self._cycles, self._down_cycles
        info = InfoMetricFamily("sliceops_monitor", "The monitor serving these metrics.")
        instance = cycle.config.instance if cycle else ""
        info.add_metric([], {"sliceops_instance": instance, "version": __version__})
        yield info
        yield CounterMetricFamily("sliceops_monitor_cycles", "Cycles run since the monitor started.", value=cycles)
        if cycle is None:
            return
        yield GaugeMetricFamily("sliceops_monitor_cycle_duration_seconds",
                                "Wall time of the last cycle.", value=cycle.duration)
        yield GaugeMetricFamily("sliceops_monitor_last_cycle_timestamp_seconds",
                                "Unix time the last cycle finished.", value=cycle.finished_at)
        yield GaugeMetricFamily("sliceops_monitor_interval_seconds",
                                "Seconds between cycles (monitor.interval).", value=cycle.config.interval)
        yield GaugeMetricFamily("sliceops_monitor_buffered_cycles",
                                "Cycles measured but not yet written to PostgreSQL.", value=cycle.buffered)
        yield from self._slices(cycle, written, down)
        yield from self._backup_times(cycle)
        yield from self._server(cycle)

    def _backup_times(self, cycle: _Cycle) -> Iterator:
        """From the backup agent's results file, for every configured slice whose backup part is
        here (and every slice elsewhere whose part this host takes: backup_dumps, backup_data).
        Once backups have run on the host (the file exists), a slice without a verified one shows 0, so "no good
        backup in 26 h" fires for it too; before that the families are absent."""
        self.backup_results(cycle.config.backup_state)
        times = self._backups.read()
        if times is None:
            return
        good = GaugeMetricFamily("sliceops_slice_backup_last_success_timestamp_seconds",
                                 "Unix time the slice's last verified backup started (0: none yet).",
                                 labels=SLICE_LABELS)
        copy_failed = GaugeMetricFamily("sliceops_slice_backup_copy_failed",
                                        "1 when the latest copy of the slice's backups off the host failed.",
                                        labels=SLICE_LABELS)
        # The database host of a fleet serves, beside its own slices', the dump part of every
        # slice elsewhere (its slice host serves the data part): a failed or stale dump alerts
        # as a local backup does. The data part of a slice whose move has not finished is
        # served by its old host (backup_data), not by the new one (backup false).
        config = cycle.config
        for conf in [s for s in config.slices if s.backup] + list(config.backup_dumps + config.backup_data):
            labels = [str(conf.id), conf.container]
            good.add_metric(labels, times.slices.get(conf.id) or 0)
            if conf.id in times.copy_failed:
                copy_failed.add_metric(labels, 1 if times.copy_failed[conf.id] else 0)
        yield good
        yield copy_failed
        if not times.gateway_here:
            return  # a pure slice host: the database host's monitor serves the gateway's
        yield GaugeMetricFamily("sliceops_gateway_backup_last_success_timestamp_seconds",
                                "Unix time the gateway database's last verified backup started (0: none yet).",
                                value=times.gateway or 0)

    def _slices(self, cycle: _Cycle, written: Mapping[int, float], down_cycles: Mapping[int, int]) -> Iterator:
        def family(kind, name, doc):
            return kind(name, doc, labels=SLICE_LABELS)

        mem = family(GaugeMetricFamily, "sliceops_slice_memory_working_set_bytes",
                     "Container memory as docker stats shows it (usage minus inactive file cache).")
        limit = family(GaugeMetricFamily, "sliceops_slice_spec_memory_limit_bytes",
                       "Container memory limit (absent when unlimited).")
        cpu = family(CounterMetricFamily, "sliceops_slice_cpu_usage_seconds",
                     "Cumulative CPU time the container used.")
        disk = family(GaugeMetricFamily, "sliceops_slice_fs_usage_bytes",
                      "Bytes allocated under the slice's data directory (du -s).")
        quota = family(GaugeMetricFamily, "sliceops_slice_fs_limit_bytes",
                       "Disk quota of the slice's data directory (absent when it has none).")
        connected = family(GaugeMetricFamily, "sliceops_slice_whatsapp_connected",
                           "1 when the backend reports wa_state CONNECTED.")
        up = family(GaugeMetricFamily, "sliceops_slice_up",
                    "1 when the slice's /health answered 200 with a wa_state in the last cycle.")
        down = family(GaugeMetricFamily, "sliceops_slice_down_cycles",
                      "Consecutive cycles, up to the last, in which /health did not answer (0 when up).")
        state = GaugeMetricFamily("sliceops_slice_whatsapp_state",
                                  "1 for the slice's wa_state in the last cycle (or why it is unknown).",
                                  labels=SLICE_LABELS + ["state"])
        last = family(GaugeMetricFamily, "sliceops_slice_last_telemetry_timestamp_seconds",
                      "Unix time of the slice's newest row written to gateway.telemetry.")
        by_id = {s.id: s for s in cycle.config.slices}
        for sample in cycle.batch.slices:
            conf = by_id.get(sample.slice_id)
            labels = [str(sample.slice_id), conf.container if conf else ""]
            if sample.rss_bytes is not None:
                mem.add_metric(labels, sample.rss_bytes)
            if sample.memory_limit_bytes is not None:
                limit.add_metric(labels, sample.memory_limit_bytes)
            if sample.cpu_ns is not None:
                cpu.add_metric(labels, sample.cpu_ns / 1e9)
            if sample.disk_bytes is not None:
                disk.add_metric(labels, sample.disk_bytes)
            if conf is not None and conf.disk_quota_bytes is not None:
                quota.add_metric(labels, conf.disk_quota_bytes)
            connected.add_metric(labels, 1 if sample.wa_state == "CONNECTED" else 0)
            up.add_metric(labels, 1 if sample.answered else 0)
            down.add_metric(labels, down_cycles.get(sample.slice_id, 0))
            state.add_metric(labels + [sample.wa_state], 1)
            if sample.slice_id in written:
                last.add_metric(labels, written[sample.slice_id])
        yield from (mem, limit, cpu, disk, quota, connected, up, down, state, last)

    def _server(self, cycle: _Cycle) -> Iterator:
        v = cycle.batch.server
        figures = [] if v is None else [
            ("memory_used_bytes", "RAM in use (total minus available).", v.ram_used_bytes),
            ("memory_total_bytes", "RAM installed.", v.ram_total_bytes),
            ("swap_used_bytes", "Swap in use.", v.swap_used_bytes),
            ("swap_total_bytes", "Swap configured.", v.swap_total_bytes),
            ("cpu_usage_ratio", "Busy share of all cores since the previous cycle (1 = every core busy).",
             None if v.cpu_percent is None else v.cpu_percent / 100.0),
            ("disk_used_bytes", "Used bytes of the filesystem holding disk_path.", v.disk_used_bytes),
            ("disk_total_bytes", "Size of the filesystem holding disk_path.", v.disk_total_bytes),
        ]
        active, total = self._gateway_counts
        figures += [
            ("slices_assigned", "gateway.slices rows with status assigned (server_telemetry.active_slices).", active),
            ("slices", "gateway.slices rows (server_telemetry.total_slices).", total),
        ]
        for name, doc, value in figures:
            if value is not None:
                yield GaugeMetricFamily(f"sliceops_server_{name}", doc, value=value)


class Exporter:
    """The collector plus the HTTP server that serves it on 127.0.0.1:<metrics_port>."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.collector = FleetCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None

    @property
    def serving(self) -> bool:
        return self._server is not None

    def serve(self) -> bool:
        """Listen if not yet listening; False (logged once per distinct error) if the port is taken."""
        if self._server is not None or not self.port:
            return self._server is not None
        try:
            server = ThreadingHTTPServer((ADDRESS, self.port), MetricsHandler.factory(self.registry))
        except OSError as exc:
            message = f"cannot serve metrics on {ADDRESS}:{self.port}: {exc.strerror or exc}"
            if message != self._last_error:
                logger.error("%s; retrying every cycle", message)
            self._last_error = message
            return False
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
        self._thread.start()
        self._last_error = None
        logger.info("serving Prometheus metrics on http://%s:%d/metrics", ADDRESS, self.port)
        return True

    def set_port(self, port: int) -> None:
        """A reload: move to another port (0 stops serving)."""
        if port != self.port:
            self.stop()
            self.port = port
            self.serve()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            self._thread = None
