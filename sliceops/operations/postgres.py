"""Fleet-level PostgreSQL operations: each reads `PgFleet` once and emits one command for all
that differs (roles, databases, migrations, registration), or a noop sentence.

Passwords are generated on the target into root-only files and reach psql through a
here-document on its standard input: never an argument, never pyinfra's output.
"""

from __future__ import annotations

from pyinfra import host
from sliceops.operations.util import as_script, refuses
from pyinfra.api import StringCommand, operation

from sliceops import factcache
from sliceops.errors import LifecycleError
from sliceops.facts.postgres import PgFleet
from sliceops.inventory import DESTROYING, SUSPENDED, Inventory
from sliceops.migrations import Migration, discover, pending

MONITOR_ROLE = "sliceops_monitor"
# One constant advisory-lock key for every migration run: two deploys serialise on it.
MIGRATION_LOCK = 74281903


def fleet(inv: Inventory) -> dict | None:
    return factcache.get(
        PgFleet,
        version=inv.postgres.version,
        cluster=inv.cluster,
        port=inv.postgres.port,
        gateway_db=inv.gateway.database,
        secrets_dir=inv.secrets_dir,
    )


def psql(inv: Inventory, database: str = "postgres", quoted: bool = True) -> str:
    """The psql invocation the deploy uses: superuser over the local socket, stop at the first error."""
    return (
        f"runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p {inv.postgres.port} -d {database} "
        f"<<{'SLICEOPS_SQL' if not quoted else chr(39) + 'SLICEOPS_SQL' + chr(39)}"
    )


def heredoc(inv: Inventory, sql: str, database: str = "postgres", quoted: bool = True) -> str:
    return f"{psql(inv, database, quoted)}\n{sql.rstrip()}\nSLICEOPS_SQL"


# --------------------------------------------------------------------------- roles


def desired_login_roles(inv: Inventory) -> list[str]:
    """Roles with a generated password: the two owners of seed 000 and one per kept slice."""
    return [inv.gateway.role, inv.slice_defaults.role] + [s.login_role for s in inv.kept_slices()]


def roles_to_converge(inv: Inventory, state: dict) -> list[str]:
    secrets = set(state["secrets"])
    tenants = {s.login_role for s in inv.kept_slices()}
    todo = []
    for role in desired_login_roles(inv):
        have = state["roles"].get(role)
        if (
            have is None
            or not have["login"]
            or not have["password"]
            or f"{role}.password" not in secrets
            or (role in tenants and f"{role}.env" not in secrets)
        ):
            todo.append(role)
    return todo


def roles_command(inv: Inventory, roles: list[str], with_monitor: bool) -> str:
    tenants = {s.login_role: s for s in inv.kept_slices()}
    sd = inv.secrets_dir
    shell = [
        "set -e",
        "umask 077",
        # The instance's directory stays readable (the monitor reads its config there);
        # only secrets/ is closed.
        f"install -d -m 0755 /etc/sliceops {inv.etc_dir} && install -d -m 0700 {sd}",
        # 32 alphanumerics: about 190 bits, and nothing a URL or SQL literal must escape.
        f"for r in {' '.join(roles)}; do f={sd}/$r.password; "
        f"[ -s \"$f\" ] || tr -dc A-Za-z0-9 </dev/urandom | head -c 32 >\"$f\"; done",
    ]
    for role in roles:
        if role in tenants:
            db_url = (
                f"postgresql://{role}:%s@{inv.docker.gateway_address}:{inv.postgres.port}/{tenants[role].database}"
            )
            shell.append(f"printf 'DATABASE_URL={db_url}\\n' \"$(cat {sd}/{role}.password)\" >{sd}/{role}.env")
    sql = ["SET log_statement = 'none';"]
    if with_monitor:
        sql.append(_ensure_role_sql(MONITOR_ROLE))
    for role in roles:
        sql.append(f"\\set pw '$(cat {sd}/{role}.password)'")
        sql.append(_ensure_role_sql(role))
        sql.append(f'ALTER ROLE "{role}" WITH LOGIN PASSWORD :\'pw\';')
    shell.append(heredoc(inv, "\n".join(sql), quoted=False))
    return "\n".join(shell)


def _ensure_role_sql(role: str) -> str:
    return (
        f"SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') AS missing \\gset\n"
        f"\\if :missing\nCREATE ROLE \"{role}\" LOGIN;\n\\endif"
    )


@operation(is_idempotent=True)
def roles(inv: Inventory):
    """Login roles with root-only generated passwords, and the monitor's peer-auth role."""
    state = fleet(inv)
    if state is None:
        todo, with_monitor = desired_login_roles(inv), True
    else:
        todo = roles_to_converge(inv, state)
        with_monitor = MONITOR_ROLE not in state["roles"]
    if not todo and not with_monitor:
        host.noop(f"all {len(desired_login_roles(inv)) + 1} roles exist with their credentials")
        return
    yield from as_script(inv.share_dir, "roles", roles_command(inv, todo, with_monitor))


# --------------------------------------------------------------------------- databases


def desired_databases(inv: Inventory) -> dict[str, tuple[str, str]]:
    """{database: (owner, the one role besides the owner that may connect)}."""
    wanted = {inv.gateway.database: (inv.gateway.role, MONITOR_ROLE)}
    for s in inv.kept_slices():
        wanted[s.database] = (inv.slice_defaults.role, s.login_role)
    return wanted


def databases_sql(inv: Inventory, state: dict | None) -> list[str]:
    have = state["databases"] if state else {}
    sql = []
    for db, (owner, grantee) in desired_databases(inv).items():
        cur = have.get(db)
        if cur is None:
            sql.append(f'CREATE DATABASE "{db}" OWNER "{owner}";')
        elif cur["owner"] != owner:
            sql.append(f'ALTER DATABASE "{db}" OWNER TO "{owner}";')
        if cur is None or cur["public_connect"]:
            sql.append(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{db}" FROM PUBLIC;')
        if cur is None or grantee not in cur["connect"]:
            sql.append(f'GRANT CONNECT ON DATABASE "{db}" TO "{grantee}";')
        # Isolation drift (another slice's role granted in by hand) is converged back.
        for foreign in sorted(set(cur["connect"] if cur else ()) - {grantee}):
            sql.append(f'REVOKE CONNECT ON DATABASE "{db}" FROM "{foreign}";')
    return sql


@operation(is_idempotent=True)
def databases(inv: Inventory):
    """The gateway database and one database per kept slice, closed to PUBLIC."""
    sql = databases_sql(inv, fleet(inv))
    if not sql:
        host.noop(f"all {len(desired_databases(inv))} databases exist, owned and closed to PUBLIC")
        return
    yield from as_script(inv.share_dir, "databases", heredoc(inv, "\n".join(sql)))


# --------------------------------------------------------------------------- migrations


def _tenant_grants(owner: str, tenant: str) -> str:
    privs = "SELECT, INSERT, UPDATE, DELETE"
    return "\n".join([
        f'GRANT USAGE ON SCHEMA public TO "{tenant}";',
        f'GRANT {privs} ON ALL TABLES IN SCHEMA public TO "{tenant}";',
        f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{tenant}";',
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA public GRANT {privs} ON TABLES TO "{tenant}";',
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO "{tenant}";',
    ])


def _monitor_grants() -> str:
    m = MONITOR_ROLE
    return "\n".join([
        f'GRANT USAGE ON SCHEMA gateway TO "{m}";',
        f'GRANT SELECT ON gateway.slices TO "{m}";',
        f'GRANT UPDATE (last_health_at, wa_connected, wa_phone, storage_bytes) ON gateway.slices TO "{m}";',
        f'GRANT SELECT, INSERT, DELETE ON gateway.telemetry, gateway.server_telemetry TO "{m}";',
        f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA gateway TO "{m}";',
    ])


def migration_script(inv: Inventory, database: str, owner: str, todo: list[Migration], grants: str) -> str:
    """psql script applying `todo` to one database in ONE transaction, under the advisory lock.

    Each file is re-checked against the ledger after the lock is held, so a deploy that
    waited for a concurrent one skips what that one applied instead of applying it twice.
    """
    sqldir = f"{inv.share_dir}/sql"
    lines = [
        "BEGIN;",
        f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK}) \\gset",
        "CREATE SCHEMA IF NOT EXISTS sliceops;",
        "REVOKE ALL ON SCHEMA sliceops FROM PUBLIC;",
        "CREATE TABLE IF NOT EXISTS sliceops.schema_migrations (version text PRIMARY KEY, "
        "name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());",
    ]
    for m in todo:
        lines += [
            # An aggregate always returns a row: \\gset errors on none.
            "SELECT coalesce(max(checksum), '') AS done_checksum FROM sliceops.schema_migrations "
            f"WHERE version = '{m.version}' \\gset",
            "SELECT :'done_checksum' <> '' AS done \\gset",
            "\\if :done",
            f"SELECT :'done_checksum' = '{m.checksum}' AS same \\gset",
            "\\if :same",
            f"\\echo skipped {m.filename} in {database}: applied meanwhile by another deploy",
            "\\else",
            f"DO LANGUAGE plpgsql 'BEGIN RAISE EXCEPTION ''{m.filename} in {database} was applied with another checksum''; END';",
            "\\endif",
            "\\else",
            f'SET ROLE "{owner}";',
            f"\\i {sqldir}/{m.kind}/{m.filename}",
            "RESET ROLE;",
            "INSERT INTO sliceops.schema_migrations (version, name, checksum) "
            f"VALUES ('{m.version}', '{m.name}', '{m.checksum}');",
            f"\\echo applied {m.filename} to {database}",
            "\\endif",
        ]
    lines += [grants, "COMMIT;"]
    return "\n".join(lines)


def migration_plan(inv: Inventory, state: dict | None) -> list[tuple[str, str, list[Migration], str]]:
    """[(database, owner, pending migrations, grants)] for every database that needs work."""
    state = state or {"ledgers": {}, "tenant_ok": {}, "monitor_ok": False}
    plan = []
    gw = inv.gateway.database
    todo = pending(gw, discover("gateway"), state["ledgers"].get(gw, {}))
    if todo or not state["monitor_ok"]:
        plan.append((gw, inv.gateway.role, todo, _monitor_grants()))
    slice_files = discover("slice")
    owner = inv.slice_defaults.role
    for s in inv.kept_slices():
        todo = pending(s.database, slice_files, state["ledgers"].get(s.database, {}))
        if todo or not state["tenant_ok"].get(s.database, False):
            plan.append((s.database, owner, todo, _tenant_grants(owner, s.login_role)))
    return plan


def migrate_command(inv: Inventory, plan) -> str:
    """One shell script: a psql per database needing work; a failure in one database leaves the
    others converged, and the script exits non-zero naming every database that failed."""
    parts = ["failed=''"]
    for database, owner, todo, grants in plan:
        script = migration_script(inv, database, owner, todo, grants)
        parts.append(f"{heredoc(inv, script, database)}\n[ $? -eq 0 ] || failed=\"$failed {database}\"")
    parts.append(
        'if [ -n "$failed" ]; then echo "sliceops: migrations failed (rolled back) in:$failed" >&2; exit 1; fi'
    )
    return "\n".join(parts)


@operation(is_idempotent=True)
@refuses
def migrations(inv: Inventory):
    """Apply pending numbered migrations to every database, each database atomically."""
    plan = migration_plan(inv, fleet(inv))
    if not plan:
        host.noop(f"all {len(inv.kept_slices()) + 1} databases are at the newest migration")
        return
    yield from as_script(inv.share_dir, "migrations", migrate_command(inv, plan))


# --------------------------------------------------------------------------- registration


def registration_sql(inv: Inventory, rows: dict | None) -> list[str]:
    """Bring gateway.slices in line with the inventory without touching what the gateway owns.

    The deploy writes id, port and the two statuses it decides (suspended, destroying);
    available/assigned, user_id and the wa_* columns are the gateway application's.
    """
    rows = rows or {}
    sql = _port_moves(inv, rows)
    for s in inv.slices:
        row = rows.get(s.id)
        if row is None:
            if s.status == DESTROYING:
                continue
            status = "suspended" if s.status == SUSPENDED else "available"
            sql.append(f"INSERT INTO gateway.slices (id, port, status) VALUES ({s.id}, {s.port}, '{status}');")
            continue
        wanted = {SUSPENDED: "suspended", DESTROYING: "destroying"}.get(s.status)
        if wanted and row["status"] != wanted:
            sql.append(f"UPDATE gateway.slices SET status = '{wanted}' WHERE id = {s.id};")
        elif not wanted and row["status"] in ("suspended", "destroying"):
            # Back in service: to what the gateway had, which user_id still says.
            sql.append(
                "UPDATE gateway.slices SET status = CASE WHEN user_id IS NULL THEN 'available' "
                f"ELSE 'assigned' END WHERE id = {s.id};"
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
    sql = [f"UPDATE gateway.slices SET port = {next(spare)} WHERE id = {s.id};" for s in parked]
    return sql + [f"UPDATE gateway.slices SET port = {s.port} WHERE id = {s.id};" for s in direct + parked]


@operation(is_idempotent=True)
def registration(inv: Inventory):
    """One gateway.slices row per inventory slice, with its port and the inventory's status."""
    state = fleet(inv)
    sql = registration_sql(inv, state["slices"] if state else None)
    if not sql:
        host.noop(f"gateway.slices matches the inventory ({len(inv.slices)} slices)")
        return
    yield StringCommand(heredoc(inv, "BEGIN;\n" + "\n".join(sql) + "\nCOMMIT;", inv.gateway.database))


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
