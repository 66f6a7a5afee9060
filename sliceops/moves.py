"""Slice moves (issue 14): a slice whose `host` in the inventory is not the host the gateway
records for it (`gateway.slices.host`, gateway migration 0004) is being moved there.

The move itself is sliceops/operations/move.py (on the new host, before its containers are
converged). Until it has succeeded, the slice keeps what lets it run where it was: its
password (no new one is made on the new host, and PostgreSQL keeps its verifier; the move
carries the password file along), pg_hba.conf's rule for its old host's address (beside
the new host's), and its gateway row's host.
"""

from __future__ import annotations

from dataclasses import dataclass

from sliceops.errors import InventoryError
from sliceops.inventory import Inventory


@dataclass(frozen=True)
class Move:
    slice_id: int
    source: str  # where the gateway says the slice runs
    destination: str  # where the inventory puts it


def pending(inv: Inventory, rows: dict[int, dict] | None) -> list[Move]:
    """The slices whose gateway row names another host than the inventory, by id. A row
    without a host (registered before 0004; the deploy fills it in) moves nothing, and nothing
    moves in a `target:` file: its one machine runs every slice, whatever name its target
    gives it."""
    if not rows or not inv.multi_host:
        return []
    return [
        Move(s.id, rows[s.id]["host"], s.host)
        for s in inv.slices
        if s.id in rows and rows[s.id].get("host") and rows[s.id]["host"] != s.host
    ]


def data_hosts(inv: Inventory, rows: dict[int, dict] | None) -> dict[int, str]:
    """{slice id: the host whose backup agent archives its data directory}: where its data is.
    That is the host it runs on (`Inventory.backup_data_host`), except while its move has not
    finished (pending, or failed and undone): the gateway row still names the old host, and
    the data is there. One host per slice, never two and never none, for the agents'
    configurations, `backup`, `backups`, `restore` and `status` alike."""
    hosts = {h.name for h in inv.hosts}
    away = {m.slice_id: m.source for m in pending(inv, rows) if m.source in hosts}
    return {s.id: away.get(s.id) or inv.backup_data_host(s) for s in inv.slices}


def moving_roles(inv: Inventory, rows: dict[int, dict] | None) -> dict[str, str]:
    """{tenant login role: the host it runs on now} of the slices being moved."""
    return {inv.slice(m.slice_id).login_role: m.source for m in pending(inv, rows)}


def refuse(inv: Inventory, rows: dict[int, dict] | None) -> None:
    """Raise InventoryError, one line per slice, for a move the deploy cannot make: a slice
    that is not in service (suspended or being destroyed) is moved only once it runs."""
    bad = [m for m in pending(inv, rows) if not inv.slice(m.slice_id).in_service]
    if bad:
        raise InventoryError([
            f"{inv.path}: slice {m.slice_id}: host: {m.destination!r}: the slice is on {m.source!r} "
            f"(gateway.slices.host) and not in service: a slice moves only while it runs (status: active); "
            f"set its host back to {m.source!r} until then"
            for m in bad
        ])
