"""One monitor cycle: collect, write (or buffer), prune when due, and sum it all up
in one status line. A cycle never raises an ordinary exception (patroni ha.py)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Callable, Mapping, Sequence

from .buffer import Outbox
from .collect import CollectNotes, Collector
from .config import MonitorConfig
from .database import Database
from .errors import DatabaseError, DatabaseUnavailable, RowsRejected
from .samples import CycleBatch

logger = logging.getLogger(__name__)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def status_line(number: int, *, slices: int, ok: int, failed: Mapping[str, int], server: bool,
                written: int, buffered: int, elapsed: float, notes: Sequence[str] = ()) -> str:
    """The cycle in one line: "cycle 42: 3 slices (3 ok), server row, wrote 4 rows, 0 buffered, 0.021s".

    ok counts slices whose /health answered; failed counts the others by the
    wa_state written for them; notes are short extra facts ("database unavailable").
    """
    text = f"cycle {number}: {_plural(slices, 'slice')}"
    if slices:
        detail = [f"{ok} ok"] + [f"{count} {state}" for state, count in sorted(failed.items()) if count]
        text += f" ({', '.join(detail)})"
    text += ", server row" if server else ", no server row"
    text += f", wrote {_plural(written, 'row')}, {buffered} buffered"
    for note in notes:
        text += f", {note}"
    return text + f", {elapsed:.3f}s"


def failed_status_line(number: int, exc: BaseException, elapsed: float) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"cycle {number}: failed ({type(exc).__name__}{': ' + message[:200] if message else ''}), {elapsed:.3f}s"


class Monitor:
    """The daemon's state between cycles: collector, database, buffer and prune schedule."""

    def __init__(self, config: MonitorConfig, *, collector: Collector | None = None,
                 database: Database | None = None, clock: Callable[[], float] = time.monotonic,
                 dry_run: bool = False):
        self.config = config
        self.dry_run = dry_run
        self.clock = clock
        self.collector = collector or Collector(config)
        # A down database must not hold a cycle for longer than half its beat.
        self.database = database or Database(config.database,
                                             retry_deadline=min(config.database.retry_deadline, config.interval / 2))
        self.outbox = Outbox(config.buffer_cycles)
        self.number = 0
        # Prune on the first cycle, then every prune_interval; never where `prune` is off (a
        # slice host's monitor: the database host's monitor prunes every host's rows).
        self.next_prune = clock() if config.prune else float("inf")
        # The database host's monitor: database sizes on the first cycle, then every disk_interval.
        self.next_sizes = clock() if config.database_sizes else float("inf")
        self.last_batch: CycleBatch | None = None
        self.last_written = 0
        self._db_down_since: float | None = None
        self._last_db_error: str | None = None
        # The Prometheus collector (metrics.FleetCollector) when metrics are served: it is
        # handed references to what the cycle measured and wrote, nothing more.
        self.metrics = None

    def start(self) -> None:
        self.collector.start()

    def close(self) -> None:
        self.collector.close()
        self.database.close()

    def run_cycle(self) -> str:
        """Measure, write and maybe prune; returns the status line. Never raises Exception."""
        self.number += 1
        start = self.clock()
        try:
            return self._cycle(start)
        except Exception as exc:
            logger.exception("cycle %d failed", self.number)
            return failed_status_line(self.number, exc, self.clock() - start)

    def _cycle(self, start: float) -> str:
        batch, cnotes = self.collector.collect(self.number)
        self.last_batch = batch
        if self.dry_run:
            written, db_note = 0, "dry run"
        else:
            self.outbox.push(batch)
            written, db_note = self.flush()
        self.last_written = written
        notes = self._notes(cnotes)
        if db_note:
            notes.append(db_note)
        if db_note is None and self.clock() >= self.next_prune:
            pruned = self.prune()
            if pruned is not None:
                notes.append(f"pruned {_plural(sum(pruned.values()), 'row')}")
        if db_note is None and self.clock() >= self.next_sizes:
            sized = self.record_database_sizes()
            if sized is not None:
                notes.append(f"sized {_plural(sized, 'database')}")
        failed = Counter(s.wa_state for s in batch.slices if not s.answered)
        elapsed = self.clock() - start
        if self.metrics is not None:
            self.metrics.observe(batch, self.config, elapsed, len(self.outbox))
        return status_line(self.number, slices=len(batch.slices), ok=len(batch.slices) - sum(failed.values()),
                           failed=failed, server=batch.server is not None, written=written,
                           buffered=len(self.outbox), elapsed=elapsed, notes=notes)

    @staticmethod
    def _notes(cnotes: CollectNotes) -> list[str]:
        notes = []
        if cnotes.stale_disk:
            notes.append(f"{len(cnotes.stale_disk)} disk figures stale")
        return notes

    def flush(self) -> tuple[int, str | None]:
        """Write buffered cycles oldest first; (rows written, note if something is left)."""
        written = 0
        replayed = 0
        while (batch := self.outbox.oldest()) is not None:
            try:
                result = self.database.write(batch)
            except DatabaseUnavailable as exc:
                if self._db_down_since is None:
                    self._db_down_since = self.clock()
                    logger.warning("PostgreSQL unavailable, buffering (up to %d cycles): %s", self.outbox.limit, exc)
                return written, "database unavailable"
            except RowsRejected as exc:
                # Kept, this cycle would block every later one until it fell out of the buffer.
                self.outbox.pop_oldest()
                self.outbox.dropped_cycles += 1
                self.outbox.dropped_rows += batch.rows
                logger.error("PostgreSQL refused the rows of cycle %d; dropped them: %s", batch.number, exc)
                continue
            except DatabaseError as exc:
                # The connection is fine but the statement is not (grants, schema): keep
                # the rows, say it once per distinct error, and try again next cycle.
                if str(exc) != self._last_db_error:
                    logger.error("writing to PostgreSQL failed, rows kept in the buffer: %s", exc)
                self._last_db_error = str(exc)
                return written, "database error"
            self.outbox.pop_oldest()
            written += result.rows
            replayed += 1
            if self.metrics is not None:
                try:
                    self.metrics.written(batch, result.unknown_slices, result.active_slices, result.total_slices)
                except Exception:  # the rows are written; a metrics fault must not write them twice
                    logger.exception("recording written rows for the metrics failed")
            if result.unknown_slices:
                logger.warning("slices %s are configured but not in gateway.slices: their telemetry is not written",
                               ", ".join(map(str, result.unknown_slices)))
        if self._db_down_since is not None:
            logger.info("PostgreSQL is back after %.0fs: wrote %d buffered cycle(s)",
                        self.clock() - self._db_down_since, replayed)
        self._db_down_since = None
        self._last_db_error = None
        return written, None

    def prune(self) -> dict[str, int] | None:
        """Prune now; the counts per table, or None (logged) if the database failed."""
        try:
            deleted = self.database.prune(self.config.retention_days)
        except DatabaseError as exc:
            logger.warning("pruning telemetry failed, will retry next cycle: %s", exc)
            return None
        self.next_prune = self.clock() + self.config.prune_interval
        logger.info("pruned %d telemetry and %d server_telemetry rows older than %g days",
                    deleted["telemetry"], deleted["server_telemetry"], self.config.retention_days)
        return deleted

    def record_database_sizes(self) -> int | None:
        """Measure every slice database's size now; how many, or None (logged) if it failed."""
        try:
            sized = self.database.record_database_sizes()
        except DatabaseError as exc:
            # Not every cycle: a failure waits for the next disk_interval like a success.
            self.next_sizes = self.clock() + self.config.disk_interval
            logger.warning("recording database sizes failed, will retry in %gs: %s", self.config.disk_interval, exc)
            return None
        self.next_sizes = self.clock() + self.config.disk_interval
        return sized

    def reload(self, config: MonitorConfig) -> None:
        """Apply a new configuration between cycles, keeping the buffer."""
        old = self.config
        if config.database != old.database or config.interval != old.interval:
            self.database.close()
            self.database = Database(config.database,
                                     retry_deadline=min(config.database.retry_deadline, config.interval / 2))
        self.collector.reconfigure(config)
        self.outbox.resize(config.buffer_cycles)
        if self.metrics is not None:
            self.metrics.forget({s.id for s in config.in_service})
        if not config.database_sizes:
            self.next_sizes = float("inf")
        elif not old.database_sizes:
            self.next_sizes = self.clock()  # turned on: measure with the next cycle
        elif config.disk_interval != old.disk_interval:
            self.next_sizes = min(self.next_sizes, self.clock() + config.disk_interval)
        if config.prune_interval != old.prune_interval:
            self.next_prune = (min(self.next_prune, self.clock() + config.prune_interval)
                               if config.prune else float("inf"))
        self.config = config
