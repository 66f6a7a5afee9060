"""The fleet's status as data: one row per slice from what the target answered, the health
rule, the summary counts, sorting, finding a customer, and the stable JSON shape.

Pure functions over plain dicts, so every rule is unit-tested without a host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sliceops import spares
from sliceops.inventory import ACTIVE, DESTROYING, SUSPENDED, Inventory

ORPHAN = "orphan"  # on the host (database, gateway row or container), not in the inventory
MISSING = "missing"  # no container where the inventory wants one

# wa_state values the monitor writes when /health did not answer 200 with JSON
# (monitor/sliceops_monitor/health.py and samples.py).
NOT_ANSWERED = frozenset({
    "BACKEND_UNREACHABLE", "BACKEND_TIMEOUT", "BACKEND_ERROR", "CONTAINER_STOPPED", "CONTAINER_MISSING",
})
# Nightly backups: a last good one older than two nights is a problem.
BACKUP_STALE_SECONDS = 2 * 86400 + 3600
# Above this share of a limit, memory and disk are a problem.
NEAR_LIMIT_PERCENT = 90.0
SORT_KEYS = ("id", "mem", "cpu", "disk", "age")
# The JSON's version: bumped only when a key changes meaning or goes away (adding keys is
# compatible).
JSON_VERSION = 1



def percent(used: float | None, limit: float | None) -> float | None:
    if used is None or not limit:
        return None
    return round(100.0 * used / limit, 1)


@dataclass
class SliceStatus:
    """One slice as status shows it; None wherever the host had nothing to say."""

    id: int
    inventory_status: str  # active / suspended / destroying / orphan
    port: int | None
    host: str | None = None  # the inventory's host running it (an orphan: the gateway row's)
    gateway_status: str | None = None  # available / assigned / suspended / destroying; None: no row
    user_id: int | None = None
    email: str | None = None
    container: str | None = None
    container_state: str | None = None  # Docker's, or "missing"
    docker_health: str | None = None  # healthy / unhealthy / starting; None without a HEALTHCHECK
    wa_state: str | None = None
    wa_phone: str | None = None
    mem_used: int | None = None
    mem_limit: int | None = None
    cpu_percent: float | None = None
    cpu_limit: float | None = None  # cores
    disk_used: int | None = None
    disk_quota: int | None = None
    database: str | None = None
    db_size: int | None = None
    db_size_age: float | None = None  # seconds since the monitor measured it; None: measured by this read
    db_connections: int | None = None
    migration: str | None = None  # current / stale / unstamped; None: no database
    telemetry_age: float | None = None  # seconds
    backup_age: float | None = None  # seconds since the last verified backup started; None: none
    backup_failed: bool = False  # the slice's latest backup attempt failed
    backup_copy_failed: bool = False  # its latest copy off the host (backups.copy_to) failed
    healthy: bool | None = None  # None when the slice is not in service
    problems: list[str] = field(default_factory=list)

    @property
    def mem_percent(self) -> float | None:
        return percent(self.mem_used, self.mem_limit)

    @property
    def disk_percent(self) -> float | None:
        return percent(self.disk_used, self.disk_quota)

    @property
    def cpu_of_limit(self) -> float | None:
        """CPU % as Docker shows it (100 = one core) relative to the slice's own limit."""
        return percent(self.cpu_percent, self.cpu_limit * 100 if self.cpu_limit else None)


def health_problems(row: SliceStatus, interval: int) -> list[str]:
    """Why an in-service slice is not healthy; empty means healthy.

    Healthy: its container runs, /health answered 200 (the monitor's last reading has a
    backend wa_state, not one of NOT_ANSWERED), and that reading is younger than two
    monitor intervals.
    """
    problems = []
    if row.container_state != "running":
        problems.append(f"container {row.container_state or MISSING}")
    if row.telemetry_age is None:
        problems.append("no telemetry")
    else:
        if row.telemetry_age >= 2 * interval:
            problems.append(f"telemetry {fmt_age(row.telemetry_age)} old")
        if row.wa_state is None or row.wa_state in NOT_ANSWERED:
            problems.append(f"/health: {row.wa_state or 'no answer'}")
    return problems


def other_problems(row: SliceStatus) -> list[str]:
    """What stands out without making a slice unhealthy: limits, drift, gateway mismatch."""
    problems = []
    if row.docker_health == "unhealthy":
        problems.append("docker health check failing")
    if (row.mem_percent or 0) >= NEAR_LIMIT_PERCENT:
        problems.append(f"memory at {row.mem_percent:g}% of its limit")
    if (row.disk_percent or 0) >= NEAR_LIMIT_PERCENT:
        problems.append(f"disk at {row.disk_percent:g}% of its quota")
    if row.migration in ("stale", "unstamped"):
        problems.append(f"database not at the current migration ({row.migration})")
    if row.inventory_status == ORPHAN:
        problems.append("orphan: not in the inventory")
    elif row.inventory_status != DESTROYING and row.gateway_status is None:
        problems.append("no gateway row")
    if row.inventory_status == SUSPENDED and row.container_state == "running":
        problems.append("suspended but its container runs")
    return problems


def backup_problems(row: SliceStatus) -> list[str]:
    """A kept slice whose last good backup is missing or older than two nights, or whose
    latest backup failed (only said once backups have run on the host at all)."""
    if row.inventory_status not in (ACTIVE, SUSPENDED):
        return []
    problems = []
    if row.backup_age is None:
        problems.append("no verified backup")
    elif row.backup_age > BACKUP_STALE_SECONDS:
        problems.append(f"last verified backup {fmt_age(row.backup_age)} old")
    if row.backup_failed:
        problems.append("latest backup failed")
    if row.backup_copy_failed:
        problems.append("latest copy off the host failed")
    return problems


def fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def build_rows(inv: Inventory, db: dict, containers: dict[int, dict], backups: dict | None = None) -> list[SliceStatus]:
    """Join the inventory, the database answer (gather.parse_database_state), the container
    list (gather.parse_containers) and the backup results (gather.parse_backups; None: no
    backup has run on the host yet) into one row per slice id found anywhere."""
    now = db["now"]
    listed = {s.id: s for s in inv.slices}
    ids = sorted(set(listed) | set(db["slices"]) | set(db["databases"]) | set(containers))
    rows = []
    for sid in ids:
        s = listed.get(sid)
        gw = db["slices"].get(sid)
        dbrow = db["databases"].get(sid)
        c = containers.get(sid)
        t = (gw or {}).get("telemetry") or {}
        row = SliceStatus(
            id=sid,
            inventory_status=s.status if s else ORPHAN,
            port=s.port if s else (gw or {}).get("port"),
            host=s.host if s else (gw or {}).get("host"),
            container=c["name"] if c else (inv.container_name(sid) if s else None),
            container_state=c["state"] if c else MISSING,
            docker_health=c["health"] if c else None,
        )
        if gw:
            row.gateway_status = gw["status"]
            row.user_id = gw["user_id"]
            row.email = gw["email"]
            row.wa_phone = gw["wa_phone"]
        if t:
            row.telemetry_age = max(0.0, now - t["at"])
            row.wa_state = t["wa_state"]
            row.mem_used = t["rss_bytes"]
            row.cpu_percent = float(t["cpu_percent"]) if t["cpu_percent"] is not None else None
            row.disk_used = t["disk_bytes"]
        if s:
            row.mem_limit = s.memory_bytes
            row.cpu_limit = s.cpus
            # `slice_defaults.disk` / `slices[].disk`; "-" where quotas are off (disk: false).
            row.disk_quota = s.disk_quota_bytes
        if dbrow:
            row.database = dbrow["name"]
            row.db_size = dbrow["size_bytes"]
            if dbrow.get("size_at") is not None:
                row.db_size_age = max(0.0, now - dbrow["size_at"])
            row.db_connections = dbrow["connections"]
            row.migration = "current" if dbrow["current"] else ("stale" if dbrow["stamped"] else "unstamped")
        if row.inventory_status == ACTIVE:
            row.problems = health_problems(row, inv.monitor.interval)
            row.healthy = not row.problems
        row.problems += other_problems(row)
        if backups is not None:
            b = backups.get(sid) or {}
            row.backup_age = None if b.get("good_at") is None else max(0.0, now - b["good_at"])
            row.backup_failed = bool(b.get("failed"))
            row.backup_copy_failed = bool(b.get("copy_failed"))
            row.problems += backup_problems(row)
        rows.append(row)
    return rows


def summary(rows: list[SliceStatus]) -> dict[str, int]:
    count = lambda pred: sum(1 for r in rows if pred(r))  # noqa: E731
    return {
        "in_service": count(lambda r: r.inventory_status == ACTIVE),
        "suspended": count(lambda r: r.inventory_status == SUSPENDED),
        "destroying": count(lambda r: r.inventory_status == DESTROYING),
        "healthy": count(lambda r: r.healthy is True),
        "unhealthy": count(lambda r: r.healthy is False),
        "orphans": count(lambda r: r.inventory_status == ORPHAN),
    }


def sort_rows(rows: list[SliceStatus], key: str) -> list[SliceStatus]:
    """Largest first for mem, cpu and disk (share of the limit, bytes when there is none),
    oldest telemetry first for age; unknown values last; ties by id."""
    if key == "id":
        return sorted(rows, key=lambda r: r.id)
    metric = {
        "mem": lambda r: r.mem_percent if r.mem_percent is not None else _tiny(r.mem_used),
        "cpu": lambda r: r.cpu_percent,
        "disk": lambda r: r.disk_percent if r.disk_percent is not None else _tiny(r.disk_used),
        # No telemetry at all is the stalest of all.
        "age": lambda r: float("inf") if r.telemetry_age is None else r.telemetry_age,
    }[key]
    known = [r for r in rows if metric(r) is not None]
    unknown = [r for r in rows if metric(r) is None]
    return sorted(known, key=lambda r: (-metric(r), r.id)) + sorted(unknown, key=lambda r: r.id)


def _tiny(value: int | None) -> float | None:
    # Without a limit the bytes rank below every known percentage but still among themselves.
    return None if value is None else value / 1e15


_DIGITS = re.compile(r"[^0-9]")


def find(rows: list[SliceStatus], text: str) -> list[SliceStatus]:
    """Rows whose gateway user's email contains `text` (any case), or whose WhatsApp phone
    contains its digits (so +49 151-234 finds 49151234...)."""
    needle = text.strip().lower()
    digits = _DIGITS.sub("", needle)
    phone_like = bool(digits) and not re.search(r"[a-z@]", needle)
    out = []
    for r in rows:
        if needle and r.email and needle in r.email.lower():
            out.append(r)
        elif phone_like and r.wa_phone and digits in _DIGITS.sub("", r.wa_phone):
            out.append(r)
    return out


def gateway_rows(rows: list[SliceStatus]) -> dict[int, dict]:
    """The gateway's rows as the status read them, {id: {"status", "user_id"}} (sliceops.spares)."""
    return {r.id: {"status": r.gateway_status, "user_id": r.user_id} for r in rows if r.gateway_status is not None}


def to_json(inv: Inventory, rows: list[SliceStatus], fleet: dict[str, int], spare: dict | None = None) -> dict:
    """The documented, stable shape of `sliceops status --json` (README: "status --json").
    `spare`: spares.summary of the whole fleet (rows may be a --find selection); default: of rows."""
    return {
        "version": JSON_VERSION,
        "target": inv.target,
        "instance": inv.instance,
        "monitor_interval": inv.monitor.interval,
        "summary": fleet,
        "spares": spare if spare is not None else spares.summary(inv, gateway_rows(rows)),
        "slices": [
            {
                "id": r.id,
                "inventory_status": r.inventory_status,
                "healthy": r.healthy,
                "problems": r.problems,
                "gateway": None if r.gateway_status is None else {
                    "status": r.gateway_status, "user_id": r.user_id, "email": r.email,
                },
                "container": {"name": r.container, "state": r.container_state, "health": r.docker_health},
                "port": r.port,
                "host": r.host,
                "wa_state": r.wa_state,
                "wa_phone": r.wa_phone,
                "memory": {"used_bytes": r.mem_used, "limit_bytes": r.mem_limit, "percent": r.mem_percent},
                "cpu": {"percent": r.cpu_percent, "limit_cores": r.cpu_limit},
                "disk": {"used_bytes": r.disk_used, "quota_bytes": r.disk_quota, "percent": r.disk_percent},
                "database": None if r.database is None else {
                    "name": r.database, "size_bytes": r.db_size,
                    "size_age_seconds": 0 if r.db_size_age is None else round(r.db_size_age),
                    "connections": r.db_connections, "migration": r.migration,
                },
                "telemetry_age_seconds": None if r.telemetry_age is None else round(r.telemetry_age, 1),
                "backup": {"age_seconds": None if r.backup_age is None else round(r.backup_age),
                           "latest_failed": r.backup_failed, "copy_failed": r.backup_copy_failed},
            }
            for r in rows
        ],
    }
