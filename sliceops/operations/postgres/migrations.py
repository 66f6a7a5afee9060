"""Numbered migrations: every database's pending files applied in one transaction under an
advisory lock, re-checked against the ledger once the lock is held; a slice database's run
ends by stamping it."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation

from sliceops import factcache, progress
from sliceops.errors import MigrationError
from sliceops.facts.postgres import DATABASES, ROWS, Fleet
from sliceops.inventory import Inventory
from sliceops.migrations import Migration, discover, pending
from sliceops.operations.postgres.grants import monitor_grants, tenant_grants
from sliceops.operations.postgres.stamps import slice_migrations, slice_stamp, stamp_sql
from sliceops.operations.postgres.state import fleet, heredoc
from sliceops.operations import sentences
from sliceops.operations.util import as_script, refuses
from sliceops.shell import ident, literal, quote


# One constant advisory-lock key for every migration run: two deploys serialise on it.
MIGRATION_LOCK = 74281903


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


def migration_plan(inv: Inventory, state: Fleet) -> list[tuple[str, str, list[Migration], str, str]]:
    """[(database, owner, pending migrations, grants, stamp)] for every database that needs work.

    A slice database whose stamp is current was not read and needs nothing; any other is
    stamped by its run, even one that only lacked the stamp."""
    stamped = state.stamped
    plan = []
    gw = inv.gateway.database
    todo = pending(gw, discover("gateway"), state.ledgers.get(gw, {}))
    if todo or not state.monitor_ok:
        plan.append((gw, inv.gateway.role, todo, monitor_grants(), ""))
    slice_files = slice_migrations(inv)
    owner = inv.slice_defaults.role
    current = slice_stamp(inv)
    for s in inv.kept_slices():
        if s.database in stamped:
            continue
        todo = pending(s.database, slice_files, state.ledgers.get(s.database, {}))
        plan.append((s.database, owner, todo, tenant_grants(owner, s.login_role), current))
    return plan


def history_problems(inv: Inventory, state: Fleet) -> list[str]:
    """One line per slice database whose applied history the slice migrations do not begin
    with (an applied file missing or changed, a new file numbered below an applied one)."""
    files = slice_migrations(inv)
    out = []
    for s in inv.kept_slices():
        if s.database in state.stamped:
            continue  # its stamp vouches for these very files
        try:
            pending(s.database, files, state.ledgers.get(s.database, {}))
        except MigrationError as exc:
            out.append(str(exc))
    return out


@operation(is_idempotent=True)
@refuses
def migration_history(inv: Inventory):
    """Refuse, before anything changes, slice migrations that do not continue what the slice
    databases applied: switching a converged fleet to another slice_defaults.migrations
    folder (or editing an applied file) must not half-apply."""
    problems = history_problems(inv, fleet(inv, reads={DATABASES}))
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
    for i, (database, owner, todo, grants, stamp_value) in enumerate(plan, 1):
        script = migration_script(inv, database, owner, todo, grants, stamp_value)
        parts.append(f"{heredoc(inv, script, database)}\n[ $? -eq 0 ] || failed=\"$failed \"{quote(database)}")
        parts.append(progress.shell("migrations", i, len(plan), database))
    parts.append(
        'if [ -n "$failed" ]; then echo "sliceops: migrations failed (rolled back) in:$failed" >&2; exit 1; fi'
    )
    return "\n".join(parts)


@operation(is_idempotent=True)
@refuses
def migrations(inv: Inventory):
    """Apply pending numbered migrations to every database, each database atomically."""
    state = fleet(inv, reads={DATABASES})
    todo = migration_plan(inv, state)
    if not todo:
        host.noop(f"all {len(inv.kept_slices()) + 1} databases are at the newest migration")
        return
    sentences.migrations(inv, state.databases, todo)
    # Migrating the gateway may make or change gateway.slices itself: its rows are read again.
    gateway = any(database == inv.gateway.database for database, *_ in todo)
    factcache.touches(DATABASES, *([ROWS] if gateway else []))
    yield from as_script(inv.share_dir, "migrations", migrate_command(inv, todo))
