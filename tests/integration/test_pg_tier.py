"""The PostgreSQL tier converged for real on this machine, in a test instance of its own:
migrations (upgrade, failure, changed file, concurrency) and tenant isolation with real
connections."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path

import psycopg
import pytest

from tests.fix_deploy import ROOT, run_deploy

pytestmark = pytest.mark.integration

INSTANCE = "itpg"
PG_PORT = 5440
SECTIONS = dict(
    postgres={"port": PG_PORT},
    docker={"subnet": "172.30.40.0/24"},
    slice_defaults={"port_base": 6101},
)


def _secret(role: str) -> str:
    return Path(f"/etc/sliceops/{INSTANCE}/secrets/{role}.password").read_text().strip()


def _connect(db: str, role: str, password: str | None = None):
    return psycopg.connect(
        host="127.0.0.1", port=PG_PORT, dbname=db, user=role,
        password=password if password is not None else _secret(role), connect_timeout=5,
    )


def su(db: str, sql: str) -> list[list[str]]:
    """Run SQL as the postgres superuser (peer authentication: as the postgres OS user)."""
    out = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-F", "\t", "-v", "ON_ERROR_STOP=1",
         "-p", str(PG_PORT), "-d", db, "-c", sql],
        capture_output=True, text=True, check=True,
    ).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.fixture(scope="module")
def sqltree(tmp_path_factory):
    """A private copy of sql/ the tests may add migrations to."""
    tree = tmp_path_factory.mktemp("sql") / "sql"
    shutil.copytree(ROOT / "sql", tree)
    return tree


@pytest.fixture(scope="module")
def converged(tmp_path_factory, sqltree):
    from tests.fix_deploy import teardown_instance
    import yaml

    path = tmp_path_factory.mktemp("inv") / f"{INSTANCE}.yaml"
    path.write_text(yaml.safe_dump({"target": "@local", "instance": INSTANCE, **SECTIONS,
                                    "slices": [{"id": 1}, {"id": 2}, {"id": 3}]}, sort_keys=False))
    env = {"SLICEOPS_SQL_DIR": str(sqltree)}
    first = run_deploy(path, env=env)
    assert first.returncode == 0, first.output[-4000:]
    yield path, env, first
    teardown_instance(INSTANCE)


def ledger(db: str) -> dict[str, str]:
    return dict(su(db, "SELECT version, checksum FROM sliceops.schema_migrations"))


def test_first_deploy_says_what_it_applied_where(converged):
    """The slice schema is built once, in the template; each slice database is its copy."""
    _, _, first = converged
    for db in ("wank_saas", "sliceops_slice_template"):
        assert re.search(rf"applied 0001_\w+\.sql to {db}$", first.output, re.M), db
    for db in ("wa_slice_1", "wa_slice_2", "wa_slice_3"):
        assert re.search(rf"created {db} from sliceops_slice_template \(migrations up to \d{{4}}_\w+\.sql\)$",
                         first.output, re.M), db
        assert not re.search(rf"applied \S+ to {db}$", first.output, re.M), db


def _stamps() -> dict[str, str]:
    return dict(su("postgres", "SELECT datname, coalesce(shobj_description(oid, 'pg_database'), '') "
                               "FROM pg_database WHERE datname ~ '^(wa_slice_|sliceops_)'"))


def test_every_slice_database_and_the_template_carry_their_stamp(converged):
    from sliceops.inventory import load
    from sliceops.operations import postgres as pg

    path, env, _ = converged
    inv = load(path)
    oids = dict(su("postgres", "SELECT rolname, oid FROM pg_roles WHERE rolname ~ '^wa_slice_'"))
    stamps = _stamps()
    assert stamps["sliceops_slice_template"] == f"sliceops {pg.template_stamp(inv)} -"
    for db in ("wa_slice_1", "wa_slice_2", "wa_slice_3"):
        assert stamps[db] == f"sliceops {pg.slice_stamp(inv)} {oids[db]}", db


@pytest.mark.parametrize(
    "drift, check",
    [
        ("REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM wa_slice_2",
         "SELECT bool_and(has_table_privilege('wa_slice_2', c.oid, 'SELECT')) FROM pg_class c "
         "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"),
        ("CREATE TABLE public.it_by_hand (id int)",
         "SELECT coalesce(has_table_privilege('wa_slice_2', to_regclass('public.it_by_hand'), 'SELECT'), true)"),
    ],
    ids=["grant-revoked", "table-made-by-hand"],
)
def test_a_hand_made_change_clears_the_stamp_and_the_next_deploy_reads_and_converges_it(converged, drift, check):
    path, env, _ = converged
    before, converged_value = _stamps(), su("wa_slice_2", check)
    su("wa_slice_2", drift)
    after = _stamps()
    assert su("wa_slice_2", check) != converged_value  # the drift is real
    assert after["wa_slice_2"] == "", "the triggers should have cleared the stamp"
    assert after["wa_slice_1"] == before["wa_slice_1"] and after["wa_slice_3"] == before["wa_slice_3"]
    try:
        out = run_deploy(path, env=env)
        assert out.returncode == 0, out.output[-3000:]
        assert su("wa_slice_2", check) == converged_value
        assert _stamps() == before
    finally:
        su("wa_slice_2", "DROP TABLE IF EXISTS public.it_by_hand")
        run_deploy(path, env=env)


def test_a_deleted_ledger_row_is_read_and_reported_never_skipped(converged):
    """Deleting a ledger row clears the stamp, so the next deploy reads that database and tries
    the file again; migrations need not be idempotent, so it fails loudly (rolled back, the
    database named) instead of trusting the stamp. Putting the row back converges it."""
    path, env, _ = converged
    before = _stamps()
    row = su("wa_slice_2", "SELECT version, name, checksum FROM sliceops.schema_migrations "
                           "ORDER BY version DESC LIMIT 1")[0]
    su("wa_slice_2", f"DELETE FROM sliceops.schema_migrations WHERE version = '{row[0]}'")
    assert _stamps()["wa_slice_2"] == "", "the ledger trigger should have cleared the stamp"
    try:
        out = run_deploy(path, env=env)
        assert out.returncode != 0, "a re-applied, non-idempotent migration must not pass silently"
        assert "wa_slice_2" in out.output and row[1] in out.output, out.output[-3000:]
        assert row[0] not in ledger("wa_slice_2"), "the failed re-apply rolled back"
        assert {k: v for k, v in _stamps().items() if k != "wa_slice_2"} == \
            {k: v for k, v in before.items() if k != "wa_slice_2"}
    finally:
        su("wa_slice_2", "INSERT INTO sliceops.schema_migrations (version, name, checksum) "
                         f"VALUES ('{row[0]}', '{row[1]}', '{row[2]}')")
    again = run_deploy(path, env=env)
    assert again.returncode == 0, again.output[-3000:]
    assert _stamps() == before


def test_second_deploy_changes_nothing(converged):
    path, env, _ = converged
    again = run_deploy(path, env=env)
    assert again.returncode == 0, again.output[-3000:]
    assert again.totals["changed"] == 0, again.changed_ops


def test_every_database_has_its_owner_and_a_full_ledger(converged):
    from sliceops.migrations import discover

    owners = dict(su("postgres", "SELECT datname, pg_get_userbyid(datdba) FROM pg_database "
                               "WHERE datname ~ '^(wank_saas|wa_slice_)'"))
    assert owners == {"wank_saas": "wank_gateway", "wa_slice_1": "wa_slice", "wa_slice_2": "wa_slice", "wa_slice_3": "wa_slice"}
    assert set(ledger("wank_saas")) == {m.version for m in discover("gateway")}
    assert set(ledger("wa_slice_2")) == {m.version for m in discover("slice")}


@pytest.mark.parametrize(
    "role, db, allowed",
    [
        ("wa_slice_1", "wa_slice_1", True),
        ("wa_slice_1", "wa_slice_2", False),
        ("wa_slice_1", "wank_saas", False),
        ("wa_slice_2", "wa_slice_1", False),
        ("wank_gateway", "wank_saas", True),
        ("wank_gateway", "wa_slice_1", False),
    ],
)
def test_credentials_open_their_own_database_only(converged, role, db, allowed):
    if allowed:
        with _connect(db, role) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == db
    else:
        with pytest.raises(psycopg.OperationalError):
            _connect(db, role).close()


def test_slice_role_can_use_its_tables_but_not_change_the_schema(converged):
    with _connect("wa_slice_1", "wa_slice_1") as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").fetchall()]
        assert tables, "the slice schema has no tables"
        conn.execute(f'SELECT count(*) FROM public."{tables[0]}"')
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.intruder (id int)")


def test_a_converged_slice_database_is_seed_004s_schema(converged):
    from tests.integration import _seed004

    with _connect("wa_slice_1", "wa_slice_1") as conn:
        assert _seed004.differences(conn) == []


def test_tenant_sessions_run_in_utc(converged):
    """seed 004's columns are timestamp: the app must read back what it wrote, whatever the server's zone."""
    su("postgres", "ALTER SYSTEM SET timezone = 'America/New_York'")
    su("postgres", "SELECT pg_reload_conf()")
    try:
        with _connect("wa_slice_2", "wa_slice_2") as conn:
            assert conn.execute("SHOW timezone").fetchone()[0] == "UTC"
            (stored,) = conn.execute("SELECT now()::timestamp = (now() AT TIME ZONE 'UTC')").fetchone()
            assert stored
    finally:
        su("postgres", "ALTER SYSTEM RESET timezone")
        su("postgres", "SELECT pg_reload_conf()")


def test_seed_004s_example_queries_run_as_the_tenant_on_their_indexes(converged):
    """Seed 004's three queries, as the SQL Drizzle sends, by the tenant role; sequential scans
    are disabled so the few rows written here do not decide the plan."""
    from tests.integration import _seed_queries as schema

    with _connect("wa_slice_3", "wa_slice_3") as conn:
        # 300 accounts: three of them have a number divisible by 97, the accounts the queries pick
        for statement in schema.load_statements(users=20, accounts=300)[:6]:
            conn.execute(statement)
        conn.execute("SET enable_seqscan = off")
        for case, (template, expected, result_ok) in schema.SEED_QUERIES.items():
            query = schema.query_for(conn, template)
            used, shown = schema.indexes_used(conn, query)
            assert expected <= used, f"{case}: expected {expected}, plan used {used or 'no index'}\n{shown}"
            assert result_ok(conn.execute(query).fetchall()), case
        conn.rollback()


def test_public_cannot_connect_anywhere(converged):
    su("postgres", "DROP ROLE IF EXISTS itpg_stranger")
    su("postgres", "CREATE ROLE itpg_stranger LOGIN PASSWORD 'stranger-pw'")
    try:
        for db in ("wank_saas", "wa_slice_1"):
            with pytest.raises(psycopg.OperationalError):
                _connect(db, "itpg_stranger", "stranger-pw").close()
        # Over the superuser socket pg_hba is not the fence: the grants must refuse too.
        assert su("wa_slice_1", "SELECT has_database_privilege('itpg_stranger', 'wa_slice_1', 'CONNECT'), "
                                "has_database_privilege('wank_gateway', 'wa_slice_1', 'CONNECT'), "
                                "has_database_privilege('wa_slice_2', 'wa_slice_1', 'CONNECT')") == [["f", "f", "f"]]
        # The cluster's own databases too (README: revoked from PUBLIC on every database).
        assert su("postgres", "SELECT has_database_privilege('itpg_stranger', 'postgres', 'CONNECT'), "
                              "has_database_privilege('itpg_stranger', 'template1', 'CONNECT')") == [["f", "f"]]
    finally:
        su("postgres", "DROP ROLE itpg_stranger")


def test_postgresql_holds_scram_verifiers_and_tenant_connection_limits(converged):
    """The deploy handed PostgreSQL verifiers computed on the target (never the password):
    each login role's stored secret is a SCRAM-SHA-256 verifier the real password opens, and
    each tenant role is capped at slice_defaults.db_connections (5)."""
    rows = dict((r[0], r[1:]) for r in su(
        "postgres", "SELECT rolname, left(rolpassword, 14), rolconnlimit FROM pg_authid "
                    "WHERE rolname IN ('wank_gateway', 'wa_slice', 'wa_slice_1', 'wa_slice_2', 'wa_slice_3')"))
    assert {r[0] for r in rows.values()} == {"SCRAM-SHA-256$"}
    assert [rows[f"wa_slice_{i}"][1] for i in (1, 2, 3)] == ["5", "5", "5"]
    assert rows["wank_gateway"][1] == "-1" and rows["wa_slice"][1] == "-1"
    _connect("wa_slice_2", "wa_slice_2").close()  # the verifier matches the password file
    with pytest.raises(psycopg.OperationalError):
        _connect("wa_slice_2", "wa_slice_2", _secret("wa_slice_2") + "x").close()


def test_secrets_are_root_only_and_never_printed(converged):
    _, _, first = converged
    sdir = Path(f"/etc/sliceops/{INSTANCE}/secrets")
    assert oct(sdir.stat().st_mode & 0o777) == "0o700"
    for f in sdir.iterdir():
        assert f.stat().st_uid == 0 and oct(f.stat().st_mode & 0o777) == "0o600", f
        if f.suffix == ".password":
            assert f.read_text().strip() not in first.output


def test_a_new_migration_upgrades_every_existing_database(converged, sqltree):
    path, env, _ = converged
    (sqltree / "slice" / "0900_add_note.sql").write_text("CREATE TABLE public.it_note (id int PRIMARY KEY);\n")
    out = run_deploy(path, env=env)
    assert out.returncode == 0, out.output[-3000:]
    for db in ("wa_slice_1", "wa_slice_2", "wa_slice_3"):
        assert f"applied 0900_add_note.sql to {db}" in out.output
        assert "0900" in ledger(db)
    # The slice role can use the new table: grants follow migrations.
    with _connect("wa_slice_3", "wa_slice_3") as conn:
        conn.execute("INSERT INTO public.it_note VALUES (1)")


def test_a_changed_applied_migration_is_a_loud_error(converged, sqltree):
    path, env, _ = converged
    target = sorted((sqltree / "slice").glob("0001_*.sql"))[0]
    original = target.read_text()
    target.write_text(original + "\n-- edited after it was applied\n")
    try:
        out = run_deploy(path, env=env)
        assert out.returncode != 0
        assert f"{target.name} changed after it was applied" in out.output
    finally:
        target.write_text(original)


def test_a_failing_migration_leaves_its_database_untouched_and_the_others_converged(converged, sqltree):
    path, env, _ = converged
    failing = sqltree / "slice" / "0901_fails_in_slice_2.sql"
    failing.write_text(
        "CREATE TABLE public.it_half (id int);\n"
        "DO $$ BEGIN IF current_database() = 'wa_slice_2' THEN RAISE EXCEPTION 'boom in %', current_database(); END IF; END $$;\n"
    )
    try:
        out = run_deploy(path, env=env)
        assert out.returncode != 0
        assert "migrations failed (rolled back) in: wa_slice_2" in out.output
        assert "0901" in ledger("wa_slice_1") and "0901" in ledger("wa_slice_3")
        assert "0901" not in ledger("wa_slice_2")
        assert su("wa_slice_2", "SELECT to_regclass('public.it_half') IS NULL") == [["t"]]
    finally:
        # Undo by hand what the test added, so later tests start from a converged host.
        failing.unlink()
        for db in ("wa_slice_1", "wa_slice_3"):
            su(db, "DELETE FROM sliceops.schema_migrations WHERE version = '0901'")
            su(db, "DROP TABLE IF EXISTS public.it_half")


def test_two_deploys_at_once_apply_a_migration_once(converged, sqltree):
    path, env, _ = converged
    slow = sqltree / "slice" / "0902_slow.sql"
    slow.write_text("SELECT pg_sleep(1);\nCREATE TABLE public.it_once (id int);\n")
    results = []
    # Plain pyinfra twice, bypassing sliceops' controller lock: only PostgreSQL's advisory
    # lock and the ledger re-check stand between them.
    threads = [threading.Thread(target=lambda: results.append(run_deploy(path, plain=True, env=env))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outputs = "\n".join(r.output for r in results)
    failed = [r for r in results if r.returncode != 0]
    assert not failed, "\n".join(line for line in failed[0].output.splitlines() if "rror" in line or "sliceops" in line)[-4000:]
    for db in ("wa_slice_1", "wa_slice_2", "wa_slice_3"):
        assert outputs.count(f"applied 0902_slow.sql to {db}") == 1, db
        assert su(db, "SELECT count(*) FROM sliceops.schema_migrations WHERE version = '0902'") == [["1"]]
