"""The gateway's slice registry (gateway.slices): one row per inventory slice with its port
and the statuses the deploy decides; what the gateway application owns is never written."""

from __future__ import annotations

import re

from pyinfra import host
from pyinfra.api import operation

from sliceops import factcache, progress
from sliceops.errors import LifecycleError
from sliceops.facts.postgres import ROWS
from sliceops.inventory import DESTROYING, SUSPENDED, Inventory
from sliceops.operations import sentences
from sliceops.operations.postgres.state import fleet, heredoc
from sliceops.operations.util import as_script
from sliceops.shell import literal


_NEW_ROW = re.compile(r"^INSERT INTO gateway\.slices \([^)]*\) VALUES \(([0-9]+),")


def registration_sql(inv: Inventory, rows: dict | None) -> list[str]:
    """Bring gateway.slices in line with the inventory without touching what the gateway owns.

    The deploy writes id, port, the two statuses it decides (suspended, destroying) and, on a
    new row or one registered before gateway migration 0004 (host NULL), the slice's host;
    available/assigned, user_id and the wa_* columns are the gateway application's. A row
    whose host differs from the inventory's is a slice being moved: its host is rewritten by
    the move, once the slice answers on its new host, never here.
    """
    rows = rows or {}
    sql = _port_moves(inv, rows)
    for s in inv.slices:
        row = rows.get(s.id)
        if row is None:
            if s.status == DESTROYING:
                continue
            status = "suspended" if s.status == SUSPENDED else "available"
            sql.append(
                "INSERT INTO gateway.slices (id, port, status, host) VALUES "
                f"({literal(s.id)}, {literal(s.port)}, {literal(status)}, {literal(s.host)});"
            )
            continue
        if row.get("host") is None and s.status != DESTROYING:
            sql.append(f"UPDATE gateway.slices SET host = {literal(s.host)} WHERE id = {literal(s.id)};")
        wanted = {SUSPENDED: "suspended", DESTROYING: "destroying"}.get(s.status)
        if wanted and row["status"] != wanted:
            sql.append(f"UPDATE gateway.slices SET status = {literal(wanted)} WHERE id = {literal(s.id)};")
        elif not wanted and row["status"] in ("suspended", "destroying"):
            # Back in service: to what the gateway had, which user_id still says.
            sql.append(
                "UPDATE gateway.slices SET status = CASE WHEN user_id IS NULL THEN 'available' "
                f"ELSE 'assigned' END WHERE id = {literal(s.id)};"
            )
    if any(q.startswith("INSERT") for q in sql):
        # Ids come from the inventory; keep the SERIAL ahead of them for the gateway's own inserts.
        sql.append(
            "SELECT setval(pg_get_serial_sequence('gateway.slices', 'id'), "
            "(SELECT max(id) FROM gateway.slices));"
        )
    return sql


def _port_moves(inv: Inventory, rows: dict) -> list[str]:
    """Port changes in an order UNIQUE (port), checked row by row, always allows (two slices
    may swap): a row whose new port another row still holds parks on a free port first;
    rows whose new port is free move first, the parked ones last."""
    moving = [s for s in inv.slices if s.id in rows and rows[s.id]["port"] != s.port]
    held = {r["port"] for r in rows.values()}
    parked = [s for s in moving if s.port in held]
    direct = [s for s in moving if s.port not in held]
    taken = held | {s.port for s in inv.slices}
    spare = (p for p in range(65535, 1023, -1) if p not in taken)
    sql = [f"UPDATE gateway.slices SET port = {literal(next(spare))} WHERE id = {literal(s.id)};" for s in parked]
    return sql + [f"UPDATE gateway.slices SET port = {literal(s.port)} WHERE id = {literal(s.id)};" for s in direct + parked]


@operation(is_idempotent=True)
def registration(inv: Inventory):
    """One gateway.slices row per inventory slice, with its port and the inventory's status."""
    state = fleet(inv, reads={ROWS})
    sql = registration_sql(inv, state.slice_rows)
    if not sql:
        host.noop(f"gateway.slices matches the inventory ({len(inv.slices)} slices)")
        return
    sentences.registration(inv, state.slice_rows)
    factcache.touches(ROWS)
    # A file, not one `sh -c` argument: a fleet's rows outgrow what one argument may hold.
    yield from as_script(inv.share_dir, "registration", registration_command(inv, sql))


def registration_command(inv: Inventory, sql: list[str]) -> str:
    """`sql` in one transaction, with a progress line after each new row."""
    return heredoc(inv, registration_script(sql), inv.gateway.database)


def registration_script(sql: list[str]) -> str:
    """The psql script of `registration_command`, for the gateway database."""
    inserts = sum(1 for q in sql if q.startswith("INSERT INTO gateway.slices"))
    script, done = ["BEGIN;"], 0
    for statement in sql:
        script.append(statement)
        m = _NEW_ROW.match(statement)
        if m:
            done += 1
            script.append(progress.psql("registration", done, inserts, f"slice-{m[1]}"))
    return "\n".join(script + ["COMMIT;"])


def assert_destroy_allowed(inv: Inventory, rows: dict | None) -> None:
    """Refuse to destroy a slice the gateway shows assigned to a user, unless forced."""
    refused = [
        f"slice {s.id} is assigned to user {rows[s.id]['user_id']}"
        for s in inv.slices
        if s.status == DESTROYING and not s.force and rows and s.id in rows and rows[s.id]["user_id"] is not None
    ]
    if refused:
        raise LifecycleError(
            f"{inv.path}: refusing to destroy: {'; '.join(refused)} (add force: true to the entry to destroy anyway)"
        )
