"""PostgreSQL settings derived from the host's RAM and the number of slices (pure, unit-tested)."""

from __future__ import annotations

import ipaddress

from sliceops.checks import RESERVED_CONNECTIONS
from sliceops.inventory import Inventory
from sliceops.names import host_monitor_role

MIB = 1024 * 1024


def _clamp(value: float, low: int, high: int) -> int:
    return int(max(low, min(high, value)))


# max_connections grows in steps of this many: changing it restarts PostgreSQL (every
# tenant's connections dropped), so adding a slice must not change it each time.
CONNECTION_STEP = 250


def connection_budget(n_slices: int, per_slice: int = 5) -> int:
    """Each tenant role may hold `per_slice` connections (its CONNECTION LIMIT); the gateway,
    monitor and operators get RESERVED_CONNECTIONS. At least 100 (PostgreSQL's default);
    past that, rounded up to a multiple of CONNECTION_STEP, so slices added one by one
    restart PostgreSQL once per step (50 slices at 5 each), not at every add. The headroom
    costs a few kB of shared memory per connection slot, nothing while unused."""
    need = RESERVED_CONNECTIONS + per_slice * n_slices
    return 100 if need <= 100 else -(-need // CONNECTION_STEP) * CONNECTION_STEP


def pg_tuning(inv: Inventory, ram_bytes: int) -> dict[str, int]:
    pg = inv.postgres
    ram_mb = ram_bytes // MIB
    max_connections = pg.max_connections or connection_budget(len(inv.kept_slices()), inv.slice_defaults.db_connections)
    return {
        "max_connections": max_connections,
        "shared_buffers_mb": pg.shared_buffers_mb or _clamp(ram_mb * 0.25, 32, 8192),
        "effective_cache_size_mb": pg.effective_cache_size_mb or _clamp(ram_mb * 0.5, 64, 1 << 20),
        "work_mem_mb": pg.work_mem_mb or _clamp(ram_mb / (4 * max_connections), 4, 64),
        "maintenance_work_mem_mb": pg.maintenance_work_mem_mb or _clamp(ram_mb * 0.05, 64, 1024),
    }


def listen_addresses(inv: Inventory) -> list[str]:
    """Loopback, the slice bridge's gateway, the database host's private address in a fleet
    (the slice hosts connect there), and the inventory's own."""
    db = inv.database_host.address if inv.multi_host else None
    extra = [a for a in (db, *inv.postgres.listen_addresses) if a]
    return list(dict.fromkeys(["127.0.0.1", inv.docker.gateway_address, *extra]))


def remote_slice_hosts(inv: Inventory, moving: dict[str, str] | None = None) -> list[dict]:
    """pg_hba.conf's view of the slice hosts that are not the database host: each one's
    address as a single-host CIDR, the tenant roles of the slices it runs, and its monitor's
    role. Empty for a one-host inventory. `moving`: {role: host it runs on now} of slices
    being moved, admitted from that host too until the move succeeds (if it fails, the slice
    runs there again)."""
    moving = moving or {}
    if not inv.multi_host:
        return []
    db = inv.database_host.name
    rules = []
    for h in inv.slice_hosts:
        if h.name == db or not h.address:
            continue
        address = ipaddress.ip_address(h.address)
        rules.append({
            "name": h.name,
            "cidr": f"{address}/{address.max_prefixlen}",
            "roles": [s.login_role for s in inv.slices_on(h.name) if s in inv.kept_slices()]
                     + sorted(r for r, there in moving.items() if there == h.name),
            "monitor_role": host_monitor_role(h.name),
        })
    return rules
