"""One cycle's measurements: a row for every slice in service (never skipped: what
could not be measured says why in wa_state) and one row for the server."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import psutil

from .cgroups import MISSING, STOPPED, CgroupReader, cpu_percent
from .config import MonitorConfig
from .disk import DiskWorker
from .health import HealthChecker
from .samples import CONTAINER_MISSING, CONTAINER_STOPPED, CycleBatch, ServerSample, SliceSample

logger = logging.getLogger(__name__)


@dataclass
class CollectNotes:
    """What the status line says about how collection went."""

    states: Counter = field(default_factory=Counter)
    answered: int = 0
    stale_disk: list[tuple[int, float]] = field(default_factory=list)
    server_error: str | None = None


class Collector:
    """Measures the slices in service and the server; keeps the previous CPU readings between cycles."""

    def __init__(self, config: MonitorConfig, *, cgroups: CgroupReader | None = None, health: HealthChecker | None = None,
                 disk: DiskWorker | None = None, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.cgroups = cgroups or CgroupReader(config.cgroup_root)
        self.health = health or HealthChecker(config.health_timeout, config.health_workers)
        self.disk = disk or DiskWorker(config.disk_interval)
        self.clock = clock
        self.disk.set_dirs({s.id: s.data_dir for s in config.in_service})
        # slice id -> (cpu ns, monotonic s) of the previous reading of its cgroup.
        self._prev_cpu: dict[int, tuple[int, float]] = {}
        # psutil's first call has nothing to compare with and returns 0.0; start its clock now.
        psutil.cpu_percent(interval=None)

    def start(self) -> None:
        self.disk.start()

    def reconfigure(self, config: MonitorConfig) -> None:
        """Take a reloaded config without losing CPU baselines or disk figures."""
        old, self.config = self.config, config
        if config.cgroup_root != old.cgroup_root:
            self.cgroups = CgroupReader(config.cgroup_root)
            self._prev_cpu.clear()
        if (config.health_timeout, config.health_workers) != (old.health_timeout, old.health_workers):
            self.health.close()
            self.health = HealthChecker(config.health_timeout, config.health_workers)
        self.disk.refresh = config.disk_interval
        self.disk.set_dirs({s.id: s.data_dir for s in config.in_service})

    def close(self) -> None:
        self.disk.stop()
        self.health.close()

    def prime(self) -> None:
        """Take CPU readings now so the next collect() can report CPU use (for `once`)."""
        psutil.cpu_percent(interval=None)
        for s in self.config.in_service:
            reading = self.cgroups.read(s.cgroup)
            if reading.cpu_ns is not None:
                self._prev_cpu[s.id] = (reading.cpu_ns, self.clock())

    @property
    def stale_after(self) -> float:
        # The worker revisits a directory every disk_interval; twice that (and at least
        # two cycles) means it is stuck or the disk is slow.
        return max(2 * self.config.disk_interval, 2 * self.config.interval)

    def collect(self, number: int) -> tuple[CycleBatch, CollectNotes]:
        notes = CollectNotes()
        batch = CycleBatch(number, datetime.now(timezone.utc))
        slices = self.config.in_service

        samples: list[SliceSample] = []
        to_check: list[SliceSample] = []
        ports: list[int] = []
        live: dict[int, tuple[int, float]] = {}
        for s in slices:
            reading = self.cgroups.read(s.cgroup)
            sample = SliceSample(s.id, CONTAINER_MISSING)
            if reading.state == MISSING:
                sample.wa_state = CONTAINER_MISSING
            elif reading.state == STOPPED:
                sample.wa_state = CONTAINER_STOPPED
            else:
                sample.rss_bytes = reading.memory_bytes
                sample.memory_limit_bytes = reading.memory_limit
                sample.cpu_ns = reading.cpu_ns
                if reading.cpu_ns is not None:
                    now = self.clock()
                    sample.cpu_percent = cpu_percent(self._prev_cpu.get(s.id), reading.cpu_ns, now)
                    live[s.id] = (reading.cpu_ns, now)
                to_check.append(sample)
                ports.append(s.port)
            value, age = self.disk.get(s.id)
            sample.disk_bytes = value
            if age is not None and age > self.stale_after:
                notes.stale_disk.append((s.id, age))
            samples.append(sample)
        # Only slices running this cycle keep a CPU baseline.
        self._prev_cpu = live

        for sample, result in zip(to_check, self.health.check_all(ports)):
            sample.wa_state = result.state
            sample.answered = result.answered
            sample.wa_phone = result.phone
            if not result.answered:
                logger.debug("slice %d: %s (%s)", sample.slice_id, result.state, result.detail)

        for sample in samples:
            notes.states[sample.wa_state] += 1
            notes.answered += sample.answered
        if notes.stale_disk:
            oldest = max(notes.stale_disk, key=lambda t: t[1])
            logger.warning("disk figures stale for %d slice(s); oldest is slice %d at %.0fs",
                           len(notes.stale_disk), oldest[0], oldest[1])
        batch.slices = samples

        try:
            batch.server = self.server_sample()
        except Exception as exc:  # psutil on an odd kernel must not cost the slice rows
            logger.exception("server figures failed")
            notes.server_error = str(exc)
        return batch, notes

    def server_sample(self) -> ServerSample:
        vm = psutil.virtual_memory()
        sw = psutil.swap_memory()
        try:
            du = psutil.disk_usage(self.config.disk_path)
            disk_used, disk_total = du.used, du.total
        except OSError as exc:
            logger.warning("disk figures of %s unavailable: %s", self.config.disk_path, exc)
            disk_used = disk_total = None
        return ServerSample(
            # "used" as free(1) shows it since procps-ng 4: everything not available.
            ram_used_bytes=vm.total - vm.available,
            ram_total_bytes=vm.total,
            swap_used_bytes=sw.used,
            swap_total_bytes=sw.total,
            # System-wide, since the previous call (the previous cycle); 100 = all cores busy.
            cpu_percent=psutil.cpu_percent(interval=None),
            disk_used_bytes=disk_used,
            disk_total_bytes=disk_total,
            host=self.config.host,
        )
