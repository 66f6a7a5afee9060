"""Fleet-level PostgreSQL operations: each reads `PgFleet` once and emits one command for all
that differs (roles, databases, migrations, registration), or a noop sentence.

Passwords are generated on the target into root-only files; PostgreSQL receives only their
SCRAM-SHA-256 verifiers, computed on the target and fed to psql on its standard input: never
an argument, never pyinfra's output, never the plaintext in a statement a log could keep.
Every name reaches SQL through `sliceops.shell.ident`/`literal` and psql through
`sliceops.psql`, the one door to it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pyinfra import host
from pyinfra.api import StringCommand, operation

from sliceops import factcache, plan, psql
from sliceops.errors import LifecycleError, MigrationError
from sliceops.facts.postgres import PgFleet, stamp_comment
from sliceops.inventory import DESTROYING, MONITOR_ROLE, SLICE_NAME_PREFIX, SUSPENDED, TEMPLATE_DB, Inventory
from sliceops.migrations import Migration, discover, discover_folder, pending
from sliceops.operations import sentences
from sliceops.operations.util import as_script, refuses
from sliceops.shell import command, echo, ident, literal, quote, words

# One constant advisory-lock key for every migration run: two deploys serialise on it.
MIGRATION_LOCK = 74281903
# New slice databases are copies of TEMPLATE_DB, migrated once (see `databases`). It holds no
# tenant's data: when its history stops matching sql/slice/ it is dropped and rebuilt.
# Bumped when what a stamp vouches for changes (the triggers below, the grants' shape).
STAMP_REVISION = 1


def slice_migrations(inv: Inventory) -> tuple[Migration, ...]:
    """The slice databases' migrations: slice_defaults.migrations' folder, or sql/slice/."""
    folder = inv.slice_defaults.migrations
    return discover_folder("slice", Path(folder)) if folder else discover("slice")


def stamp(kind: str, owner: str, grants: str, migrations: tuple[Migration, ...] | None = None) -> str:
    """Digest of the end state a migration run gives a database: its migration files (its
    kind's built-in ones unless given), its owner, and its grants (a slice's with the tenant's
    name left out: the stamp's comment carries the tenant role's oid)."""
    files = [[m.version, m.checksum] for m in (discover(kind) if migrations is None else migrations)]
    text = json.dumps([STAMP_REVISION, kind, owner, files, grants])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def slice_stamp(inv: Inventory) -> str:
    owner = inv.slice_defaults.role
    return stamp("slice", owner, _tenant_grants(owner, "<tenant>"), slice_migrations(inv))


def template_stamp(inv: Inventory) -> str:
    return stamp("slice", inv.slice_defaults.role, "", slice_migrations(inv))


def fleet(inv: Inventory) -> dict | None:
    return factcache.get(
        PgFleet,
        version=inv.postgres.version,
        cluster=inv.cluster,
        port=inv.postgres.port,
        gateway_db=inv.gateway.database,
        secrets_dir=inv.secrets_dir,
        template_db=TEMPLATE_DB,
        slice_stamp=slice_stamp(inv),
        template_stamp=template_stamp(inv),
        slice_prefix=SLICE_NAME_PREFIX,
        monitor_role=MONITOR_ROLE,
    )


def heredoc(inv: Inventory, sql: str, database: str = "postgres") -> str:
    """Shell running `sql` as the superuser in `database` (see `sliceops.psql`)."""
    return psql.script(inv.postgres.port, sql, database)


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


# Computes a SCRAM-SHA-256 verifier (RFC 5802/7677, PostgreSQL's format) from the password
# file named by argv[1], on the target: PostgreSQL stores a verifier given to ALTER ROLE as it
# is, so the plaintext never reaches the server (nor a statement log). 4096 iterations and a
# 16-byte salt are PostgreSQL's own defaults.
_SCRAM_PY = """\
import base64, hashlib, hmac, os, sys
pw = open(sys.argv[1], 'rb').read().strip()
salt, n = os.urandom(16), 4096
key = hashlib.pbkdf2_hmac('sha256', pw, salt, n)
client = hmac.new(key, b'Client Key', 'sha256').digest()
b64 = lambda b: base64.b64encode(b).decode()
print('SCRAM-SHA-256$%d:%s$%s:%s' % (n, b64(salt), b64(hashlib.sha256(client).digest()),
      b64(hmac.new(key, b'Server Key', 'sha256').digest())))
"""


def connection_limits(inv: Inventory, state: dict | None) -> list[str]:
    """Tenant roles that exist with another CONNECTION LIMIT than slice_defaults.db_connections."""
    have = state["roles"] if state else {}
    want = inv.slice_defaults.db_connections
    return [s.login_role for s in inv.kept_slices()
            if s.login_role in have and have[s.login_role].get("connlimit") != want]


def roles_command(inv: Inventory, roles: list[str], with_monitor: bool, limits: list[str] = ()) -> str:
    tenants = {s.login_role: s for s in inv.kept_slices()}
    sd = inv.secrets_dir
    shell = [
        "set -e",
        "umask 077",
        # The instance's directory stays readable (the monitor reads its config there);
        # only secrets/ is closed.
        f"{command('install', '-d', '-m', '0755', '/etc/sliceops', inv.etc_dir)} && "
        f"{command('install', '-d', '-m', '0700', sd)}",
        # 32 alphanumerics: about 190 bits, and nothing a URL or SQL literal must escape.
        f"for f in {words(f'{sd}/{r}.password' for r in roles)}; do "
        f"[ -s \"$f\" ] || tr -dc A-Za-z0-9 </dev/urandom | head -c 32 >\"$f\"; done",
    ]
    for role in roles:
        if role in tenants:
            # printf is the shell's builtin: the password is never an argument of a process.
            url = "DATABASE_URL=postgresql://%s:%s@%s:%s/%s\\n"
            shell.append(
                f"printf {quote(url)} {quote(role)} \"$(cat {quote(f'{sd}/{role}.password')})\" "
                f"{quote(inv.docker.gateway_address)} {int(inv.postgres.port)} {quote(tenants[role].database)} "
                f">{quote(f'{sd}/{role}.env')}"
            )
    # One `\set` line per role, made on the target: psql variable pw<i> holds its verifier.
    shell.append("verifiers=''")
    for i, role in enumerate(roles):
        shell.append(
            # (an assignment, not an && list: `set -e` stops the script if python3 fails)
            f"v=$(python3 -c {quote(_SCRAM_PY)} {quote(f'{sd}/{role}.password')})\n"
            f"verifiers=\"$verifiers\\\\set pw{i} '$v'\n\""
        )
    sql = ["SET log_statement = 'none';"]
    if with_monitor:
        sql.append(_ensure_role_sql(MONITOR_ROLE))
    limit = inv.slice_defaults.db_connections
    for i, role in enumerate(roles):
        sql.append(_ensure_role_sql(role))
        per = f" CONNECTION LIMIT {limit}" if role in tenants else ""
        sql.append(f"ALTER ROLE {ident(role)} WITH LOGIN{per} PASSWORD :'pw{i}';")
    sql += [f"ALTER ROLE {ident(role)} CONNECTION LIMIT {limit};" for role in limits if role not in roles]
    shell.append(psql.script(inv.postgres.port, "\n".join(sql), prelude_var="verifiers"))
    return "\n".join(shell)


def _ensure_role_sql(role: str) -> str:
    return (
        f"SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {literal(role)}) AS missing \\gset\n"
        f"\\if :missing\nCREATE ROLE {ident(role)} LOGIN;\n\\endif"
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
    limits = connection_limits(inv, state)
    if not todo and not with_monitor and not limits:
        host.noop(f"all {len(desired_login_roles(inv)) + 1} roles exist with their credentials and limits")
        return
    sentences.roles(inv, state["roles"] if state else {}, todo, MONITOR_ROLE if with_monitor else None, limits)
    yield from as_script(inv.share_dir, "roles", roles_command(inv, todo, with_monitor, limits))


# --------------------------------------------------------------------------- databases

# Created by initdb; PUBLIC's CONNECT on them is revoked like on every database of ours.
CLOSED_SYSTEM_DATABASES = ("postgres", "template1")


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
        if cur is None and db != inv.gateway.database:
            # A copy of the migrated template: the slice schema is built once, not once per slice.
            sql.append(f"CREATE DATABASE {ident(db)} OWNER {ident(owner)} TEMPLATE {ident(TEMPLATE_DB)};")
        elif cur is None:
            sql.append(f"CREATE DATABASE {ident(db)} OWNER {ident(owner)};")
        elif cur["owner"] != owner:
            sql.append(f"ALTER DATABASE {ident(db)} OWNER TO {ident(owner)};")
        if cur is None or cur["public_connect"]:
            sql.append(f"REVOKE CONNECT, TEMPORARY ON DATABASE {ident(db)} FROM PUBLIC;")
        if cur is None or grantee not in cur["connect"]:
            sql.append(f"GRANT CONNECT ON DATABASE {ident(db)} TO {ident(grantee)};")
        # Isolation drift (another slice's role granted in by hand) is converged back.
        for foreign in sorted(set(cur["connect"] if cur else ()) - {grantee}):
            sql.append(f"REVOKE CONNECT ON DATABASE {ident(db)} FROM {ident(foreign)};")
    # The cluster's own databases stay open only to those their grants name: any role may
    # otherwise connect to postgres (and template1) and read the catalogs there.
    for db in CLOSED_SYSTEM_DATABASES:
        if have.get(db, {}).get("public_connect"):
            sql.append(f"REVOKE CONNECT, TEMPORARY ON DATABASE {ident(db)} FROM PUBLIC;")
    return sql


def template_command(inv: Inventory, state: dict | None) -> str:
    """Shell bringing the template to the newest slice migrations ('' when it is there already).

    The template is a cache, not data: a history that no longer matches the files (a removed
    or edited migration) rebuilds it instead of stopping the deploy."""
    state = state or {"databases": {}, "ledgers": {}, "stamped": []}
    if TEMPLATE_DB in state["stamped"]:
        return ""
    owner = inv.slice_defaults.role
    exists = TEMPLATE_DB in state["databases"]
    todo = None  # None: (re)create it and apply every file
    if exists:
        try:
            todo = pending(TEMPLATE_DB, slice_migrations(inv), state["ledgers"].get(TEMPLATE_DB, {}))
        except MigrationError:
            pass
    create = []
    if todo is None:
        todo = list(slice_migrations(inv))
        create = [
            f"DROP DATABASE IF EXISTS {ident(TEMPLATE_DB)} WITH (FORCE);" if exists else "",
            f"CREATE DATABASE {ident(TEMPLATE_DB)} OWNER {ident(owner)};",
            f"REVOKE CONNECT, TEMPORARY ON DATABASE {ident(TEMPLATE_DB)} FROM PUBLIC;",
        ]
    script = migration_script(inv, TEMPLATE_DB, owner, todo, "", template_stamp(inv))
    parts = [heredoc(inv, "\n".join(q for q in create if q))] if create else []
    return "\n".join(parts + [heredoc(inv, script, TEMPLATE_DB)])


@operation(is_idempotent=True)
def databases(inv: Inventory):
    """The gateway database and one database per kept slice, closed to PUBLIC; new slice
    databases are copies of the migrated template."""
    state = fleet(inv)
    sql = databases_sql(inv, state)
    if not sql:
        host.noop(f"all {len(desired_databases(inv))} databases exist, owned and closed to PUBLIC")
        return
    shell = ["set -e"]
    have = state["databases"] if state else {}
    copies = [s.database for s in inv.kept_slices() if s.database not in have]
    sentences.databases(inv, desired_databases(inv), have, sql)
    if copies:
        shell.append(template_command(inv, state))
        if TEMPLATE_DB not in (state or {}).get("stamped", []):
            plan.record("postgres", "template", f"{TEMPLATE_DB} brought to the newest slice migrations")
    shell.append(heredoc(inv, "\n".join(sql)))
    newest = slice_migrations(inv)[-1].filename if slice_migrations(inv) else "none"
    shell += [echo(f"created {db} from {TEMPLATE_DB} (migrations up to {newest})") for db in copies]
    yield from as_script(inv.share_dir, "databases", "\n".join(x for x in shell if x))


# --------------------------------------------------------------------------- migrations


def _tenant_grants(owner: str, tenant: str) -> str:
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


def _monitor_grants() -> str:
    m = ident(MONITOR_ROLE)
    return "\n".join([
        f"GRANT USAGE ON SCHEMA gateway TO {m};",
        f"GRANT SELECT ON gateway.slices TO {m};",
        f"GRANT UPDATE (last_health_at, wa_connected, wa_phone, storage_bytes) ON gateway.slices TO {m};",
        f"GRANT SELECT, INSERT, DELETE ON gateway.telemetry, gateway.server_telemetry TO {m};",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA gateway TO {m};",
    ])


# Installed in every stamped database, owned by the superuser: any DDL or GRANT (but a
# COMMENT, which the stamp itself is) and any change to the ledger but an INSERT clear the
# database's comment, so the next deploy reads the database instead of trusting the stamp.
_FORGET_STAMP = """\
CREATE OR REPLACE FUNCTION sliceops.forget_stamp() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $f$
BEGIN
  IF tg_tag <> 'COMMENT' THEN
    EXECUTE format('COMMENT ON DATABASE %I IS NULL', current_database());
  END IF;
END $f$;
CREATE OR REPLACE FUNCTION sliceops.forget_stamp_on_ledger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $f$
BEGIN
  EXECUTE format('COMMENT ON DATABASE %I IS NULL', current_database());
  RETURN NULL;
END $f$;
DROP TRIGGER IF EXISTS forget_stamp ON sliceops.schema_migrations;
CREATE TRIGGER forget_stamp AFTER UPDATE OR DELETE OR TRUNCATE ON sliceops.schema_migrations
  FOR EACH STATEMENT EXECUTE FUNCTION sliceops.forget_stamp_on_ledger();
DO $d$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'sliceops_forget_stamp') THEN
    CREATE EVENT TRIGGER sliceops_forget_stamp ON ddl_command_end EXECUTE FUNCTION sliceops.forget_stamp();
  END IF;
END $d$;"""


def stamp_sql(value: str) -> str:
    """The run's last statements: the triggers, then the comment naming the converged state."""
    comment = stamp_comment(literal(f"sliceops {value} "), "current_database()")
    return f"{_FORGET_STAMP}\nSELECT format('COMMENT ON DATABASE %I IS %L', current_database(), {comment}) \\gexec"


def migration_script(
    inv: Inventory, database: str, owner: str, todo: list[Migration], grants: str, stamp_value: str = ""
) -> str:
    """psql script applying `todo` to one database in ONE transaction, under the advisory lock.

    Each file is re-checked against the ledger after the lock is held, so a deploy that
    waited for a concurrent one skips what that one applied instead of applying it twice.
    With `stamp_value`, the transaction ends by stamping the database (see facts.postgres).
    """
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
            f"WHERE version = {literal(m.version)} \\gset",
            "SELECT :'done_checksum' <> '' AS done \\gset",
            "\\if :done",
            f"SELECT :'done_checksum' = {literal(m.checksum)} AS same \\gset",
            "\\if :same",
            f"\\echo {literal(f'skipped {m.filename} in {database}: applied meanwhile by another deploy')}",
            "\\else",
            "DO LANGUAGE plpgsql "
            + literal(f"BEGIN RAISE EXCEPTION USING MESSAGE = {literal(f'{m.filename} in {database} was applied with another checksum')}; END")
            + ";",
            "\\endif",
            "\\else",
            f"SET ROLE {ident(owner)};",
            # psql reads a single-quoted meta-command argument as one word.
            f"\\i {literal(f'{inv.sql_dir(m.kind)}/{m.filename}')}",
            "RESET ROLE;",
            "INSERT INTO sliceops.schema_migrations (version, name, checksum) "
            f"VALUES ({literal(m.version)}, {literal(m.name)}, {literal(m.checksum)});",
            f"\\echo {literal(f'applied {m.filename} to {database}')}",
            "\\endif",
        ]
    lines += [grants]
    if stamp_value:
        lines.append(stamp_sql(stamp_value))
    lines.append("COMMIT;")
    return "\n".join(lines)


def migration_plan(inv: Inventory, state: dict | None) -> list[tuple[str, str, list[Migration], str, str]]:
    """[(database, owner, pending migrations, grants, stamp)] for every database that needs work.

    A slice database whose stamp is current was not read and needs nothing; any other is
    stamped by its run, even one that only lacked the stamp."""
    state = state or {"ledgers": {}, "monitor_ok": False, "stamped": []}
    stamped = state["stamped"]
    plan = []
    gw = inv.gateway.database
    todo = pending(gw, discover("gateway"), state["ledgers"].get(gw, {}))
    if todo or not state["monitor_ok"]:
        plan.append((gw, inv.gateway.role, todo, _monitor_grants(), ""))
    slice_files = slice_migrations(inv)
    owner = inv.slice_defaults.role
    current = slice_stamp(inv)
    for s in inv.kept_slices():
        if s.database in stamped:
            continue
        todo = pending(s.database, slice_files, state["ledgers"].get(s.database, {}))
        plan.append((s.database, owner, todo, _tenant_grants(owner, s.login_role), current))
    return plan


def history_problems(inv: Inventory, state: dict | None) -> list[str]:
    """One line per slice database whose applied history the slice migrations do not begin
    with (an applied file missing or changed, a new file numbered below an applied one)."""
    if not state:
        return []
    files = slice_migrations(inv)
    out = []
    for s in inv.kept_slices():
        if s.database in state["stamped"]:
            continue  # its stamp vouches for these very files
        try:
            pending(s.database, files, state["ledgers"].get(s.database, {}))
        except MigrationError as exc:
            out.append(str(exc))
    return out


@operation(is_idempotent=True)
@refuses
def migration_history(inv: Inventory):
    """Refuse, before anything changes, slice migrations that do not continue what the slice
    databases applied: switching a converged fleet to another slice_defaults.migrations
    folder (or editing an applied file) must not half-apply."""
    problems = history_problems(inv, fleet(inv))
    if problems:
        folder = inv.slice_defaults.migrations
        source = f"slice_defaults.migrations: {folder!r}" if folder else "sql/slice/"
        more = f" (and {len(problems) - 1} more databases)" if len(problems) > 1 else ""
        raise MigrationError(
            f"{inv.path}: {source} does not begin with what the slice databases applied: {problems[0]}{more}"
        )
    host.noop(f"the slice migrations continue the history of all {len(inv.kept_slices())} slice databases")
    return
    yield  # a generator, like every operation


def migrate_command(inv: Inventory, plan) -> str:
    """One shell script: a psql per database needing work; a failure in one database leaves the
    others converged, and the script exits non-zero naming every database that failed."""
    parts = ["failed=''"]
    for database, owner, todo, grants, stamp_value in plan:
        script = migration_script(inv, database, owner, todo, grants, stamp_value)
        parts.append(f"{heredoc(inv, script, database)}\n[ $? -eq 0 ] || failed=\"$failed \"{quote(database)}")
    parts.append(
        'if [ -n "$failed" ]; then echo "sliceops: migrations failed (rolled back) in:$failed" >&2; exit 1; fi'
    )
    return "\n".join(parts)


@operation(is_idempotent=True)
@refuses
def migrations(inv: Inventory):
    """Apply pending numbered migrations to every database, each database atomically."""
    state = fleet(inv)
    todo = migration_plan(inv, state)
    if not todo:
        host.noop(f"all {len(inv.kept_slices()) + 1} databases are at the newest migration")
        return
    sentences.migrations(inv, state["databases"] if state else {}, todo)
    yield from as_script(inv.share_dir, "migrations", migrate_command(inv, todo))


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
            sql.append(
                f"INSERT INTO gateway.slices (id, port, status) VALUES ({literal(s.id)}, {literal(s.port)}, {literal(status)});"
            )
            continue
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
    state = fleet(inv)
    sql = registration_sql(inv, state["slices"] if state else None)
    if not sql:
        host.noop(f"gateway.slices matches the inventory ({len(inv.slices)} slices)")
        return
    sentences.registration(inv, (state["slices"] if state else None) or {})
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
