"""What `sliceops report` reads: gateway.telemetry and gateway.server_telemetry of a time
window, averaged into at most BUCKETS time buckets on the target, in one psql session.

psql runs on the target as postgres by peer authentication, as the deploy and `sliceops
status` read it (sliceops/remote.py: locally or over the inventory's SSH connection), in a
read-only transaction. Bucketing happens in PostgreSQL, so 7 days of 200 slices (2 million
rows) travel as at most 200 x BUCKETS lines.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from sliceops import psql
from sliceops.errors import RemoteStateError
from sliceops.inventory import Inventory
from sliceops.remote import Target

# Columns of a chart: 288 is 5-minute buckets over a day, 35 minutes over a week.
BUCKETS = 288
_SINCE = re.compile(r"^([1-9][0-9]{0,4})([mhd])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
MAX_SINCE = 366 * 86400

# A bucket's WhatsApp state is the worst one seen in it, so a short outage is not averaged
# away: the container not running, then the backend not answering, then any state of the
# backend's own other than CONNECTED, then CONNECTED; ties go to the latest row.
_SQL = r"""
SET default_transaction_read_only = on;
SET statement_timeout = '120s';
SELECT 'N', extract(epoch FROM now())::bigint;
COPY (
  WITH t AS (
    SELECT slice_id, floor(extract(epoch FROM "timestamp") / :'step'::int)::bigint * :'step'::int AS b,
           rss_bytes, cpu_percent, disk_bytes, wa_state, "timestamp",
           CASE WHEN wa_state = 'CONNECTED' THEN 0
                WHEN wa_state LIKE 'CONTAINER\_%' THEN 3
                WHEN wa_state LIKE 'BACKEND\_%' THEN 2
                ELSE 1 END AS severity
    FROM gateway.telemetry
    WHERE "timestamp" >= now() - make_interval(secs => :'since'::int)
      AND slice_id = ANY (:'ids'::int[])
  )
  SELECT 'S', slice_id, b, max(rss_bytes), round(avg(cpu_percent)::numeric, 2), max(disk_bytes),
         (array_agg(wa_state ORDER BY severity DESC, "timestamp" DESC))[1]
  FROM t GROUP BY slice_id, b ORDER BY slice_id, b
) TO STDOUT;
COPY (
  SELECT 'V', floor(extract(epoch FROM "timestamp") / :'step'::int)::bigint * :'step'::int AS b,
         max(ram_used_bytes), max(ram_total_bytes), max(swap_used_bytes), max(swap_total_bytes),
         round(avg(cpu_percent)::numeric, 2), max(disk_used_bytes), max(disk_total_bytes)
  FROM gateway.server_telemetry
  WHERE "timestamp" >= now() - make_interval(secs => :'since'::int)
  GROUP BY b ORDER BY b
) TO STDOUT;
"""


def parse_since(text: str) -> int:
    """'24h', '7d', '90m' in seconds; ValueError with the accepted forms otherwise."""
    m = _SINCE.match(text.strip())
    if not m or int(m[1]) * _UNIT_SECONDS[m[2]] > MAX_SINCE:
        raise ValueError(f"{text!r} is not a duration like 90m, 24h or 7d (at most 366d)")
    return int(m[1]) * _UNIT_SECONDS[m[2]]


def bucket_seconds(since: int, interval: int) -> int:
    """Whole minutes, at least one monitor interval, so the window has at most BUCKETS buckets."""
    return max(interval, 60 * math.ceil(since / BUCKETS / 60))


@dataclass
class SliceSeries:
    """One slice's buckets: start times (Unix s) and per-bucket figures (NaN / None where unknown)."""

    id: int
    memory_limit: int | None
    disk_quota: int | None
    times: np.ndarray = field(default_factory=lambda: np.empty(0))
    rss: np.ndarray = field(default_factory=lambda: np.empty(0))
    cpu: np.ndarray = field(default_factory=lambda: np.empty(0))
    disk: np.ndarray = field(default_factory=lambda: np.empty(0))
    states: list[str] = field(default_factory=list)


@dataclass
class ServerSeries:
    times: np.ndarray
    ram_used: np.ndarray
    ram_total: np.ndarray
    swap_used: np.ndarray
    swap_total: np.ndarray
    cpu: np.ndarray
    disk_used: np.ndarray
    disk_total: np.ndarray


@dataclass
class Telemetry:
    """The window read from the target: [start, end) in Unix seconds, bucket width `step`."""

    target: str
    instance: str
    end: int
    since: int
    step: int
    slices: dict[int, SliceSeries]
    server: ServerSeries

    @property
    def start(self) -> int:
        return self.end - self.since


def psql_argv(inv: Inventory, since: int, step: int, ids: list[int]) -> list[str]:
    """The deploy's superuser psql (sliceops.psql) over the local socket; the window and slice
    ids as psql variables."""
    return psql.argv(inv.postgres.port, inv.gateway.database, tuples=True, variables={
        "since": int(since), "step": int(step), "ids": "{" + ",".join(str(int(i)) for i in ids) + "}",
    })


def _num(text: str) -> float:
    return math.nan if text == r"\N" else float(text)


def parse(text: str, inv: Inventory, since: int, step: int, ids: list[int]) -> Telemetry:
    """psql's answer: one 'N|now' line, then COPY text rows tagged S (slice) and V (server)."""
    now = None
    rows: dict[int, list[list[str]]] = {i: [] for i in ids}
    server: list[list[float]] = []
    for line in text.splitlines():
        if line.startswith("N|"):
            now = int(line[2:])
        elif line.startswith("S\t"):
            f = line.split("\t")
            if len(f) != 7:
                raise RemoteStateError(f"unexpected telemetry row from psql: {line[:120]!r}")
            rows.setdefault(int(f[1]), []).append(f[2:])
        elif line.startswith("V\t"):
            f = line.split("\t")
            if len(f) != 9:
                raise RemoteStateError(f"unexpected server_telemetry row from psql: {line[:120]!r}")
            server.append([_num(x) for x in f[1:]])
    if now is None:
        raise RemoteStateError(f"unexpected answer from psql: {text.strip()[:120]!r}")
    by_id = {s.id: s for s in inv.slices}
    slices = {}
    for sid in ids:
        s = by_id.get(sid)
        series = SliceSeries(sid, s.memory_bytes if s else None, s.disk_quota_bytes if s else None)
        got = rows.get(sid, [])
        series.times = np.array([float(r[0]) for r in got])
        series.rss = np.array([_num(r[1]) for r in got])
        series.cpu = np.array([_num(r[2]) for r in got])
        series.disk = np.array([_num(r[3]) for r in got])
        series.states = [r[4] if r[4] != r"\N" else "" for r in got]
        slices[sid] = series
    cols = np.array(server, dtype=float).reshape(-1, 8).T
    return Telemetry(inv.target, inv.instance, now, since, step, slices, ServerSeries(*cols))


def read(target: Target, inv: Inventory, since: int, ids: list[int]) -> Telemetry:
    step = bucket_seconds(since, inv.monitor.interval)
    out = target.run(psql_argv(inv, since, step, ids), _SQL)
    return parse(out, inv, since, step, ids)
