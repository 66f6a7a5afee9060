"""The monitor's PostgreSQL side: one connection with explicit timeouts, one batched
write per table per cycle, and the retention prune.

The connection is re-opened only when it is closed, through the one Retry
helper; psycopg errors leave this module as DatabaseUnavailable (no usable
connection) or DatabaseError (a statement failed on a healthy connection).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import psycopg

from .config import DatabaseConfig
from .errors import DatabaseError, DatabaseUnavailable, RetryFailed, RowsRejected
from .retry import Retry
from .samples import CycleBatch

logger = logging.getLogger(__name__)

# One INSERT from arrays, not COPY: PostgreSQL refuses COPY FROM into a table with row-level
# security (sql/gateway/0005: a slice host's monitor writes only its own slices' rows).
# Measured against COPY: bench/monitor_write_rls.py.
_TELEMETRY_INSERT = """
INSERT INTO gateway.telemetry (slice_id, "timestamp", rss_bytes, wa_state, cpu_percent, disk_bytes)
SELECT v.slice_id, %s, v.rss_bytes, v.wa_state, v.cpu_percent, v.disk_bytes
FROM unnest(%s::integer[], %s::bigint[], %s::text[], %s::numeric[], %s::bigint[])
    AS v(slice_id, rss_bytes, wa_state, cpu_percent, disk_bytes)
"""
_SERVER_INSERT = """
INSERT INTO gateway.server_telemetry
    ("timestamp", ram_used_bytes, ram_total_bytes, swap_used_bytes, swap_total_bytes,
     cpu_percent, disk_used_bytes, disk_total_bytes, host, active_slices, total_slices)
SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s,
       count(*) FILTER (WHERE status = 'assigned'), count(*)
FROM gateway.slices
RETURNING active_slices, total_slices
"""
# GREATEST ignores NULL: a check that did not answer keeps the previous
# last_health_at, and replaying buffered cycles never moves it backwards.
_SLICES_UPDATE = """
UPDATE gateway.slices AS s SET
    last_health_at = GREATEST(s.last_health_at, v.health_at),
    wa_connected = v.wa_connected,
    wa_phone = CASE WHEN v.health_at IS NULL THEN s.wa_phone ELSE v.wa_phone END,
    storage_bytes = COALESCE(v.storage_bytes, s.storage_bytes)
FROM unnest(%s::integer[], %s::timestamptz[], %s::boolean[], %s::text[], %s::bigint[])
    AS v(id, health_at, wa_connected, wa_phone, storage_bytes)
WHERE s.id = v.id
RETURNING s.id
"""
_PRUNE = {
    "telemetry": 'DELETE FROM gateway.telemetry WHERE "timestamp" < now() - make_interval(secs => %s)',
    "server_telemetry": 'DELETE FROM gateway.server_telemetry WHERE "timestamp" < now() - make_interval(secs => %s)',
}


@dataclass(frozen=True)
class WriteResult:
    """Rows one batch put in the database, and configured slices gateway.slices does not know."""

    rows: int
    unknown_slices: tuple[int, ...] = ()
    # gateway.slices counted when the server row was written (None: no server row).
    active_slices: int | None = None
    total_slices: int | None = None


class Database:
    """A single lazily opened connection to the gateway database."""

    def __init__(self, cfg: DatabaseConfig, *, retry_deadline: float | None = None,
                 connect: Callable[..., psycopg.Connection] = psycopg.connect):
        self.cfg = cfg
        self._connect_fn = connect
        self._conn: psycopg.Connection | None = None
        deadline = cfg.retry_deadline if retry_deadline is None else retry_deadline
        self._retry = Retry(deadline=deadline, retry_on=(DatabaseUnavailable,), what=f"PostgreSQL {self.target}")

    @property
    def target(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}/{self.cfg.dbname}"

    def _password(self) -> str | None:
        if self.cfg.password_file is None:
            return None  # peer authentication over the unix socket
        try:
            with open(self.cfg.password_file, encoding="utf-8") as f:
                return f.read().rstrip("\r\n")
        except OSError as exc:
            raise DatabaseUnavailable(f"cannot read password_file {self.cfg.password_file}: {exc.strerror}") from exc

    def connection_kwargs(self) -> dict:
        kwargs = {
            "host": self.cfg.host,
            "port": self.cfg.port,
            "dbname": self.cfg.dbname,
            "user": self.cfg.user,
            "connect_timeout": self.cfg.connect_timeout,
            "application_name": self.cfg.application_name,
            "options": f"-c statement_timeout={int(self.cfg.statement_timeout * 1000)}",
        }
        for key in ("sslmode", "sslrootcert"):
            if getattr(self.cfg, key) is not None:
                kwargs[key] = getattr(self.cfg, key)
        password = self._password()
        if password is not None:
            kwargs["password"] = password
        return kwargs

    def _connection(self) -> psycopg.Connection:
        """The open connection, or one new attempt to open it."""
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            self._conn = self._connect_fn(**self.connection_kwargs())
        except psycopg.Error as exc:
            raise DatabaseUnavailable(f"cannot connect to {self.target}: {str(exc).strip()}") from exc
        logger.info("connected to PostgreSQL %s as %s", self.target, self.cfg.user)
        return self._conn

    def _wrap(self, conn: psycopg.Connection, exc: psycopg.Error, doing: str) -> DatabaseError:
        message = f"{doing}: {str(exc).strip() or type(exc).__name__}"
        if conn.closed:
            return DatabaseUnavailable(message)
        if isinstance(exc, (psycopg.DataError, psycopg.IntegrityError)):
            return RowsRejected(message)
        return DatabaseError(message)

    def _retrying(self, func: Callable, *args):
        try:
            return self._retry(func, *args)
        except RetryFailed as exc:
            raise DatabaseUnavailable(str(exc)) from exc

    def write(self, batch: CycleBatch) -> WriteResult:
        """Write one cycle in one transaction: slices update, telemetry rows, server row."""
        return self._retrying(self._write_once, batch)

    def _write_once(self, batch: CycleBatch) -> WriteResult:
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                known: set[int] = set()
                if batch.slices:
                    # One array per column: five parameters and one plan whatever the
                    # fleet size (a VALUES list was 5 parameters per slice, parsed anew).
                    cur.execute(_SLICES_UPDATE, (
                        [s.slice_id for s in batch.slices],
                        [batch.collected_at if s.answered else None for s in batch.slices],
                        [s.wa_state == "CONNECTED" for s in batch.slices],
                        [s.wa_phone for s in batch.slices],
                        [s.disk_bytes for s in batch.slices],
                    ))
                    known = {row[0] for row in cur.fetchall()}
                    # Telemetry references gateway.slices: a slice the deploy configured but
                    # the gateway does not have would fail the whole INSERT, so it is left out
                    # (and reported) rather than taking every other slice's row with it.
                    rows_of = [s for s in batch.slices if s.slice_id in known]
                    if rows_of:
                        cur.execute(_TELEMETRY_INSERT, (
                            batch.collected_at,
                            [s.slice_id for s in rows_of],
                            [s.rss_bytes for s in rows_of],
                            [s.wa_state for s in rows_of],
                            # floats throughout: psycopg types a list by its first value
                            [None if s.cpu_percent is None else float(s.cpu_percent) for s in rows_of],
                            [s.disk_bytes for s in rows_of],
                        ))
                rows = len(known)
                counts = (None, None)
                if batch.server is not None:
                    v = batch.server
                    cur.execute(_SERVER_INSERT, (
                        batch.collected_at, v.ram_used_bytes, v.ram_total_bytes, v.swap_used_bytes,
                        v.swap_total_bytes, v.cpu_percent, v.disk_used_bytes, v.disk_total_bytes, v.host))
                    counts = cur.fetchone()
                    rows += 1
        except psycopg.Error as exc:
            raise self._wrap(conn, exc, f"writing cycle {batch.number}") from exc
        unknown = tuple(sorted({s.slice_id for s in batch.slices} - known))
        return WriteResult(rows, unknown, *counts)

    def prune(self, retention_days: float) -> dict[str, int]:
        """Delete telemetry rows older than the retention; rows deleted per table."""
        return self._retrying(self._prune_once, retention_days)

    def _prune_once(self, retention_days: float) -> dict[str, int]:
        conn = self._connection()
        seconds = retention_days * 86400.0
        deleted: dict[str, int] = {}
        try:
            with conn.transaction(), conn.cursor() as cur:
                # After a long outage the backlog can be large; allow more than a cycle's statements.
                cur.execute("SELECT set_config('statement_timeout', %s, true)",
                            (f"{int(self.cfg.prune_timeout * 1000)}",))
                # One transaction: now() is the same cutoff for both tables.
                for table, query in _PRUNE.items():
                    cur.execute(query, (seconds,))
                    deleted[table] = cur.rowcount
        except psycopg.Error as exc:
            raise self._wrap(conn, exc, "pruning telemetry") from exc
        return deleted

    def record_database_sizes(self) -> int:
        """Replace sliceops_fleet.database_sizes by every slice database's size now; how many.

        pg_database_size stats every file of a database (some 300 per slice database), which is
        why this runs every disk_interval and not every cycle. The function is the superuser's
        (sliceops/operations/postgres/grants.py): the monitor has no CONNECT on the databases.
        """
        return self._retrying(self._record_sizes_once)

    def _record_sizes_once(self) -> int:
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT sliceops.record_database_sizes()")
                return int(cur.fetchone()[0])
        except psycopg.Error as exc:
            raise self._wrap(conn, exc, "recording database sizes") from exc

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None
