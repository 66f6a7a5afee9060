"""The `run` loop (after patroni daemon.py): signal handlers only set flags, cycles
run on a fixed monotonic beat, SIGHUP reloads the config, SIGTERM stops after
the cycle in progress has written its rows."""

from __future__ import annotations

import logging
import os
import select
import signal
import time
from typing import Callable

from . import config as config_mod
from .cycle import Monitor
from .errors import ConfigError
from .sdnotify import Notifier

logger = logging.getLogger(__name__)


class Beat:
    """A fixed beat on a monotonic clock: next_run += interval; an overrun is logged, not piled up."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.clock = clock
        self.next_run = clock()  # the first cycle runs at once

    def remaining(self) -> float:
        return max(0.0, self.next_run - self.clock())

    def advance(self) -> bool:
        """Move to the next beat after a cycle; False (and a warning) if the cycle overran it."""
        self.next_run += self.interval
        now = self.clock()
        if now > self.next_run:
            # Run the next cycle at once and keep the beat from here: missed beats are
            # not made up, so a slow spell never turns into a burst of cycles.
            logger.warning("cycle overran its %gs beat by %.3fs; next cycle starts now",
                           self.interval, now - self.next_run)
            self.next_run = now
            return False
        return True


class Signals:
    """Flags set by signal handlers, and a wake-up pipe so a sleep ends when one arrives."""

    def __init__(self) -> None:
        self.stop = False
        self.reload = False
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old_fd = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        self._old = {
            signal.SIGTERM: signal.signal(signal.SIGTERM, self._on_stop),
            signal.SIGINT: signal.signal(signal.SIGINT, self._on_stop),
            signal.SIGHUP: signal.signal(signal.SIGHUP, self._on_reload),
        }

    def _on_stop(self, signum, frame) -> None:
        self.stop = True

    def _on_reload(self, signum, frame) -> None:
        self.reload = True

    def sleep(self, seconds: float) -> None:
        """Sleep up to seconds; returns early when a signal arrives."""
        if seconds > 0 and not (self.stop or self.reload):
            try:
                select.select([self._r], [], [], seconds)
            except InterruptedError:
                pass
        try:
            while os.read(self._r, 64):
                pass
        except BlockingIOError:
            pass

    def restore(self) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._old_fd)
        os.close(self._r)
        os.close(self._w)


def _exporter(port: int):
    """The metrics exporter, or None (logged) when prometheus_client is not installed."""
    try:
        from .metrics import Exporter
    except ImportError as exc:
        logger.error("metrics_port is %d but prometheus_client cannot be imported (Debian: "
                     "python3-prometheus-client): %s; running without metrics", port, exc)
        return None
    return Exporter(port)


def run(config: config_mod.MonitorConfig, config_path: str) -> int:
    """The daemon loop; returns the exit status."""
    signals = Signals()
    notifier = Notifier()
    monitor = Monitor(config)
    monitor.start()
    exporter = _exporter(config.metrics_port) if config.metrics_port else None
    if exporter is not None:
        monitor.metrics = exporter.collector
        exporter.serve()
    beat = Beat(config.interval)
    logger.info("monitor %s started: %d slices in service, every %gs, pid %d",
                config.instance, len(config.in_service), config.interval, os.getpid())
    notifier.ready(f"watching {len(config.in_service)} slices")
    try:
        while not signals.stop:
            if signals.reload:
                signals.reload = False
                notifier.reloading()
                try:
                    new = config_mod.load(config_path)
                except ConfigError as exc:
                    logger.error("reload refused, keeping the running config: %s", exc)
                else:
                    monitor.reload(new)
                    beat.interval = new.interval
                    if exporter is None and new.metrics_port:
                        exporter = _exporter(new.metrics_port)
                        if exporter is not None:
                            monitor.metrics = exporter.collector
                    if exporter is not None:
                        exporter.set_port(new.metrics_port)
                    logger.info("reloaded %s: %d slices in service, every %gs",
                                config_path, len(new.in_service), new.interval)
                notifier.ready()
            delay = beat.remaining()
            if delay > 0:
                signals.sleep(delay)
                continue
            status = monitor.run_cycle()
            logger.info("%s", status)
            notifier.watchdog(status)
            if exporter is not None and exporter.port and not exporter.serving:
                exporter.serve()  # the port was taken at start or at the last reload
            beat.advance()
    finally:
        notifier.stopping()
        if exporter is not None:
            exporter.stop()
        if len(monitor.outbox):
            logger.warning("stopping with %d unwritten cycle(s) (%d rows) in the buffer",
                           len(monitor.outbox), monitor.outbox.rows)
        monitor.close()
        signals.restore()
    logger.info("monitor %s stopped after %d cycles", config.instance, monitor.number)
    return 0
