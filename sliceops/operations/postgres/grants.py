"""The grants a migration run ends with: a tenant's DML on its own database, the monitor's
telemetry writes in the gateway's."""

from __future__ import annotations

from sliceops.inventory import MONITOR_ROLE
from sliceops.names import SLICE_NAME_PREFIX
from sliceops.shell import ident, literal

# The database host's monitor records every slice database's size with this (every
# disk_interval), so `sliceops status` reads sizes instead of walking each database's files.
SIZES_FUNCTION = "sliceops.record_database_sizes()"


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
    ] + (database_sizes(m) if prune else []))


def database_sizes(m: str) -> list[str]:
    """SIZES_FUNCTION, made by the superuser (this script runs as postgres): a database's size
    needs CONNECT on it, which the monitor must not have, so the function runs as its owner and
    does one thing, with no argument: replace sliceops_fleet.database_sizes (sql/gateway/0006)
    by the size of every slice database now, returning how many it measured. In the `sliceops`
    schema (the superuser's, where the ledger lives), with a fixed search_path; PUBLIC may not
    call it (functions are executable by PUBLIC unless revoked). plpgsql: its body is checked
    when it runs, not against the tables when it is made. These lines run with the gateway's
    migration run, i.e. when a gateway migration is pending or the monitor's grants (this
    function included: facts/postgres.py monitor_ok) are missing: a changed body reaches a
    converged host only together with a new gateway migration."""
    pattern = literal(f"^{SLICE_NAME_PREFIX}[0-9]+$")
    body = (
        "BEGIN "
        "DELETE FROM sliceops_fleet.database_sizes z WHERE NOT EXISTS "
        f"(SELECT 1 FROM pg_database d WHERE d.datname = z.datname AND d.datname ~ {pattern}); "
        "INSERT INTO sliceops_fleet.database_sizes AS z (datname, size_bytes, measured_at) "
        # NULL: the database went away between the catalog read and its walk.
        "SELECT datname, size, now() FROM (SELECT d.datname, pg_database_size(d.oid) AS size "
        f"FROM pg_database d WHERE d.datname ~ {pattern}) s WHERE size IS NOT NULL "
        "ON CONFLICT (datname) DO UPDATE SET size_bytes = excluded.size_bytes, measured_at = excluded.measured_at; "
        "GET DIAGNOSTICS measured = ROW_COUNT; RETURN measured; END"
    )
    return [
        f"CREATE OR REPLACE FUNCTION {SIZES_FUNCTION} RETURNS integer LANGUAGE plpgsql VOLATILE SECURITY DEFINER "
        f"SET search_path = pg_catalog, pg_temp AS {literal('DECLARE measured integer; ' + body)};",
        f"REVOKE ALL ON FUNCTION {SIZES_FUNCTION} FROM PUBLIC;",
        f"GRANT USAGE ON SCHEMA sliceops TO {m};",
        f"GRANT EXECUTE ON FUNCTION {SIZES_FUNCTION} TO {m};",
    ]
