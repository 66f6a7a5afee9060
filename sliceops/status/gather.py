"""What `sliceops status` reads from the target: two round trips whatever the fleet size.

One psql session on the target (as postgres, by peer authentication, the way the deploy
reads it) returns one JSON document: every gateway row with its user's email and its newest
telemetry row, and every slice database's size, open connections and stamp. One Docker API
call lists every container of the instance (state and health). Nothing is written.

A database's size is the one the database host's monitor last recorded
(sliceops_fleet.database_sizes, sql/gateway/0006), with its age; only a database the monitor
has not measured yet (a new one, or a gateway before 0006) is measured here, with
pg_database_size, which stats every file of the database (for 200 slice databases most of
what status cost: bench/RESULTS.md, status_fleet).
"""

from __future__ import annotations

import json
import re

from sliceops import moves, psql
from sliceops.errors import RemoteStateError
from sliceops.operations.postgres.stamps import stamp_comment
from sliceops.inventory import SLICE_NAME_PREFIX, Inventory
from sliceops.names import slice_id_of
from sliceops.remote import Target

# Database comments and stat counters live in shared catalogs, so the sizes, connections and
# stamps of every slice database come from the gateway session without connecting to them.
# The newest telemetry row per slice is one index probe each (idx_telemetry_slice_time).
_STATUS_SQL = r"""
SELECT json_build_object(
  'now', extract(epoch FROM now()),
  'slices', (
    SELECT coalesce(json_agg(json_build_object(
      'id', s.id, 'port', s.port, 'status', s.status, 'user_id', s.user_id, 'email', u.email,
      'wa_connected', s.wa_connected, 'wa_phone', s.wa_phone, 'host', to_jsonb(s)->>'host',
      'telemetry', CASE WHEN t.slice_id IS NULL THEN NULL ELSE json_build_object(
        'at', extract(epoch FROM t."timestamp"), 'rss_bytes', t.rss_bytes, 'wa_state', t.wa_state,
        'cpu_percent', t.cpu_percent, 'disk_bytes', t.disk_bytes) END
    ) ORDER BY s.id), '[]')
    FROM gateway.slices s
    LEFT JOIN gateway.users u ON u.id = s.user_id
    LEFT JOIN LATERAL (
      SELECT * FROM gateway.telemetry x WHERE x.slice_id = s.id ORDER BY x."timestamp" DESC LIMIT 1
    ) t ON true),
  'databases', (
    SELECT coalesce(json_agg(json_build_object(
      'name', d.datname, 'size_bytes', @SIZE@, 'size_at', @SIZE_AT@,
      'connections', coalesce(a.n, 0),
      'stamped', coalesce(shobj_description(d.oid, 'pg_database') LIKE 'sliceops %', false),
      'current', shobj_description(d.oid, 'pg_database') IS NOT DISTINCT FROM """ + stamp_comment(
    "'sliceops ' || :'slice_stamp' || ' '", "d.datname"
) + r"""
    ) ORDER BY d.datname), '[]')
    FROM pg_database d @SIZES_JOIN@
    -- pg_stat_activity read once, not once per database
    LEFT JOIN (SELECT datid, count(*) AS n FROM pg_stat_activity GROUP BY datid) a ON a.datid = d.oid
    WHERE d.datname ~ ('^' || :'slice_prefix' || '[0-9]+$'))
);
"""

# The monitor's figure where there is one, else measured now (NULL: measured now).
_RECORDED = _STATUS_SQL.replace("@SIZE@", "coalesce(z.size_bytes, pg_database_size(d.oid))").replace(
    "@SIZE_AT@", "extract(epoch FROM z.measured_at)").replace(
    "@SIZES_JOIN@", "LEFT JOIN sliceops_fleet.database_sizes z ON z.datname = d.datname")
_LIVE = _STATUS_SQL.replace("@SIZE@", "pg_database_size(d.oid)").replace("@SIZE_AT@", "NULL").replace(
    "@SIZES_JOIN@", "")

_HEALTH = re.compile(r"\((healthy|unhealthy|health: starting)\)")


def psql_argv(inv: Inventory, slice_stamp: str) -> list[str]:
    """The deploy's superuser psql (sliceops.psql) over the local socket, read-only here."""
    return psql.argv(inv.postgres.port, inv.gateway.database, tuples=True,
                     variables={"slice_stamp": slice_stamp, "slice_prefix": SLICE_NAME_PREFIX})


# Set before the query: a status read never writes, even by mistake, and never hangs a terminal.
# A gateway before sql/gateway/0006 has no recorded sizes: psql picks the query (\gset prints nothing).
STATUS_SQL = (
    "SET default_transaction_read_only = on;\nSET statement_timeout = '20s';\n"
    "SELECT to_regclass('sliceops_fleet.database_sizes') IS NOT NULL AS recorded_sizes \\gset\n"
    "\\if :recorded_sizes\n" + _RECORDED + "\\else\n" + _LIVE + "\\endif\n"
)


def parse_database_state(text: str) -> dict:
    """The psql answer as {"now": epoch, "slices": {id: row}, "databases": {id: row}}."""
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if len(lines) != 1:
        raise RemoteStateError(f"unexpected answer from psql: {text.strip()[:120]!r}")
    try:
        raw = json.loads(lines[0])
    except ValueError as exc:
        raise RemoteStateError(f"unreadable answer from psql: {lines[0][:120]!r}") from exc
    databases = {}
    for row in raw["databases"]:
        sid = slice_id_of(row["name"])
        if sid is not None:
            databases[sid] = row
    return {"now": raw["now"], "slices": {row["id"]: row for row in raw["slices"]}, "databases": databases}


def parse_containers(listing: list[dict]) -> dict[int, dict]:
    """Docker's container list (GET /containers/json) as {slice id: {"name", "state", "health"}}.

    The list endpoint carries health only inside its Status text ("Up 3 hours (healthy)");
    reading it there keeps the whole fleet to this one call, with no inspect per container.
    """
    out: dict[int, dict] = {}
    for c in listing:
        label = (c.get("Labels") or {}).get("sliceops.slice", "")
        if not label.isdigit():
            continue
        m = _HEALTH.search(c.get("Status") or "")
        health = m[1].replace("health: ", "") if m else None
        out[int(label)] = {
            "name": (c.get("Names") or ["?"])[0].lstrip("/"),
            "state": c.get("State"),
            "health": health,
        }
    return out


def read_database(target: Target, inv: Inventory, slice_stamp: str) -> dict:
    return parse_database_state(target.run(psql_argv(inv, slice_stamp), STATUS_SQL))


def read_containers(target: Target, inv: Inventory) -> dict[int, dict]:
    try:
        listing = target.containers(f"sliceops.instance={inv.instance}")
    except (OSError, ValueError) as exc:  # ValueError: not JSON
        raise RemoteStateError(f"the Docker engine of {target.target} does not answer: {str(exc)[:200]}") from None
    return parse_containers(listing)


def merge_containers(inv: Inventory, per_host: dict[str, dict[int, dict]]) -> dict[int, dict]:
    """Every slice host's containers as one {slice id: container}: a slice's own host wins
    where two hosts hold one (a move under way), then the inventory's order of hosts."""
    out: dict[int, dict] = {}
    for name in [h.name for h in inv.hosts if h.name in per_host]:
        for sid, container in per_host[name].items():
            if sid not in out or (sid in inv.slice_ids and inv.slice(sid).host == name):
                out[sid] = container
    return out


def parse_backups(text: str) -> dict[int, dict] | None:
    """The backup agent's results file (backup/README.md) as {slice id: {"good_at": epoch or
    None, "failed": bool, "copy_failed": bool}}; None when no backup ever ran there (no file)."""
    import datetime as dt

    if not text.strip():
        return None
    try:
        state = json.loads(text)
    except ValueError:
        raise RemoteStateError(f"unreadable backup results: {text.strip()[:120]!r}") from None
    out = {}
    for key, entry in (state.get("slices") or {}).items():
        good = (entry.get("last_good") or {}).get("at")
        good_at = dt.datetime.fromisoformat(good.replace("Z", "+00:00")).timestamp() if good else None
        out[int(key)] = {"good_at": good_at, "failed": not (entry.get("last") or {}).get("verified", True),
                         "copy_failed": not (entry.get("copy") or {}).get("ok", True)}
    return out


def merge_backups(inv: Inventory, database: dict[int, dict] | None,
                  data_parts: dict[str, dict[int, dict] | None], rows: dict[int, dict] | None = None) -> dict[int, dict] | None:
    """A fleet slice's backup is good as of its older part: the database host's results
    (`database`, every slice's dump) with, for a slice whose data is on another host, that
    host's results (`data_parts` by host name: its data directory's archive; `rows`, the
    gateway's: a slice whose move has not finished has its data on its old host,
    moves.data_hosts). A part no run has recorded yet counts as none; None when no backup ran
    anywhere."""
    if database is None and not any(data_parts.values()):
        return None
    out = dict(database or {})
    for sid, name in moves.data_hosts(inv, rows).items():
        if name not in data_parts:
            continue
        parts = [(database or {}).get(sid), (data_parts[name] or {}).get(sid)]
        known = [p for p in parts if p]
        goods = [p["good_at"] for p in parts if p]
        out[sid] = {
            "good_at": min(goods) if len(goods) == 2 and None not in goods else None,
            "failed": any(p["failed"] for p in known),
            "copy_failed": any(p["copy_failed"] for p in known),
        }
    return out


def read_backups(target: Target, inv: Inventory) -> dict[int, dict] | None:
    """The results file only (never a backup): empty when the host has none yet."""
    return parse_backups(target.run(["sh", "-c", 'cat "$0" 2>/dev/null || true', inv.backup_state]))
