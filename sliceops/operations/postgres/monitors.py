"""Slice hosts' monitors in the gateway database: one login role per slice host that is not
the database host (whose monitor is `sliceops_monitor`, peer authentication), its grants,
and its row in sliceops_fleet.monitor_hosts, which row-level security (sql/gateway/0005) reads to
let it see and write only the slices on its host.

Its password is made on its slice host and never leaves it: the database host receives only
the SCRAM-SHA-256 verifier computed there (`facts/monitor_credential.py`), given to
PostgreSQL on psql's standard input."""

from __future__ import annotations

from sliceops.names import host_monitor_role
from sliceops.shell import ident, literal


def desired_host_monitors(inv) -> dict[str, str]:
    """{role: host} for every slice host but the database host ({} on one host)."""
    db = inv.database_host.name
    return {host_monitor_role(h.name): h.name for h in inv.slice_hosts if h.name != db}


def host_monitor_grants(role: str) -> str:
    """What a slice host's monitor needs: read its host's slices (RLS narrows it), record
    their health, add telemetry and its server row. No DELETE: the prune is the database
    host monitor's."""
    m = ident(role)
    return "\n".join([
        f"GRANT USAGE ON SCHEMA gateway TO {m};",
        f"GRANT SELECT ON gateway.slices TO {m};",
        f"GRANT UPDATE (last_health_at, wa_connected, wa_phone, storage_bytes) ON gateway.slices TO {m};",
        f"GRANT INSERT ON gateway.telemetry, gateway.server_telemetry TO {m};",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA gateway TO {m};",
    ])


def host_monitors_sql(desired: dict[str, str], mapped: dict[str, str], stale_verifier: list[str]) -> tuple[str, list[str]]:
    """(SQL for the gateway database, the roles whose verifier it sets from psql variables
    pw0, pw1 ... in that order). `mapped`: sliceops_fleet.monitor_hosts as it is; `stale_verifier`:
    desired roles whose stored verifier is not the one their slice host computed. A role
    whose host left the inventory loses its row (so RLS would give it nothing) and LOGIN."""
    sql: list[str] = []
    for role, host_name in sorted(desired.items()):
        if mapped.get(role) == host_name and role not in stale_verifier:
            continue
        sql += [
            f"SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {literal(role)}) AS missing \\gset",
            f"\\if :missing\nCREATE ROLE {ident(role)} NOLOGIN;\n\\endif",
            host_monitor_grants(role),
            f"INSERT INTO sliceops_fleet.monitor_hosts (role, host) VALUES ({literal(role)}, {literal(host_name)}) "
            f"ON CONFLICT (role) DO UPDATE SET host = EXCLUDED.host;",
        ]
    verifiers = sorted(r for r in stale_verifier if r in desired)
    for i, role in enumerate(verifiers):
        sql.append(f"ALTER ROLE {ident(role)} WITH LOGIN PASSWORD :'pw{i}';")
    for role in sorted(set(mapped) - set(desired)):
        sql += [f"DELETE FROM sliceops_fleet.monitor_hosts WHERE role = {literal(role)};",
                f"ALTER ROLE {ident(role)} NOLOGIN;"]
    return "\n".join(sql), verifiers
