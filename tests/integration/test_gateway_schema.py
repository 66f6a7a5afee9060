"""The gateway migrations build exactly seed 000's gateway schema, read back from the catalog."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import errors

from tests.integration._sql import apply_files, format_plan, migration_files, plan_nodes

SCHEMA = "gateway"
# Sentinels for serial columns: their default names a sequence created for them.
SERIAL, BIGSERIAL = "<serial>", "<bigserial>"
NO_ACTION, CASCADE = "a", "c"  # pg_constraint.confdeltype


@dataclass(frozen=True)
class FK:
    name: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str


@dataclass(frozen=True)
class Table:
    # (name, type as format_type() prints it, NOT NULL, default as pg_get_expr() prints it)
    columns: list[tuple[str, str, bool, str | None]]
    primary_key: tuple[str, ...]
    unique: set[tuple[str, ...]] = field(default_factory=set)
    foreign_keys: set[FK] = field(default_factory=set)


# Seed 000, table by table, in the seed's column order. Where the seed is silent
# on NULL or a default, the brief's choices are written down here.
EXPECTED: dict[str, Table] = {
    "users": Table(
        columns=[
            ("id", "integer", True, SERIAL),
            ("email", "text", True, None),
            ("password_hash", "text", True, None),
            ("slice_id", "integer", False, None),  # null while waiting
            ("stripe_customer", "text", False, None),
            ("subscription_status", "text", True, "'trial'::text"),
            ("subscription_id", "text", False, None),
            ("subscription_ends_at", "timestamp with time zone", False, None),
            ("is_admin", "boolean", True, "false"),
            ("created_at", "timestamp with time zone", True, "now()"),
            ("last_login_at", "timestamp with time zone", False, None),
        ],
        primary_key=("id",),
        unique={("email",), ("slice_id",)},
        foreign_keys={FK("users_slice_id_fkey", ("slice_id",), "slices", ("id",), NO_ACTION)},
    ),
    "slices": Table(
        columns=[
            ("id", "integer", True, SERIAL),
            ("port", "integer", True, None),
            ("status", "text", True, "'available'::text"),
            ("user_id", "integer", False, None),  # null while available
            ("wa_connected", "boolean", True, "false"),
            ("wa_phone", "text", False, None),
            ("last_health_at", "timestamp with time zone", False, None),
            ("created_at", "timestamp with time zone", True, "now()"),
            ("storage_bytes", "bigint", True, "0"),
            ("host", "text", False, None),  # 0004, after the seed's columns: the slice's host
        ],
        primary_key=("id",),
        unique={("port",), ("user_id",)},
        foreign_keys={FK("slices_user_id_fkey", ("user_id",), "users", ("id",), NO_ACTION)},
    ),
    "sessions": Table(
        columns=[
            ("id", "text", True, None),
            ("user_id", "integer", True, None),
            ("expires_at", "timestamp with time zone", True, None),
            ("created_at", "timestamp with time zone", True, "now()"),
        ],
        primary_key=("id",),
        foreign_keys={FK("sessions_user_id_fkey", ("user_id",), "users", ("id",), CASCADE)},
    ),
    "telemetry": Table(
        columns=[
            ("id", "bigint", True, BIGSERIAL),
            ("slice_id", "integer", True, None),
            ("timestamp", "timestamp with time zone", True, "now()"),
            ("rss_bytes", "bigint", False, None),
            ("wa_state", "text", False, None),
            ("cpu_percent", "numeric", False, None),
            ("disk_bytes", "bigint", False, None),
        ],
        primary_key=("id",),
        foreign_keys={FK("telemetry_slice_id_fkey", ("slice_id",), "slices", ("id",), CASCADE)},
    ),
    "server_telemetry": Table(
        columns=[
            ("id", "bigint", True, BIGSERIAL),
            ("timestamp", "timestamp with time zone", True, "now()"),
            ("ram_used_bytes", "bigint", False, None),
            ("ram_total_bytes", "bigint", False, None),
            ("swap_used_bytes", "bigint", False, None),
            ("swap_total_bytes", "bigint", False, None),
            ("cpu_percent", "real", False, None),
            ("disk_used_bytes", "bigint", False, None),
            ("disk_total_bytes", "bigint", False, None),
            ("active_slices", "integer", False, None),
            ("total_slices", "integer", False, None),
            ("host", "text", False, None),  # 0004: the host whose monitor wrote the row
        ],
        primary_key=("id",),
    ),
}

# name -> (table, access method, [(column, descending)])
EXPECTED_INDEXES = {
    "idx_telemetry_slice_time": ("telemetry", "btree", [("slice_id", False), ("timestamp", True)]),
    "idx_server_telemetry_time": ("server_telemetry", "btree", [("timestamp", True)]),
    "idx_telemetry_timestamp": ("telemetry", "btree", [("timestamp", False)]),
    "idx_sessions_user_id": ("sessions", "btree", [("user_id", False)]),
    "idx_server_telemetry_host_time": ("server_telemetry", "btree", [("host", False), ("timestamp", True)]),
}

# (table, column, values that must be accepted, a value that must be rejected)
STATUS_SETS = [
    ("users", "subscription_status", ["trial", "active", "past_due", "cancelled"], "canceled"),
    ("slices", "status", ["available", "assigned", "suspended", "destroying"], "deleted"),
]

SESSION_TOKEN = "0123456789abcdef" * 4


@pytest.fixture(scope="module")
def gateway_db(pg_server):
    with pg_server.temp_database("sliceops_gateway") as db:
        apply_files(db.dsn(), migration_files("gateway"))
        yield db


@pytest.fixture
def conn(gateway_db):
    """A connection whose changes are rolled back, so tests do not see each other's rows."""
    with psycopg.connect(gateway_db.dsn()) as c:
        try:
            yield c
        finally:
            c.rollback()


def _regclass(table: str) -> str:
    return f"{SCHEMA}.{table}"


def _constraints(conn, table: str, contype: str) -> list[tuple]:
    """(name, [columns], referenced table, [referenced columns], on delete) per constraint, columns in key order."""
    return conn.execute(
        """
        SELECT c.conname,
               array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n
                     ORDER BY k.o),
               rt.relname,
               array(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
                     JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n
                     ORDER BY k.o),
               c.confdeltype::text,
               rn.nspname
        FROM pg_constraint c
        LEFT JOIN pg_class rt ON rt.oid = c.confrelid
        LEFT JOIN pg_namespace rn ON rn.oid = rt.relnamespace
        WHERE c.conrelid = %s::regclass AND c.contype = %s
        ORDER BY c.conname
        """,
        (_regclass(table), contype),
    ).fetchall()


def test_gateway_schema_has_exactly_the_seed_tables(conn):
    tables = {
        r[0]
        for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (SCHEMA,)
        )
    }
    assert tables == set(EXPECTED)


@pytest.mark.parametrize("table", EXPECTED)
def test_columns_match_seed(conn, table):
    rows = conn.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        (_regclass(table),),
    ).fetchall()
    expected = EXPECTED[table].columns
    assert [r[0] for r in rows] == [c[0] for c in expected], "column names or order"
    for (name, typ, notnull, default), (exp_name, exp_type, exp_notnull, exp_default) in zip(rows, expected):
        assert (typ, notnull) == (exp_type, exp_notnull), f"{table}.{name} type/nullability"
        if exp_default in (SERIAL, BIGSERIAL):
            seq, seq_type = conn.execute(
                """
                SELECT s.seqrelid::regclass::text, format_type(s.seqtypid, NULL)
                FROM pg_sequence s WHERE s.seqrelid = pg_get_serial_sequence(%s, %s)::regclass
                """,
                (_regclass(table), name),
            ).fetchone()
            assert default == f"nextval('{seq}'::regclass)", f"{table}.{name} is not fed by its own sequence"
            assert seq_type == ("integer" if exp_default == SERIAL else "bigint"), f"{table}.{name} sequence type"
        else:
            assert default == exp_default, f"{table}.{name} default"


@pytest.mark.parametrize("table", EXPECTED)
def test_primary_key_matches_seed(conn, table):
    pks = _constraints(conn, table, "p")
    assert [tuple(pk[1]) for pk in pks] == [EXPECTED[table].primary_key]


@pytest.mark.parametrize("table", EXPECTED)
def test_unique_constraints_match_seed(conn, table):
    uniques = {tuple(u[1]) for u in _constraints(conn, table, "u")}
    assert uniques == EXPECTED[table].unique


@pytest.mark.parametrize("table", EXPECTED)
def test_foreign_keys_match_seed(conn, table):
    fks = set()
    for name, cols, ref_table, ref_cols, on_delete, ref_schema in _constraints(conn, table, "f"):
        assert ref_schema == SCHEMA, f"{name} points outside the gateway schema"
        fks.add(FK(name, tuple(cols), ref_table, tuple(ref_cols), on_delete))
    assert fks == EXPECTED[table].foreign_keys


def test_users_and_slices_reference_each_other(conn):
    # Both halves of the cycle, by name, because the seed calls them out.
    refs = {
        (table, fk[0], fk[2])
        for table in ("users", "slices")
        for fk in _constraints(conn, table, "f")
    }
    assert refs == {
        ("users", "users_slice_id_fkey", "slices"),
        ("slices", "slices_user_id_fkey", "users"),
    }


@pytest.mark.parametrize("index_name", EXPECTED_INDEXES)
def test_index_columns_and_order(conn, index_name):
    rows = conn.execute(
        """
        SELECT t.relname, am.amname, a.attname,
               pg_index_column_has_property(i.indexrelid, k.o::int, 'desc'),
               i.indpred IS NULL AND i.indexprs IS NULL
        FROM pg_class ic
        JOIN pg_index i ON i.indexrelid = ic.oid
        JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_am am ON am.oid = ic.relam
        CROSS JOIN unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
        WHERE ic.relname = %s AND ic.relnamespace = %s::regnamespace
        ORDER BY k.o
        """,
        (index_name, SCHEMA),
    ).fetchall()
    assert rows, f"index {index_name} missing"
    table, method, columns = EXPECTED_INDEXES[index_name]
    assert {(r[0], r[1]) for r in rows} == {(table, method)}
    assert [(r[2], r[3]) for r in rows] == columns
    assert all(r[4] for r in rows), f"{index_name} must be a plain index (no predicate, no expression)"


def test_telemetry_autovacuum_follows_hourly_prune(conn):
    (options,) = conn.execute(
        "SELECT reloptions FROM pg_class WHERE oid = %s::regclass", (_regclass("telemetry"),)
    ).fetchone()
    assert set(options or []) >= {
        "autovacuum_vacuum_scale_factor=0.01",
        "autovacuum_analyze_scale_factor=0.01",
    }


def _insert_slice(conn, port: int, **values) -> int:
    cols = ["port", *values]
    placeholders = ", ".join(["%s"] * len(cols))
    return conn.execute(
        f"INSERT INTO gateway.slices ({', '.join(cols)}) VALUES ({placeholders}) RETURNING id",
        [port, *values.values()],
    ).fetchone()[0]


def _insert_user(conn, email: str, **values) -> int:
    cols = ["email", "password_hash", *values]
    placeholders = ", ".join(["%s"] * len(cols))
    return conn.execute(
        f"INSERT INTO gateway.users ({', '.join(cols)}) VALUES ({placeholders}) RETURNING id",
        [email, "$2b$12$" + "x" * 53, *values.values()],
    ).fetchone()[0]


@pytest.mark.parametrize("table, column, allowed, bad", STATUS_SETS, ids=[s[0] for s in STATUS_SETS])
def test_status_value_set_is_enforced(conn, table, column, allowed, bad):
    insert = _insert_user if table == "users" else _insert_slice
    for n, value in enumerate(allowed):
        key = f"ok{n}@example.com" if table == "users" else 6000 + n
        insert(conn, key, **{column: value})
    with pytest.raises(errors.CheckViolation):
        with conn.transaction():
            insert(conn, "bad@example.com" if table == "users" else 6999, **{column: bad})


def test_email_must_be_lowercase_and_unique(conn):
    _insert_user(conn, "alice@example.com")
    with pytest.raises(errors.CheckViolation):
        with conn.transaction():
            _insert_user(conn, "Bob@Example.com")
    with pytest.raises(errors.UniqueViolation):
        with conn.transaction():
            _insert_user(conn, "alice@example.com")


def test_new_slice_defaults(conn):
    slice_id = _insert_slice(conn, 5001)
    row = conn.execute(
        "SELECT status, user_id, wa_connected, storage_bytes, created_at IS NOT NULL "
        "FROM gateway.slices WHERE id = %s",
        (slice_id,),
    ).fetchone()
    assert row == ("available", None, False, 0, True)


def test_a_slice_serves_one_user_and_a_port_one_slice(conn):
    slice_id = _insert_slice(conn, 5001)
    _insert_user(conn, "a@example.com", slice_id=slice_id)
    with pytest.raises(errors.UniqueViolation):
        with conn.transaction():
            _insert_user(conn, "b@example.com", slice_id=slice_id)
    with pytest.raises(errors.UniqueViolation):
        with conn.transaction():
            _insert_slice(conn, 5001)
    with pytest.raises(errors.ForeignKeyViolation):
        with conn.transaction():
            _insert_user(conn, "c@example.com", slice_id=slice_id + 1000)


def test_session_id_must_be_a_256_bit_hex_token(conn):
    user_id = _insert_user(conn, "a@example.com")
    conn.execute(
        "INSERT INTO gateway.sessions (id, user_id, expires_at) VALUES (%s, %s, now() + interval '30 days')",
        (SESSION_TOKEN, user_id),
    )
    with pytest.raises(errors.CheckViolation):
        with conn.transaction():
            conn.execute(
                "INSERT INTO gateway.sessions (id, user_id, expires_at) VALUES ('abc', %s, now())",
                (user_id,),
            )


def test_deleting_a_user_or_slice_cascades_to_sessions_and_telemetry(conn):
    user_id = _insert_user(conn, "a@example.com")
    slice_id = _insert_slice(conn, 5001)
    conn.execute(
        "INSERT INTO gateway.sessions (id, user_id, expires_at) VALUES (%s, %s, now())",
        (SESSION_TOKEN, user_id),
    )
    conn.execute("INSERT INTO gateway.telemetry (slice_id, rss_bytes) VALUES (%s, 1)", (slice_id,))
    conn.execute("DELETE FROM gateway.users WHERE id = %s", (user_id,))
    conn.execute("DELETE FROM gateway.slices WHERE id = %s", (slice_id,))
    assert conn.execute("SELECT count(*) FROM gateway.sessions").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM gateway.telemetry").fetchone()[0] == 0


def test_an_assigned_slice_cannot_be_deleted_from_under_its_user(conn):
    slice_id = _insert_slice(conn, 5001)
    _insert_user(conn, "a@example.com", slice_id=slice_id)
    with pytest.raises(errors.ForeignKeyViolation):
        with conn.transaction():
            conn.execute("DELETE FROM gateway.slices WHERE id = %s", (slice_id,))


@pytest.mark.parametrize(
    "table, index_name",
    [("telemetry", "idx_telemetry_timestamp"), ("server_telemetry", "idx_server_telemetry_time")],
)
def test_retention_prune_reads_only_expired_rows_through_an_index(conn, table, index_name):
    # 7 days and 1 hour of one-minute samples (20 slices for telemetry), so the
    # hourly prune finds one hour expired, as it will in production.
    if table == "telemetry":
        conn.execute("INSERT INTO gateway.slices (port) SELECT 5000 + g FROM generate_series(1, 20) g")
        conn.execute(
            """
            INSERT INTO gateway.telemetry (slice_id, "timestamp", rss_bytes, wa_state, cpu_percent, disk_bytes)
            SELECT s.id, now() - m * interval '1 minute', 1e8, 'CONNECTED', 1.5, 1e9
            FROM generate_series(0, 7 * 1440 + 59) m CROSS JOIN gateway.slices s
            ORDER BY m DESC
            """
        )
    else:
        conn.execute(
            """
            INSERT INTO gateway.server_telemetry ("timestamp", ram_used_bytes, cpu_percent)
            SELECT now() - m * interval '1 minute', 1e9, 12.5
            FROM generate_series(0, 7 * 1440 + 59) m ORDER BY m DESC
            """
        )
    conn.execute(f"ANALYZE gateway.{table}")
    query = f"""DELETE FROM gateway.{table} WHERE "timestamp" < now() - interval '7 days'"""
    (plan,) = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query}").fetchone()[0]
    print(f"\n-- {table} prune: {query}\n{format_plan(plan['Plan'])}")
    used = {
        (n["Node Type"], n.get("Index Name"))
        for n in plan_nodes(plan["Plan"])
        if n.get("Index Name")
    }
    assert any(name == index_name for _, name in used), f"prune does not use {index_name}: {used}"
    scan = next(n for n in plan_nodes(plan["Plan"]) if n.get("Index Name") == index_name)
    total = conn.execute(f"SELECT count(*) FROM gateway.{table}").fetchone()[0]
    # The index hands over roughly the expired hour, not the table.
    assert 0 < scan["Actual Rows"] * scan.get("Actual Loops", 1) < total / 50
