"""The grants a migration run ends with: a tenant's DML on its own database, the monitor's
telemetry writes in the gateway's."""

from __future__ import annotations

from sliceops.inventory import MONITOR_ROLE
from sliceops.shell import ident


def tenant_grants(owner: str, tenant: str) -> str:
    """DML on the slice schema, nothing more (sliceops owns the schema: the app's own migrator
    is not run), and sessions in UTC: seed 004's columns are `timestamp`, so the app reads
    back what it wrote whatever the server's zone."""
    privs = "SELECT, INSERT, UPDATE, DELETE"
    o, t = ident(owner), ident(tenant)
    return "\n".join([
        f"ALTER ROLE {t} SET timezone = 'UTC';",
        f"GRANT USAGE ON SCHEMA public TO {t};",
        f"GRANT {privs} ON ALL TABLES IN SCHEMA public TO {t};",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {t};",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA public GRANT {privs} ON TABLES TO {t};",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {t};",
    ])


def monitor_grants(role: str = MONITOR_ROLE, prune: bool = True) -> str:
    """The database host's monitor (`prune`: it reads and deletes old telemetry too), or a
    slice host's (`prune` False: it only adds rows; RLS narrows what it sees)."""
    m = ident(role)
    # SELECT: the server row's INSERT ... RETURNING reads it back (RLS shows a host its own).
    telemetry = "SELECT, INSERT, DELETE" if prune else "SELECT, INSERT"
    return "\n".join([
        f"GRANT USAGE ON SCHEMA gateway TO {m};",
        f"GRANT SELECT ON gateway.slices TO {m};",
        f"GRANT UPDATE (last_health_at, wa_connected, wa_phone, storage_bytes) ON gateway.slices TO {m};",
        f"GRANT {telemetry} ON gateway.telemetry, gateway.server_telemetry TO {m};",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA gateway TO {m};",
    ])
