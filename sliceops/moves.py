"""Slice moves (issue 14): a slice whose `host` in the inventory is not the host the gateway
records for it (`gateway.slices.host`, gateway migration 0004) is being moved there.

Moving a slice's data from one host to another is not implemented yet. Until it is, the
deploy refuses such an edit before it changes anything: converging it as it stands would
start the slice a second time, with an empty /data, on the new host while its container kept
running on the old one (two WhatsApp sessions of one tenant, its files left behind).
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


def refuse(inv: Inventory, rows: dict[int, dict] | None) -> None:
    """Raise InventoryError, one line per slice, when the inventory moves any slice."""
    moves = pending(inv, rows)
    if moves:
        raise InventoryError([
            f"{inv.path}: slice {m.slice_id}: host: {m.destination!r}: the slice runs on {m.source!r} "
            f"(gateway.slices.host) and moving a slice to another host is not supported yet: set its host "
            f"back to {m.source!r} (a file turned from target: into hosts: keeps its slices by naming "
            f"that host {m.source!r})"
            for m in moves
        ])
