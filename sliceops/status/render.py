"""`sliceops status` as text: the summary line, then one aligned row per slice.

Problems stand out in colour on a terminal (red: unhealthy or at a limit, yellow: worth a
look); piped output is plain, so `grep` and `awk` see the same columns.
"""

from __future__ import annotations

from sliceops.inventory import ACTIVE
from sliceops.status.model import NEAR_LIMIT_PERCENT, NOT_ANSWERED, ORPHAN, SliceStatus, fmt_age

RED, YELLOW, GREEN, DIM, RESET = "\033[31m", "\033[33m", "\033[32m", "\033[2m", "\033[0m"
# 75 %: a limit is coming near before it becomes a problem.
WARN_PERCENT = 75.0

COLUMNS = ("ID", "INVENTORY", "GATEWAY", "CONTAINER", "PORT", "WHATSAPP", "MEMORY", "CPU", "DISK", "DATABASE",
           "MIGRATION", "SEEN", "BACKUP")


def human(n: int | None) -> str:
    """Bytes as Docker prints them: 1024-based, one decimal under 10 (912K, 4.2M, 256M, 1.5G)."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            if unit == "B":
                return f"{int(value)}B"
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _pct(p: float | None) -> str:
    return "" if p is None else f" {p:.0f}%"


def _level_of_percent(p: float | None) -> str:
    if p is None:
        return ""
    return RED if p >= NEAR_LIMIT_PERCENT else (YELLOW if p >= WARN_PERCENT else "")


def cells(r: SliceStatus, interval: int) -> list[tuple[str, str]]:
    """The row's (text, colour) cells, in COLUMNS order; colour "" is plain."""
    gw = "-" if r.gateway_status is None else r.gateway_status + (f" u{r.user_id}" if r.user_id is not None else "")
    state = r.container_state or "-"
    container = state + (f" ({r.docker_health})" if r.docker_health else "")
    want_running = r.inventory_status == ACTIVE
    if want_running:
        c_colour = RED if state != "running" or r.docker_health == "unhealthy" else ""
    else:
        c_colour = YELLOW if state == "running" else DIM
    wa = (r.wa_state or "-") + (f" {r.wa_phone}" if r.wa_phone else "")
    if r.wa_state in NOT_ANSWERED:
        wa_colour = RED
    elif r.wa_state and r.wa_state != "CONNECTED":
        wa_colour = YELLOW
    else:
        wa_colour = ""
    mem = f"{human(r.mem_used)}/{human(r.mem_limit)}{_pct(r.mem_percent)}"
    cpu = "-" if r.cpu_percent is None else f"{r.cpu_percent:.1f}%"
    disk = f"{human(r.disk_used)}/{human(r.disk_quota)}{_pct(r.disk_percent)}"
    database = "-" if r.database is None else f"{human(r.db_size)} {r.db_connections}c"
    migration = r.migration or "-"
    age = fmt_age(r.telemetry_age)
    stale = r.telemetry_age is None or r.telemetry_age >= 2 * interval
    inventory_colour = YELLOW if r.inventory_status == ORPHAN else ""
    return [
        (str(r.id), RED if r.healthy is False else (GREEN if r.healthy else "")),
        (r.inventory_status, inventory_colour),
        (gw, RED if r.gateway_status is None and r.inventory_status == ACTIVE else ""),
        (container, c_colour),
        ("-" if r.port is None else str(r.port), ""),
        (wa, wa_colour),
        (mem, _level_of_percent(r.mem_percent)),
        (cpu, _level_of_percent(r.cpu_of_limit)),
        (disk, _level_of_percent(r.disk_percent)),
        (database, ""),
        (migration, YELLOW if migration in ("stale", "unstamped") else ""),
        (age, RED if want_running and stale else ""),
        (fmt_age(r.backup_age) + (" failed" if r.backup_failed else ""),
         RED if any("backup" in p for p in r.problems) else ""),
    ]


def summary_line(fleet: dict[str, int], inv_target: str, instance: str) -> str:
    return (
        f"{inv_target} instance {instance}: {fleet['in_service']} in service, {fleet['suspended']} suspended, "
        f"{fleet['destroying']} destroying; {fleet['healthy']} healthy, {fleet['unhealthy']} unhealthy; "
        f"{fleet['orphans']} orphans"
    )


def table(rows: list[SliceStatus], interval: int, colour: bool) -> list[str]:
    """Aligned lines (header first); colour codes never count towards a column's width."""
    body = [cells(r, interval) for r in rows]
    widths = [len(h) for h in COLUMNS]
    for row in body:
        for i, (text, _) in enumerate(row):
            widths[i] = max(widths[i], len(text))
    lines = ["  ".join(h.ljust(w) for h, w in zip(COLUMNS, widths)).rstrip()]
    for row in body:
        parts = []
        for (text, hue), w in zip(row, widths):
            padded = text.ljust(w)
            parts.append(f"{hue}{padded}{RESET}" if colour and hue else padded)
        lines.append("  ".join(parts).rstrip())
    return lines


def render(rows: list[SliceStatus], fleet: dict[str, int], inv_target: str, instance: str, interval: int,
           colour: bool) -> str:
    line = summary_line(fleet, inv_target, instance) + sizes_note(rows)
    if colour and fleet["unhealthy"]:
        line = f"{RED}{line}{RESET}"
    out = [line]
    if rows:
        out += table(rows, interval, colour)
    return "\n".join(out) + "\n"


def sizes_note(rows: list[SliceStatus]) -> str:
    """How old the DATABASE sizes are, for the summary line (the table stays rows only): the
    monitor measures them every few minutes (sql/gateway/0006); a database it has not measured
    yet was measured by this read."""
    ages = [r.db_size_age for r in rows if r.database is not None and r.db_size_age is not None]
    live = sum(1 for r in rows if r.database is not None and r.db_size_age is None)
    parts = []
    if ages:
        oldest, newest = fmt_age(max(ages)), fmt_age(min(ages))
        parts.append(f"{newest if newest == oldest else f'{newest}-{oldest}'} old")
    if live:
        parts.append(f"{live} measured now")
    return f" (database sizes {', '.join(parts)})" if parts else ""
