"""Stamps: the digest a migration run writes as its database's comment, and the triggers that
clear it on any hand-made change, so a current database need not be read (facts/postgres.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sliceops.inventory import Inventory
from sliceops.migrations import Migration, discover, discover_folder
from sliceops.operations.postgres.grants import tenant_grants
from sliceops.shell import literal


def stamp_comment(head: str, database: str) -> str:
    """SQL for the comment a current database carries, written by the migration run and
    compared here: `head` ('sliceops <stamp of its kind> ') then the oid of the role named like
    the database (its tenant; '-' for the template), so a dropped and re-created role counts
    as drift too. `head` and `database` are SQL expressions."""
    return f"({head} || coalesce((SELECT r.oid::text FROM pg_roles r WHERE r.rolname = {database}), '-'))"


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
    return stamp("slice", owner, tenant_grants(owner, "<tenant>"), slice_migrations(inv))


def template_stamp(inv: Inventory) -> str:
    return stamp("slice", inv.slice_defaults.role, "", slice_migrations(inv))


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
