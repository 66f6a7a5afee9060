"""Databases: the gateway's and one per kept slice, each closed to PUBLIC and open to its one
role; new slice databases are copies of the migrated template, rebuilt when its history
stops matching the files (it holds no tenant's data)."""

from __future__ import annotations

import dataclasses

from pyinfra import host, state as pyinfra_state
from pyinfra.api import operation

from sliceops import factcache, plan, progress
from sliceops.errors import MigrationError
from sliceops.facts.postgres import DATABASES, Fleet
from sliceops.inventory import MONITOR_ROLE, TEMPLATE_DB, Inventory
from sliceops.migrations import pending
from sliceops.operations.postgres.migrations import migration_script
from sliceops.operations.postgres.stamps import slice_migrations, template_stamp
from sliceops.operations.postgres.state import fleet, heredoc, planned
from sliceops.operations import sentences
from sliceops.operations.util import as_script
from sliceops.shell import echo, ident
from sliceops.operations.postgres.monitors import desired_host_monitors


# Created by initdb; PUBLIC's CONNECT on them is revoked like on every database of ours.
CLOSED_SYSTEM_DATABASES = ("postgres", "template1")


def copy_strategy(version: int) -> str:
    """How a slice database is copied from the template (PostgreSQL 15 lets us choose).
    WAL_LOG copies the template's blocks through the WAL; FILE_COPY copies its files but
    checkpoints the whole cluster before and after. For a template of this size (~9 MB,
    nearly all of it catalogs) WAL_LOG is the cheaper (bench/template_strategy.py: median
    1.1 s against 1.7 s at load 25-50; bench/RESULTS.md); it is 15's default, said here so
    the choice is visible. Before 15
    FILE_COPY is the only way, and the clause does not exist."""
    return " STRATEGY WAL_LOG" if version >= 15 else ""


def desired_databases(inv: Inventory) -> dict[str, tuple[str, str]]:
    """{database: (owner, the one role besides the owner that may connect)}."""
    wanted = {inv.gateway.database: (inv.gateway.role, MONITOR_ROLE)}
    for s in inv.kept_slices():
        wanted[s.database] = (inv.slice_defaults.role, s.login_role)
    return wanted


def databases_sql(inv: Inventory, state: Fleet) -> list[str]:
    have = state.databases
    sql = []
    for db, (owner, grantee) in desired_databases(inv).items():
        cur = have.get(db)
        if cur is None and db != inv.gateway.database:
            # A copy of the migrated template: the slice schema is built once, not once per slice.
            sql.append(f"CREATE DATABASE {ident(db)} OWNER {ident(owner)} TEMPLATE {ident(TEMPLATE_DB)}"
                       f"{copy_strategy(inv.postgres.version)};")
        elif cur is None:
            sql.append(f"CREATE DATABASE {ident(db)} OWNER {ident(owner)};")
        elif cur["owner"] != owner:
            sql.append(f"ALTER DATABASE {ident(db)} OWNER TO {ident(owner)};")
        if cur is None or cur["public_connect"]:
            sql.append(f"REVOKE CONNECT, TEMPORARY ON DATABASE {ident(db)} FROM PUBLIC;")
        if cur is None or grantee not in cur["connect"]:
            sql.append(f"GRANT CONNECT ON DATABASE {ident(db)} TO {ident(grantee)};")
        # Isolation drift (another slice's role granted in by hand) is converged back. The
        # slice hosts' monitors connect to the gateway database (their roles are granted it
        # where they are made: operations/postgres/monitors.py).
        allowed = {grantee} | (set(desired_host_monitors(inv)) if db == inv.gateway.database else set())
        for foreign in sorted(set(cur["connect"] if cur else ()) - allowed):
            sql.append(f"REVOKE CONNECT ON DATABASE {ident(db)} FROM {ident(foreign)};")
    # The cluster's own databases stay open only to those their grants name: any role may
    # otherwise connect to postgres (and template1) and read the catalogs there.
    for db in CLOSED_SYSTEM_DATABASES:
        if have.get(db, {}).get("public_connect"):
            sql.append(f"REVOKE CONNECT, TEMPORARY ON DATABASE {ident(db)} FROM PUBLIC;")
    return sql


def template_command(inv: Inventory, state: Fleet) -> str:
    """Shell bringing the template to the newest slice migrations ('' when it is there already).

    The template is a cache, not data: a history that no longer matches the files (a removed
    or edited migration) rebuilds it instead of stopping the deploy."""
    if TEMPLATE_DB in state.stamped:
        return ""
    owner = inv.slice_defaults.role
    exists = TEMPLATE_DB in state.databases
    todo = None  # None: (re)create it and apply every file
    if exists:
        try:
            todo = pending(TEMPLATE_DB, slice_migrations(inv), state.ledgers.get(TEMPLATE_DB, {}))
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
    state = fleet(inv, reads={DATABASES})  # a role the roles step just made changes nothing here
    sql = databases_sql(inv, state)
    if not sql:
        host.noop(f"all {len(desired_databases(inv))} databases exist, owned and closed to PUBLIC")
        return
    sentences.databases(inv, desired_databases(inv), state.databases, sql)
    if any(s.database not in state.databases for s in inv.kept_slices()) and TEMPLATE_DB not in state.stamped:
        plan.record("postgres", "template", f"{TEMPLATE_DB} brought to the newest slice migrations")
    after = copies_only(inv, state)
    if after is not None and pyinfra_state.is_executing:
        # A new slice's database is a copy of the current template: the migrations step
        # plans from what this step leaves instead of reading every database again.
        planned(inv, after)
        factcache.touches()
    else:
        factcache.touches(DATABASES)
    yield from as_script(inv.share_dir, "databases", databases_command(inv, state, sql))


def copies_only(inv: Inventory, state: Fleet) -> Fleet | None:
    """The cluster as this step leaves it when all it does is copy the current (stamped)
    template for new slices: each copy owned, closed, open to its role, with the template's
    ledger (every slice migration) and no stamp yet. None when the step does anything else
    (builds the template, converges an owner or a grant): then the cluster is read again."""
    wanted = desired_databases(inv)
    copies = [s.database for s in inv.kept_slices() if s.database not in state.databases]
    if not copies or TEMPLATE_DB not in state.stamped or inv.gateway.database not in state.databases:
        return None
    made = {db: {"owner": wanted[db][0], "public_connect": False, "connect": [wanted[db][1]]} for db in copies}
    after = dataclasses.replace(state, databases={**state.databases, **made})
    if databases_sql(inv, after):
        return None
    ledger = {m.version: m.checksum for m in slice_migrations(inv)}
    after.ledgers = {**state.ledgers, **{db: dict(ledger) for db in copies}}
    return after


def databases_command(inv: Inventory, state: Fleet, sql: list[str]) -> str:
    """Shell running `sql` (databases_sql's), the template brought up first when a slice
    database is to be copied from it."""
    shell = ["set -e"]
    have = state.databases
    copies = [s.database for s in inv.kept_slices() if s.database not in have]
    if copies:
        shell.append(template_command(inv, state))
    # A progress line after each copy: at fleet size this is the step's long part.
    creating = {f"CREATE DATABASE {ident(db)}": db for db in copies}
    script, done = [], 0
    for statement in sql:
        script.append(statement)
        db = creating.get(statement.split(" OWNER ", 1)[0])
        if db is not None:
            done += 1
            script.append(progress.psql("databases", done, len(copies), db))
    shell.append(heredoc(inv, "\n".join(script)))
    newest = slice_migrations(inv)[-1].filename if slice_migrations(inv) else "none"
    # A line per database for a few; for a fleet's worth, one line naming a few.
    said = [[db] for db in copies] if len(copies) <= progress.SHOWN else [copies] if copies else []
    shell += [echo(f"created {progress.listed(dbs, 'slice databases')} from {TEMPLATE_DB} (migrations up to {newest})")
              for dbs in said]
    return "\n".join(x for x in shell if x)
