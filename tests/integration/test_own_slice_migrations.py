"""slice_defaults.migrations: an operator's own backend brings its own slice schema, with the
same ledger, template and stamps; a fleet converged on one history refuses another."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.fix_deploy import run_deploy

pytestmark = pytest.mark.integration

INSTANCE = "itownsql"
PG_PORT = 5462
SECTIONS = dict(postgres={"port": PG_PORT}, docker={"subnet": "172.30.62.0/24"})
SLICE_DEFAULTS = {"port_base": 6621}


def su(db: str, sql: str) -> list[str]:
    out = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-p", str(PG_PORT), "-d", db,
         "-c", sql],
        capture_output=True, text=True, check=True,
    ).stdout
    return out.splitlines()


def _tenant(db: str) -> psycopg.Connection:
    password = Path(f"/etc/sliceops/{INSTANCE}/secrets/{db}.password").read_text().strip()
    return psycopg.connect(host="127.0.0.1", port=PG_PORT, dbname=db, user=db, password=password, connect_timeout=5)


def test_an_own_migrations_folder_is_the_slice_schema_and_the_built_in_one_is_then_refused(make_inventory, tmp_path):
    own = tmp_path / "own-sql"
    own.mkdir()
    (own / "0001_items.sql").write_text("CREATE TABLE items (id bigint PRIMARY KEY, note text);\n")
    with_own = make_inventory(INSTANCE, [{"id": 1}], **SECTIONS, slice_defaults={**SLICE_DEFAULTS, "migrations": "own-sql"})

    first = run_deploy(with_own)
    assert first.returncode == 0, first.output[-3000:]
    assert "created wa_slice_1 from sliceops_slice_template (migrations up to 0001_items.sql)" in first.output
    assert su("wa_slice_1", "SELECT version || ' ' || name FROM sliceops.schema_migrations") == ["0001 items"]
    with _tenant("wa_slice_1") as conn:
        conn.execute("INSERT INTO items VALUES (1, 'kept')")
        assert conn.execute("SELECT to_regclass('public.accounts')").fetchone() == (None,)

    # The same fleet, pointed back at the built-in migrations: refused before anything moves.
    built_in = make_inventory(INSTANCE, [{"id": 1}], **SECTIONS, slice_defaults=SLICE_DEFAULTS)
    refused = run_deploy(built_in)
    assert refused.returncode != 0
    assert "sql/slice/ does not begin with what the slice databases applied: wa_slice_1: " in refused.output
    assert su("wa_slice_1", "SELECT version FROM sliceops.schema_migrations") == ["0001"]
    assert su("wa_slice_1", "SELECT to_regclass('public.contacts') IS NULL, (SELECT note FROM items)") == ["t|kept"]

    # The folder grows: the next deploy applies only the new file.
    (own / "0002_notes.sql").write_text("ALTER TABLE items ADD COLUMN at timestamp;\n")
    with_own = make_inventory(INSTANCE, [{"id": 1}], **SECTIONS, slice_defaults={**SLICE_DEFAULTS, "migrations": "own-sql"})
    grown = run_deploy(with_own)
    assert grown.returncode == 0, grown.output[-3000:]
    assert "applied 0002_notes.sql to wa_slice_1" in grown.output
    assert su("wa_slice_1", "SELECT note FROM items WHERE at IS NULL") == ["kept"]
