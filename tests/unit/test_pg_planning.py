"""The PostgreSQL planners, pinned as data in the manner of pyinfra's tests/operations:
given this fleet state, exactly these statements (or none).

Cases live in tests/unit/data/pg/<planner>.json. A case's `fleet` lists only the keys the
planner reads; the rest are filled with what PgFleet.parse gives for an empty cluster, so
every state handed to a planner has PgFleet's shape. `fleet: null` is the fact's None
(cluster not running yet). Migrations come from the small tree data/pg/sql/.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from sliceops.errors import LifecycleError, MigrationError, RemoteStateError
from sliceops.facts.postgres import Fleet, PgCluster, PgFleet
from sliceops.inventory import load
from sliceops.migrations import discover
from sliceops.operations import postgres as pg
from sliceops.operations.postgres import migrations as pg_migrations, stamps as pg_stamps

DATA = Path(__file__).parent / "data" / "pg"
SQL = DATA / "sql"
DEFAULT_SLICES = [{"id": 1}, {"id": 2}, {"id": 3}]


def _table(planner: str) -> dict:
    return json.loads((DATA / f"{planner}.json").read_text())


def _cases(planner: str):
    table = _table(planner)
    for name, case in table["cases"].items():
        inventory = {"slices": DEFAULT_SLICES, **table.get("inventory", {}), **case.get("inventory", {})}
        yield pytest.param(inventory, case, id=name)


def _fleet(given: dict | None) -> Fleet:
    """A `Fleet`: the parser's empty-cluster result with the case's keys; `None` is the fact's
    answer while the cluster is not running (an empty fleet, `running` False)."""
    if given is None:
        return PgFleet.parse(["DOWN"])
    given = dict(given)
    if given.get("slices") is not None:
        given["slices"] = {int(k): v for k, v in given["slices"].items()}
    return dataclasses.replace(PgFleet.parse(["SECRETS"]), **given)


@pytest.fixture
def inventory(tmp_path):
    """Build the validated model from an inventory written as YAML, as the deploy would."""

    def build(sections: dict):
        path = tmp_path / "slices.yaml"
        # A fleet (`hosts:`) names no single target.
        base = {} if "hosts" in sections else {"target": "@local"}
        path.write_text(yaml.safe_dump({**base, **sections}, sort_keys=False))
        return load(path)

    return build


def _discover_from(monkeypatch, find) -> None:
    """Every module of the PostgreSQL operations that lists migration files lists them with `find`."""
    for module in (pg_stamps, pg_migrations):
        monkeypatch.setattr(module, "discover", find)


@pytest.fixture
def data_migrations(monkeypatch):
    """Point the planner at data/pg/sql so ledgers in the cases can pin checksums."""
    _discover_from(monkeypatch, lambda kind: discover(kind, SQL))


def test_the_empty_cluster_shape_is_what_the_cases_build_on():
    assert PgFleet.parse(["SECRETS"]) == Fleet(
        running=True, roles={}, databases={}, ledgers={}, stamped=[], slices=None, monitor_ok=False, secrets=[],
    )
    assert PgFleet.parse(["DOWN"]) == Fleet(running=False)


# --------------------------------------------------------------------------- roles


@pytest.mark.parametrize(("sections", "case"), list(_cases("roles_to_converge")))
def test_roles_to_converge(inventory, sections, case):
    assert pg.roles_to_converge(inventory(sections), _fleet(case["fleet"])) == case["expect"]


def test_the_roles_command_never_carries_a_password(inventory):
    """Passwords are generated on the target and read from root-only files: the command
    pyinfra logs holds the file names, never a literal password or URL with one."""
    inv = inventory({"slices": DEFAULT_SLICES})
    command = pg.roles_command(inv, ["wank_gateway", "wa_slice_1"], with_monitor=True)
    assert "umask 077" in command and "install -d -m 0700 /etc/sliceops/main/secrets" in command
    # One program on the target makes every password file and verifier, reading the roles as
    # JSON on its standard input: the command holds no substitution per role, and only
    # verifiers, piped into psql ahead of the script, reach PostgreSQL.
    shell_text = command.replace(shlex.quote(pg.CREDENTIALS_PY), "PROGRAM")
    assert "PROGRAM" in shell_text and "$(" not in shell_text and "`" not in shell_text
    request = json.loads(command.split("<<'SLICEOPS_ROLES'\n")[1].split("\nSLICEOPS_ROLES\n")[0])
    assert request == {"dir": "/etc/sliceops/main/secrets", "roles": [
        ["wank_gateway", None, None],
        # The slice gets a credentials file with its URL; the owner role does not.
        ["wa_slice_1", "postgresql://wa_slice_1:", "@172.30.0.1:5432/wa_slice_1?sslmode=verify-full"],
    ]}
    assert re.findall(r"PASSWORD\s+(\S+)", command) == [":'pw0';", ":'pw1';"]
    assert "log_statement = 'none'" in command
    assert "wank_gateway.env" not in command


def test_the_credentials_program_writes_files_and_hands_psql_only_verifiers(tmp_path):
    """The target program as the deploy runs it (Debian's python3, a JSON request on stdin):
    root-only password and credentials files, stable across runs, and on stdout only `\\set`
    lines of verifiers, one progress line per role on stderr."""
    import subprocess, sys

    request = json.dumps({"dir": str(tmp_path), "roles": [
        ["owner", None, None], ["wa_slice_1", "postgresql://wa_slice_1:", "@h:1/db"]]})
    (tmp_path / "owner.password").write_text("keptPassword1\n")
    runs = [subprocess.run([sys.executable, "-c", pg.CREDENTIALS_PY], input=request, capture_output=True, text=True,
                           check=True) for _ in range(2)]
    pw = (tmp_path / "wa_slice_1.password").read_text()
    assert re.fullmatch(r"[A-Za-z0-9]{32}", pw)
    assert (tmp_path / "owner.password").read_text() == "keptPassword1\n"
    assert (tmp_path / "wa_slice_1.env").read_text() == f"DATABASE_URL=postgresql://wa_slice_1:{pw}@h:1/db\n"
    assert not (tmp_path / "owner.env").exists()
    for name in ("wa_slice_1.password", "wa_slice_1.env"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "wa_slice_1.password").read_text() == pw  # the second run kept it
    for run in runs:
        lines = run.stdout.splitlines()
        assert [line.split(" ")[:2] for line in lines] == [["\\set", "pw0"], ["\\set", "pw1"]]
        assert pw not in run.stdout and "keptPassword1" not in run.stdout + run.stderr
        assert run.stderr.splitlines() == ["sliceops-progress roles 1 2 owner", "sliceops-progress roles 2 2 wa_slice_1"]


def test_the_verifier_made_on_the_target_is_the_scram_postgresql_checks(tmp_path):
    """Check the target program's verifier with SCRAM's own proof
    (RFC 5802): StoredKey = H(HMAC(SaltedPassword, "Client Key")), ServerKey likewise."""
    import base64, hashlib, hmac

    from sliceops.operations.postgres import credentials

    out = credentials.verifier(b"s3cretAlnum")
    m = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)", out)
    assert m, out
    n, salt, stored, server = int(m[1]), *(base64.b64decode(x) for x in m.groups()[1:])
    key = hashlib.pbkdf2_hmac("sha256", b"s3cretAlnum", salt, n)
    assert n == 4096 and len(salt) == 16
    assert stored == hashlib.sha256(hmac.new(key, b"Client Key", "sha256").digest()).digest()
    assert server == hmac.new(key, b"Server Key", "sha256").digest()
    assert "s3cretAlnum" not in out


# --------------------------------------------------------------------------- databases


@pytest.mark.parametrize(("sections", "case"), list(_cases("databases_sql")))
def test_databases_sql(inventory, sections, case):
    assert pg.databases_sql(inventory(sections), _fleet(case["fleet"])) == case["expect"]


@pytest.mark.parametrize(("version", "clause"), [(15, " STRATEGY WAL_LOG"), (17, " STRATEGY WAL_LOG"), (14, "")])
def test_a_new_slice_database_is_copied_through_the_wal_where_postgresql_offers_it(inventory, version, clause):
    # bench/template_strategy.py: WAL_LOG cheaper than FILE_COPY's two checkpoints for
    # this template; before 15 the clause does not exist (FILE_COPY is the only way).
    inv = inventory({"postgres": {"version": version}, "slices": [{"id": 1}]})
    sql = pg.databases_sql(inv, _fleet({}))
    assert f'CREATE DATABASE "wa_slice_1" OWNER "wa_slice" TEMPLATE "sliceops_slice_template"{clause};' in sql, sql


def test_a_foreign_connect_grant_on_a_slice_database_is_revoked(inventory):
    inv = inventory({"slices": [{"id": 1}, {"id": 2}]})
    state = _fleet({"databases": {
        "wank_saas": {"owner": "wank_gateway", "public_connect": False, "connect": ["sliceops_monitor"]},
        "wa_slice_1": {"owner": "wa_slice", "public_connect": False, "connect": ["wa_slice_1", "wa_slice_2"]},
        "wa_slice_2": {"owner": "wa_slice", "public_connect": False, "connect": ["wa_slice_2"]},
    }})
    sql = pg.databases_sql(inv, state)
    assert any(re.match(r'REVOKE .*CONNECT.* ON DATABASE "wa_slice_1" FROM "wa_slice_2";', q) for q in sql), sql


# --------------------------------------------------------------------------- migrations


@pytest.mark.parametrize(("sections", "case"), list(_cases("migration_plan")))
def test_migration_plan(inventory, data_migrations, sections, case):
    inv = inventory(sections)
    grants = _table("migration_plan")["grants"]
    if "raises" in case:
        with pytest.raises(MigrationError) as caught:
            pg.migration_plan(inv, _fleet(case["fleet"]))
        assert str(caught.value) == case["raises"]
        return
    plan = [
        {
            "database": database,
            "owner": owner,
            "files": [m.filename for m in todo],
            "grants": grants_sql.splitlines(),
        }
        for database, owner, todo, grants_sql, _ in pg.migration_plan(inv, _fleet(case["fleet"]))
    ]
    expected = [
        {
            **step,
            "grants": grants["monitor"] if step["grants"] == "monitor"
            else [line.replace("{tenant}", step["grants"].split()[1]) for line in grants["tenant"]],
        }
        for step in case["expect"]
    ]
    assert plan == expected


def test_a_fresh_host_plans_every_shipped_file_for_every_database(inventory):
    inv = inventory({"slices": DEFAULT_SLICES})
    plan = pg.migration_plan(inv, _fleet(None))
    assert [(db, owner) for db, owner, _, _, _ in plan] == [
        ("wank_saas", "wank_gateway"), ("wa_slice_1", "wa_slice"), ("wa_slice_2", "wa_slice"), ("wa_slice_3", "wa_slice"),
    ]
    assert plan[0][2] == list(discover("gateway"))
    assert all(todo == list(discover("slice")) for _, _, todo, _, _ in plan[1:])


@pytest.fixture
def script(inventory, data_migrations):
    inv = inventory({"slices": DEFAULT_SLICES})
    todo = list(discover("slice", SQL))
    grants = pg.migration_plan(inv, _fleet(None))[1][3]
    return todo, pg.migration_script(inv, "wa_slice_1", "wa_slice", todo, grants).splitlines()


def test_the_migration_script_is_one_transaction(script):
    _, lines = script
    assert lines[0] == "BEGIN;" and lines[-1] == "COMMIT;"
    assert lines.count("BEGIN;") == 1 and lines.count("COMMIT;") == 1
    assert not [line for line in lines if line.upper().startswith(("ROLLBACK", "END;", "START TRANSACTION"))]


def test_the_advisory_lock_is_taken_inside_the_transaction_before_any_file(script):
    _, lines = script
    lock = lines.index(f"SELECT pg_advisory_xact_lock({pg.MIGRATION_LOCK}) \\gset")
    first_file = next(i for i, line in enumerate(lines) if line.startswith("\\i '"))
    assert 0 < lock < first_file


def test_each_file_runs_as_the_owner_and_is_recorded_with_its_checksum(script):
    todo, lines = script
    for m in todo:
        include = lines.index(f"\\i '/usr/local/share/sliceops/main/sql/slice/{m.filename}'")
        assert lines[include - 1] == 'SET ROLE "wa_slice";'
        assert lines[include + 1] == "RESET ROLE;"
        assert lines[include + 2] == (
            "INSERT INTO sliceops.schema_migrations (version, name, checksum) "
            f"VALUES ('{m.version}', '{m.name}', '{m.checksum}');"
        )
        assert lines[include + 3] == f"\\echo 'applied {m.filename} to wa_slice_1'"
    assert todo[0].checksum == "2378c8d853e256fe0c5074c294f855447444b781a770aabc35bf924640b84a3e"


def test_a_file_applied_meanwhile_is_skipped_or_refused_after_the_lock(script):
    """A deploy that waited for a concurrent one re-reads the ledger under the lock."""
    todo, lines = script
    text = "\n".join(lines)
    for m in todo:
        recheck = text.index(f"WHERE version = '{m.version}' \\gset")
        assert text.index("pg_advisory_xact_lock") < recheck < text.index(f"\\i '/usr/local/share/sliceops/main/sql/slice/{m.filename}'")
        assert f"SELECT :'done_checksum' = '{m.checksum}' AS same \\gset" in text
        assert f"{m.filename} in wa_slice_1 was applied with another checksum''" in text


def test_the_grants_come_after_the_files_inside_the_transaction(script):
    _, lines = script
    grant = lines.index('GRANT USAGE ON SCHEMA public TO "wa_slice_1";')
    last_insert = max(i for i, line in enumerate(lines) if line.startswith("INSERT INTO sliceops.schema_migrations"))
    assert last_insert < grant < lines.index("COMMIT;")


def test_grants_alone_still_run_in_a_transaction_under_the_lock(inventory):
    inv = inventory({"slices": DEFAULT_SLICES})
    lines = pg.migration_script(inv, "wa_slice_2", "wa_slice", [], "GRANT X;").splitlines()
    assert lines[0] == "BEGIN;" and lines[-1] == "COMMIT;" and lines[-2] == "GRANT X;"
    assert not [line for line in lines if line.startswith(("\\i ", "SET ROLE", "INSERT"))]


def test_a_stamped_run_ends_with_its_triggers_then_the_comment_inside_the_transaction(inventory):
    inv = inventory({"slices": DEFAULT_SLICES})
    lines = pg.migration_script(inv, "wa_slice_2", "wa_slice", [], "GRANT X;", "abc123").splitlines()
    comment = next(i for i, line in enumerate(lines) if "COMMENT ON DATABASE %I IS %L" in line)
    assert "'sliceops abc123 '" in lines[comment] and lines[comment].endswith("\\gexec")
    assert lines.index("GRANT X;") < comment == len(lines) - 2 and lines[-1] == "COMMIT;"
    body = "\n".join(lines)
    assert "CREATE EVENT TRIGGER sliceops_forget_stamp ON ddl_command_end" in body
    assert "AFTER UPDATE OR DELETE OR TRUNCATE ON sliceops.schema_migrations" in body


def test_an_unstamped_run_writes_no_comment(script):
    _, lines = script
    assert not [line for line in lines if "COMMENT ON DATABASE" in line or "EVENT TRIGGER" in line]


def test_the_stamp_follows_the_files_the_owner_and_the_grants(monkeypatch, inventory):
    inv = inventory({"slices": DEFAULT_SLICES})
    files = list(discover("slice", SQL))
    _discover_from(monkeypatch, lambda kind: tuple(files))
    base = pg.slice_stamp(inv)
    assert base == pg.slice_stamp(inv) and len(base) == 24
    assert pg.template_stamp(inv) != base  # the template carries no tenant grants
    assert pg.stamp("slice", "someone_else", "") != pg.template_stamp(inv)
    files[-1] = type(files[-1])(files[-1].kind, files[-1].version, files[-1].name, "0" * 64)
    assert pg.slice_stamp(inv) != base  # an edited file is another end state
    files.pop()
    assert pg.slice_stamp(inv) not in (base,)


def _template_state(**given):
    return _fleet({"databases": {}, "ledgers": {}, "stamped": [], **given})


def test_the_template_is_created_and_fully_migrated_when_missing(inventory, data_migrations):
    inv = inventory({"slices": DEFAULT_SLICES})
    shell = pg.template_command(inv, _template_state())
    assert 'CREATE DATABASE "sliceops_slice_template" OWNER "wa_slice";' in shell
    assert "DROP DATABASE" not in shell
    assert re.findall(r"\\i '\S+/slice/(\S+)'", shell) == ["0001_contacts.sql", "0002_chats.sql"]
    assert f"'sliceops {pg.template_stamp(inv)} '" in shell


def test_a_stamped_template_needs_nothing(inventory, data_migrations):
    inv = inventory({"slices": DEFAULT_SLICES})
    state = _template_state(databases={"sliceops_slice_template": {}}, stamped=["sliceops_slice_template"])
    assert pg.template_command(inv, state) == ""


def test_a_template_behind_gets_only_what_it_lacks(inventory, data_migrations):
    inv = inventory({"slices": DEFAULT_SLICES})
    first = discover("slice", SQL)[0]
    state = _template_state(
        databases={"sliceops_slice_template": {}}, ledgers={"sliceops_slice_template": {first.version: first.checksum}}
    )
    shell = pg.template_command(inv, state)
    assert "CREATE DATABASE" not in shell
    assert re.findall(r"\\i '\S+/slice/(\S+)'", shell) == ["0002_chats.sql"]


def test_a_template_whose_history_no_longer_matches_the_files_is_rebuilt(inventory, data_migrations):
    """The template holds no tenant's data: an edited or removed file rebuilds it, where a
    slice database would stop the deploy."""
    inv = inventory({"slices": DEFAULT_SLICES})
    state = _template_state(
        databases={"sliceops_slice_template": {}}, ledgers={"sliceops_slice_template": {"0001": "0" * 64}}
    )
    shell = pg.template_command(inv, state)
    drop = shell.index('DROP DATABASE IF EXISTS "sliceops_slice_template" WITH (FORCE);')
    assert drop < shell.index('CREATE DATABASE "sliceops_slice_template"')
    assert re.findall(r"\\i '\S+/slice/(\S+)'", shell) == ["0001_contacts.sql", "0002_chats.sql"]


# --------------------------------------------------------------------------- slice_defaults.migrations


@pytest.fixture
def own_migrations(tmp_path, inventory):
    """An inventory whose slice_defaults.migrations names a folder of two files of its own."""
    folder = tmp_path / "own"
    folder.mkdir()
    (folder / "0001_items.sql").write_text("CREATE TABLE items (id bigint PRIMARY KEY);\n")
    (folder / "0002_notes.sql").write_text("CREATE TABLE notes (id bigint PRIMARY KEY);\n")
    return inventory({"slices": DEFAULT_SLICES, "slice_defaults": {"migrations": "own"}}), folder


def test_an_own_folder_replaces_the_built_in_slice_migrations_everywhere(own_migrations, inventory):
    inv, folder = own_migrations
    built_in = inventory({"slices": DEFAULT_SLICES})
    assert [m.filename for m in pg.slice_migrations(inv)] == ["0001_items.sql", "0002_notes.sql"]
    assert pg.slice_stamp(inv) != pg.slice_stamp(built_in) and pg.template_stamp(inv) != pg.template_stamp(built_in)
    template = pg.template_command(inv, _template_state())
    assert re.findall(r"\\i '(\S+)'", template) == [
        f"{inv.share_dir}/slice-migrations/0001_items.sql", f"{inv.share_dir}/slice-migrations/0002_notes.sql",
    ]
    plan = pg.migration_plan(inv, _fleet({"ledgers": {}, "stamped": []}))
    assert [m.filename for m in plan[1][2]] == ["0001_items.sql", "0002_notes.sql"]
    script = pg.migration_script(inv, "wa_slice_1", "wa_slice", plan[1][2], "")
    assert f"\\i '{inv.share_dir}/slice-migrations/0002_notes.sql'" in script
    gateway = pg.migration_script(inv, "wank_saas", "wank_gateway", list(discover("gateway")), "")
    assert f"\\i '{inv.share_dir}/sql/gateway/" in gateway


def test_a_fleet_that_applied_the_built_in_files_refuses_a_folder_that_does_not_begin_with_them(own_migrations):
    inv, _ = own_migrations
    built_in = {m.version: m.checksum for m in discover("slice")}
    state = _fleet({"ledgers": {f"wa_slice_{i}": built_in for i in (1, 2, 3)}, "stamped": []})
    problems = pg.history_problems(inv, state)
    assert len(problems) == 3 and all("changed after it was applied" in p for p in problems)


def test_a_fleet_that_applied_the_start_of_the_folder_continues_with_the_rest(own_migrations):
    inv, _ = own_migrations
    first = pg.slice_migrations(inv)[0]
    state = _fleet({"ledgers": {"wa_slice_1": {first.version: first.checksum}}, "stamped": ["wa_slice_2"]})
    assert pg.history_problems(inv, state) == []
    assert pg.history_problems(inv, _fleet(None)) == []  # nothing converged yet


def test_the_refusal_names_the_inventory_the_key_and_the_folder(own_migrations, monkeypatch):
    inv, folder = own_migrations
    built_in = {m.version: m.checksum for m in discover("slice")}
    monkeypatch.setattr(pg_migrations, "fleet", lambda inv, **_: _fleet({"ledgers": {"wa_slice_1": built_in}, "stamped": []}))
    (command,) = [str(c) for c in pg_migrations.migration_history._inner(inv)]
    refusal = shlex.split(command)[2]  # printf '%s\n' '<the line>' >&2; exit 1
    assert command.endswith("exit 1")
    assert (
        f"{inv.path}: slice_defaults.migrations: '{folder}' does not begin with what the slice databases applied: "
        "wa_slice_1: 0001_items.sql changed after it was applied" in refusal
    )


# --------------------------------------------------------------------------- registration


@pytest.mark.parametrize(("sections", "case"), list(_cases("registration_sql")))
def test_registration_sql(inventory, sections, case):
    rows = _fleet({"slices": case["rows"]}).slice_rows if case["rows"] is not None else None
    assert pg.registration_sql(inventory(sections), rows) == case["expect"]


@pytest.mark.parametrize(("sections", "case"), list(_cases("registration_sql")))
def test_registration_never_writes_what_the_gateway_owns(inventory, sections, case):
    """Only id, port and status are written; status only to suspended/destroying, or back
    via user_id (read, never written); no row is ever deleted."""
    rows = _fleet({"slices": case["rows"]}).slice_rows if case["rows"] is not None else None
    for q in pg.registration_sql(inventory(sections), rows):
        if q.startswith("INSERT"):
            assert re.match(r"INSERT INTO gateway\.slices \(id, port, status, host\) VALUES "
                            r"\(\d+, \d+, '(available|suspended)', '[a-z0-9.-]+'\);$", q), q
        elif q.startswith("UPDATE"):
            m = re.match(r"UPDATE gateway\.slices SET (\w+) = (.+) WHERE id = \d+;$", q)
            assert m and m[1] in ("port", "status", "host") and "," not in m[2].split("CASE")[0], q
            if m[1] == "status":
                assert m[2] in ("'suspended'", "'destroying'") or m[2].startswith("CASE WHEN user_id IS NULL"), q
        else:
            assert q.startswith("SELECT setval("), q


@pytest.mark.parametrize(("sections", "case"), list(_cases("registration_sql")))
def test_setval_follows_the_inserts_only_when_there_are_inserts(inventory, sections, case):
    rows = _fleet({"slices": case["rows"]}).slice_rows if case["rows"] is not None else None
    sql = pg.registration_sql(inventory(sections), rows)
    inserts = [i for i, q in enumerate(sql) if q.startswith("INSERT")]
    setvals = [i for i, q in enumerate(sql) if "setval" in q]
    if inserts:
        assert setvals == [len(sql) - 1] and max(inserts) < setvals[0]
    else:
        assert setvals == []


def _apply_ports(rows: dict, statements: list[str]) -> None:
    """Replay the port updates the way PostgreSQL does, one statement at a time, checking
    gateway.slices' UNIQUE (port) after each (it is not deferrable)."""
    for q in statements:
        m = re.match(r"UPDATE gateway\.slices SET port = (\d+) WHERE id = (\d+);", q)
        if not m:
            continue
        rows[int(m[2])]["port"] = int(m[1])
        ports = [r["port"] for r in rows.values()]
        assert len(ports) == len(set(ports)), f"after {q!r}: two rows on one port {sorted(ports)}"


def test_two_slices_swapping_ports_never_hold_one_port_at_once(inventory):
    inv = inventory({"slices": [{"id": 1, "port": 5003}, {"id": 2, "port": 5001}]})
    rows = {1: {"port": 5001, "status": "available", "user_id": None},
            2: {"port": 5003, "status": "available", "user_id": None}}
    sql = pg.registration_sql(inv, rows)
    _apply_ports(rows, sql)
    assert {i: r["port"] for i, r in rows.items()} == {1: 5003, 2: 5001}


# --------------------------------------------------------------------------- destroy guard


DESTROY_ROWS = {
    2: {"port": 5003, "status": "assigned", "user_id": 42},
    3: {"port": 5005, "status": "available", "user_id": None},
}


def test_destroying_an_assigned_slice_without_force_is_refused_naming_slice_and_user(inventory):
    inv = inventory({"slices": [{"id": 1}, {"id": 2, "status": "destroying"}, {"id": 3, "status": "destroying"}]})
    with pytest.raises(LifecycleError) as caught:
        pg.assert_destroy_allowed(inv, DESTROY_ROWS)
    assert str(caught.value) == (
        f"{inv.path}: refusing to destroy: slice 2 is assigned to user 42 "
        "(add force: true to the entry to destroy anyway)"
    )


@pytest.mark.parametrize(
    ("slices", "rows"),
    [
        pytest.param([{"id": 2, "status": "destroying", "force": True}], DESTROY_ROWS, id="assigned-with-force"),
        pytest.param([{"id": 3, "status": "destroying"}], DESTROY_ROWS, id="unassigned"),
        pytest.param([{"id": 2, "status": "suspended"}], DESTROY_ROWS, id="assigned-but-only-suspended"),
        pytest.param([{"id": 4, "status": "destroying"}], DESTROY_ROWS, id="no-row"),
        pytest.param([{"id": 2, "status": "destroying"}], None, id="no-gateway-table"),
    ],
)
def test_destroying_is_allowed(inventory, slices, rows):
    assert pg.assert_destroy_allowed(inventory({"slices": slices}), rows) is None


def test_every_assigned_slice_is_named_in_one_refusal(inventory):
    rows = {**DESTROY_ROWS, 3: {"port": 5005, "status": "assigned", "user_id": 7}}
    inv = inventory({"slices": [{"id": 2, "status": "destroying"}, {"id": 3, "status": "destroying"}]})
    with pytest.raises(LifecycleError, match=r"slice 2 is assigned to user 42; slice 3 is assigned to user 7 "):
        pg.assert_destroy_allowed(inv, rows)


# --------------------------------------------------------------------------- the facts


def _captured() -> list[str]:
    return (DATA / "fleet_output.txt").read_text().splitlines()


def test_pgfleet_parses_captured_psql_output():
    parsed = PgFleet.parse(_captured())
    expected = json.loads((DATA / "fleet_output.expected.json").read_text())["fleet"]
    assert sorted(parsed.slices) == [1, 2, 3]  # integer ids, as gateway.slices.id
    assert json.loads(json.dumps(dataclasses.asdict(parsed))) == {"running": True, **expected}


@pytest.mark.parametrize("lines", [[], ["DOWN"], ["DOWN", "SECRETS x.password"]], ids=["no-output", "down", "down-first"])
def test_pgfleet_is_an_empty_fleet_while_the_cluster_is_down(lines):
    assert PgFleet.parse(lines) == Fleet(running=False)


def test_pgfleet_without_a_gateway_table_has_slices_none():
    lines = [line for line in _captured() if '"kind" : "slices"' not in line]
    parsed = PgFleet.parse(lines)
    assert parsed.slices is None and parsed.slice_rows == {} and parsed.monitor_ok is False


def test_pgfleet_refuses_a_line_it_cannot_read():
    cut = '{"kind" : "roles", "rows" : [["postgres", tr'
    with pytest.raises(RemoteStateError) as caught:
        PgFleet.parse(["SECRETS", cut])
    assert str(caught.value) == f"unreadable PostgreSQL state line: {cut!r}"


def test_pgfleet_ignores_noise_that_is_not_json():
    assert PgFleet.parse(["SECRETS a.password", "", "psql: warning: something", "SET"]) == Fleet(secrets=["a.password"])


def test_the_captured_state_plans_exactly_the_repairs_it_needs(inventory, data_migrations):
    """End to end through the pure layer: the sample (slice 3's role and database half
    made, slice 2 one migration behind with grants missing) against slices 1-3."""
    inv = inventory({"slices": DEFAULT_SLICES})
    state = PgFleet.parse(_captured())
    assert pg.roles_to_converge(inv, state) == ["wa_slice_3"]
    assert pg.databases_sql(inv, state) == [
        'ALTER DATABASE "wa_slice_3" OWNER TO "wa_slice";',
        'REVOKE CONNECT, TEMPORARY ON DATABASE "wa_slice_3" FROM PUBLIC;',
        'GRANT CONNECT ON DATABASE "wa_slice_3" TO "wa_slice_3";',
        'REVOKE CONNECT, TEMPORARY ON DATABASE "postgres" FROM PUBLIC;',
    ]
    assert [(db, [m.filename for m in todo]) for db, _, todo, _, _ in pg.migration_plan(inv, state)] == [
        ("wa_slice_2", ["0002_chats.sql"]),
        ("wa_slice_3", ["0001_contacts.sql", "0002_chats.sql"]),
    ]
    assert pg.registration_sql(inv, state.slices) == [
        # slice 3's row predates gateway migration 0004 (host NULL); slice 1's names another
        # host (a move in progress: not rewritten here)
        "UPDATE gateway.slices SET host = 'local' WHERE id = 3;",
        "UPDATE gateway.slices SET status = CASE WHEN user_id IS NULL THEN 'available' ELSE 'assigned' END WHERE id = 3;"
    ]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param([], {"installed": False, "exists": False, "running": False, "port": None}, id="nothing"),
        pytest.param(["installed"], {"installed": True, "exists": False, "running": False, "port": None}, id="no-cluster"),
        pytest.param(["installed", "cluster 5432 online"], {"installed": True, "exists": True, "running": True, "port": 5432},
                     id="online"),
        pytest.param(["installed", "cluster 5433 down"], {"installed": True, "exists": True, "running": False, "port": 5433},
                     id="down"),
        pytest.param(["installed", "cluster 5432 online,recovery"],
                     {"installed": True, "exists": True, "running": True, "port": 5432}, id="online-recovery"),
        pytest.param(["", "installed", "  "], {"installed": True, "exists": False, "running": False, "port": None},
                     id="blank-lines"),
    ],
)
def test_pgcluster_parse(lines, expected):
    assert PgCluster.parse(lines) == expected


def test_pgcluster_reads_what_its_command_prints_from_pg_lsclusters(tmp_path):
    """The command's awk turns `pg_lsclusters -h` rows into `cluster <port> <status>`."""
    import subprocess

    command = PgCluster().command(version=15, cluster="main")
    # Run the real command against a pg_lsclusters that prints two clusters' rows.
    fake = tmp_path / "pg_lsclusters"
    fake.write_text(
        "#!/bin/sh\n"
        "echo '15  other   5433 down   postgres /var/lib/postgresql/15/other /var/log/x.log'\n"
        "echo '15  main    5432 online postgres /var/lib/postgresql/15/main /var/log/y.log'\n"
    )
    fake.chmod(0o755)
    out = subprocess.run(["sh", "-c", command], env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
                         capture_output=True, text=True, check=True).stdout
    assert [line for line in out.splitlines() if line.startswith("cluster")] == ["cluster 5432 online"]
    assert PgCluster.parse(out.splitlines())["port"] == 5432


# --------------------------------------------------------------------------- what the databases step says


def _created_lines(inv) -> list[str]:
    from sliceops.operations.postgres.databases import databases_command, databases_sql

    state = _template_state()
    shell = databases_command(inv, state, databases_sql(inv, state))
    return [shlex.split(line)[2] for line in shell.splitlines() if line.startswith("printf") and "created " in line]


def test_the_databases_step_says_a_fleet_s_worth_of_new_databases_in_one_line(inventory):
    many = inventory({"docker": {"subnet": "172.30.0.0/22"}, "slices": [{"id": i} for i in range(1, 501)]})
    (line,) = _created_lines(many)
    assert line.startswith("created 500 slice databases (wa_slice_1, wa_slice_2, wa_slice_3, wa_slice_4, "
                           "wa_slice_5 and 495 more) from sliceops_slice_template (migrations up to ")
    few = _created_lines(inventory({"slices": [{"id": 4}, {"id": 5}, {"id": 6}]}))  # a line each
    assert [line.split(" from ")[0] for line in few] == ["created wa_slice_4", "created wa_slice_5", "created wa_slice_6"]


# --------------------------------------------------------------------------- an add plans from what the databases step leaves


def _converged_three(inv) -> Fleet:
    """Three slices converged: every database owned, closed and open to its role; all stamped."""
    from sliceops.operations.postgres.databases import desired_databases

    have = {db: {"owner": o, "public_connect": False, "connect": [g]} for db, (o, g) in desired_databases(inv).items()}
    have["sliceops_slice_template"] = {"owner": "wa_slice", "public_connect": False, "connect": []}
    for db in pg.databases.CLOSED_SYSTEM_DATABASES:
        have[db] = {"owner": "postgres", "public_connect": False, "connect": []}
    return _fleet({"databases": have, "stamped": ["sliceops_slice_template", "wa_slice_1", "wa_slice_2", "wa_slice_3"],
                   "monitor_ok": True, "ledgers": {"wank_saas": {m.version: m.checksum for m in discover("gateway")}}})


def test_a_new_slice_s_database_is_planned_as_the_template_s_copy_without_reading_again(inventory):
    from sliceops.operations.postgres.databases import copies_only, databases_sql

    three = inventory({"slices": DEFAULT_SLICES})
    state = _converged_three(three)
    assert databases_sql(three, state) == [] and pg.migration_plan(three, state) == []
    four = inventory({"slices": DEFAULT_SLICES + [{"id": 4}]})
    after = copies_only(four, state)
    assert after is not None and databases_sql(four, after) == []
    # The migrations step then stamps the copy and grants its role; nothing to apply.
    ((db, owner, todo, grants, stamp),) = pg.migration_plan(four, after)
    assert (db, owner, todo, stamp) == ("wa_slice_4", "wa_slice", [], pg_stamps.slice_stamp(four))
    assert '"wa_slice_4"' in grants
    assert "wa_slice_4" not in state.databases and "wa_slice_4" not in state.ledgers  # the read is not changed


def test_anything_beyond_copies_reads_the_cluster_again(inventory):
    from sliceops.operations.postgres.databases import copies_only

    four = inventory({"slices": DEFAULT_SLICES + [{"id": 4}]})
    state = _converged_three(four)
    assert copies_only(inventory({"slices": DEFAULT_SLICES}), state) is None  # nothing new
    unstamped = dataclasses.replace(state, stamped=["wa_slice_1", "wa_slice_2", "wa_slice_3"])
    assert copies_only(four, unstamped) is None  # the template is (re)built first
    drift = dataclasses.replace(state, databases={**state.databases, "wa_slice_2": {
        "owner": "wa_slice", "public_connect": True, "connect": ["wa_slice_2"]}})
    assert copies_only(four, drift) is None  # a grant converged too


# --------------------------------------------------------------------------- a new slice in one step


def _converged(inv) -> Fleet:
    """`_converged_three` with what the roles and registration steps leave too: every role with
    its password, limit and files, one gateway row per slice."""
    from sliceops.inventory import MONITOR_ROLE
    from sliceops.operations.postgres.roles import desired_login_roles, tenant_url

    state = _converged_three(inv)
    limit = inv.slice_defaults.db_connections
    tenants = {s.login_role: s for s in inv.kept_slices()}
    roles = {r: {"login": True, "password": True, "connlimit": limit if r in tenants else -1}
             for r in desired_login_roles(inv)}
    roles[MONITOR_ROLE] = {"login": True, "password": False, "connlimit": -1}
    secrets = [f"{r}.password" for r in desired_login_roles(inv)] + [f"{r}.env" for r in tenants]
    return dataclasses.replace(
        state, roles=roles, secrets=sorted(secrets),
        env_urls={f"{r}.env": tenant_url(inv, s, "***") for r, s in tenants.items()},
        slices={s.id: {"port": s.port, "status": "available", "user_id": None, "host": s.host} for s in inv.slices})


def test_a_new_slice_on_a_converged_host_leaves_the_four_steps_nothing(inventory):
    from sliceops.operations.postgres import newslices
    from sliceops.operations.postgres.registry import registration_sql
    from sliceops.operations.postgres.roles import roles_to_converge

    three = inventory({"slices": DEFAULT_SLICES})
    state = _converged(three)
    assert newslices.new_slices(three, state) == [] and newslices.after_adding(three, state, []) is None
    four = inventory({"slices": DEFAULT_SLICES + [{"id": 4}, {"id": 5, "status": "suspended"}]})
    new = newslices.new_slices(four, state)
    assert [s.id for s in new] == [4, 5]
    after = newslices.after_adding(four, state, new)
    assert after is not None
    assert (roles_to_converge(four, after), pg.databases_sql(four, after), pg.migration_plan(four, after),
            registration_sql(four, after.slice_rows)) == ([], [], [], [])
    assert after.slices[5]["status"] == "suspended" and "wa_slice_4" in after.stamped
    assert "wa_slice_4" not in state.databases and 4 not in state.slices  # the read is not changed


def test_anything_but_new_slices_leaves_the_one_step_to_the_four(inventory):
    from sliceops.operations.postgres import newslices

    four = inventory({"slices": DEFAULT_SLICES + [{"id": 4}]})
    state = _converged(inventory({"slices": DEFAULT_SLICES}))
    new = newslices.new_slices(four, state)
    lost = dataclasses.replace(state, secrets=[f for f in state.secrets if f != "wa_slice_2.env"])
    moved = dataclasses.replace(state, slices={**state.slices, 2: {**state.slices[2], "status": "suspended"}})
    drift = dataclasses.replace(state, databases={**state.databases, "wa_slice_2": {
        "owner": "wa_slice", "public_connect": True, "connect": ["wa_slice_2"]}})
    unstamped = dataclasses.replace(state, stamped=["wa_slice_1", "wa_slice_2", "wa_slice_3"])
    limits = dataclasses.replace(state, roles={**state.roles, "wa_slice_1": {**state.roles["wa_slice_1"], "connlimit": 9}})
    gateway = dataclasses.replace(state, monitor_ok=False)
    for other in (lost, moved, drift, unstamped, limits, gateway):
        assert newslices.after_adding(four, other, newslices.new_slices(four, other)) is None
    many = inventory({"slices": DEFAULT_SLICES + [{"id": i} for i in range(4, 5 + newslices.MOST)]})
    assert newslices.after_adding(many, state, newslices.new_slices(many, state)) is None  # progress: the four steps
    assert newslices.after_adding(four, state, new) is not None


def test_the_one_step_is_one_psql_session_through_every_database_it_touches(inventory):
    from sliceops.operations.postgres import newslices

    four = inventory({"slices": DEFAULT_SLICES + [{"id": 4}]})
    state = _converged(inventory({"slices": DEFAULT_SLICES}))
    text = newslices.add_command(four, state, newslices.new_slices(four, state))
    assert text.count("runuser") == 1 and text.count("/usr/bin/python3 -I -S -c") == 1
    sql = text.split("<<'SLICEOPS_SQL'\n", 1)[1]
    order = [sql.index(part) for part in (
        "ALTER ROLE \"wa_slice_4\" WITH LOGIN CONNECTION LIMIT 5 PASSWORD :'pw0';",
        'CREATE DATABASE "wa_slice_4" OWNER "wa_slice" TEMPLATE "sliceops_slice_template"',
        "\\connect 'wa_slice_4'", 'GRANT USAGE ON SCHEMA public TO "wa_slice_4";', "COMMENT ON DATABASE",
        "\\connect 'wank_saas'", "INSERT INTO gateway.slices (id, port, status, host) VALUES (4,")]
    assert order == sorted(order)
    assert "pg_advisory_xact_lock" in sql  # the migration run's own script, its lock first
