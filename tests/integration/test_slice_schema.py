"""The per-slice CRM migrations: constraints hold, cascades reach every child, and seed 004's queries use indexes."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.types.json import Jsonb

from tests.integration._sql import apply_files, format_plan, migration_files, plan_nodes

CORE_TABLES = ["contacts", "chats", "messages", "media"]
ORG_TABLES = [
    "whatsapp_accounts", "priorities", "folders", "templates", "chat_tags",
    "chat_priorities", "chat_folders", "whatsapp_sessions", "newsletters",
]
# Children of each parent whose rows must disappear with it (seed 004, 0014).
CASCADES = {
    "whatsapp_accounts": [
        "priorities", "folders", "templates", "chat_tags", "chat_priorities",
        "chat_folders", "whatsapp_sessions", "newsletters",
    ],
    "priorities": ["chat_priorities"],
    "folders": ["chat_folders"],
}
# The column through which each parent's children point at it.
PARENT_KEY = {"whatsapp_accounts": "account_id", "priorities": "priority_id", "folders": "folder_id"}
CASCADE_FROM = "0012"  # the migration that turns the org model's references into cascades
NO_ACTION, CASCADE, SET_NULL = "a", "c", "n"  # pg_constraint.confdeltype


@pytest.fixture(scope="module")
def slice_db(pg_server):
    with pg_server.temp_database("sliceops_slice") as db:
        apply_files(db.dsn(), migration_files("slice"))
        yield db


@pytest.fixture
def conn(slice_db):
    """A connection whose changes are rolled back, so tests do not see each other's rows."""
    with psycopg.connect(slice_db.dsn()) as c:
        try:
            yield c
        finally:
            c.rollback()


def _foreign_keys(conn) -> list[tuple[str, str, list[str], str, str]]:
    """(table, constraint, [columns], referenced table, on delete) for every FK in public."""
    return conn.execute(
        """
        SELECT t.relname, c.conname,
               array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
               c.confrelid::regclass::text, c.confdeltype::text
        FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
        WHERE c.contype = 'f' AND t.relnamespace = 'public'::regnamespace
        ORDER BY 1, 2
        """
    ).fetchall()


def _insert(conn, table: str, **values) -> uuid.UUID:
    return conn.execute(
        sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, values)),
            sql.SQL(", ").join([sql.Placeholder()] * len(values)),
        ),
        list(values.values()),
    ).fetchone()[0]


def _account(conn, number: int, **values) -> uuid.UUID:
    return _insert(
        conn, "whatsapp_accounts", name=f"Account {number}", phone_number=f"+4915100000{number:03d}",
        color="#25d366", account_number=number, **values,
    )


def _count(conn, table: str, where: str = "true", params=()) -> int:
    return conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE ").format(sql.Identifier(table)) + sql.SQL(where), params
    ).fetchone()[0]


def _org_rows_for(conn, account_id: uuid.UUID) -> dict[str, uuid.UUID]:
    """One row in every table that hangs off the account."""
    ids = {"whatsapp_accounts": account_id}
    ids["priorities"] = _insert(conn, "priorities", name="High", color="red", account_id=account_id)
    ids["folders"] = _insert(conn, "folders", name="Leads", color="blue", account_id=account_id)
    ids["templates"] = _insert(conn, "templates", name="Hi", content="Hello!", account_id=account_id)
    ids["chat_tags"] = _insert(conn, "chat_tags", chat_id="1@c.us", tag="vip", account_id=account_id)
    ids["chat_priorities"] = _insert(
        conn, "chat_priorities", chat_id="1@c.us", priority_id=ids["priorities"], account_id=account_id
    )
    ids["chat_folders"] = _insert(
        conn, "chat_folders", chat_id="1@c.us", folder_id=ids["folders"], account_id=account_id
    )
    ids["whatsapp_sessions"] = _insert(conn, "whatsapp_sessions", account_id=account_id)
    ids["newsletters"] = _insert(conn, "newsletters", channel_id="1203@newsletter", account_id=account_id)
    return ids


# --- shape, from the catalog -------------------------------------------------


def test_slice_database_has_exactly_the_crm_tables(conn):
    tables = {
        r[0]
        for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    }
    assert tables == set(CORE_TABLES + ORG_TABLES)


@pytest.mark.parametrize("table", CORE_TABLES + ORG_TABLES)
def test_uuid_primary_key_and_created_at(conn, table):
    cols = {
        name: (typ, nullable, default)
        for name, typ, nullable, default in conn.execute(
            """
            SELECT column_name, data_type, is_nullable, column_default
            FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s
            """,
            (table,),
        )
    }
    assert cols["id"] == ("uuid", "NO", "gen_random_uuid()")
    assert cols["created_at"] == ("timestamp with time zone", "NO", "now()")
    assert all(name == name.lower() for name in cols), "column names are snake_case"
    (pk,) = conn.execute(
        """
        SELECT array_agg(a.attname) FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
        WHERE c.conrelid = %s::regclass AND c.contype = 'p'
        """,
        (table,),
    ).fetchone()
    assert pk == ["id"]


def test_every_foreign_key_column_leads_an_index(conn):
    indexed = {
        (table, tuple(cols))
        for table, cols in conn.execute(
            """
            SELECT t.relname,
                   array(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o)
            FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
            WHERE t.relnamespace = 'public'::regnamespace AND i.indpred IS NULL
            """
        )
    }
    unindexed = [
        f"{table}({', '.join(cols)})"
        for table, _, cols, _, _ in _foreign_keys(conn)
        if not any(t == table and ix[: len(cols)] == tuple(cols) for t, ix in indexed)
    ]
    assert unindexed == []


@pytest.mark.parametrize(
    "index_name, table, columns",
    [
        ("idx_folders_account_id", "folders", ["account_id"]),
        ("idx_chat_folders_folder_id", "chat_folders", ["folder_id"]),
        ("idx_templates_account_id", "templates", ["account_id"]),
        ("idx_chats_last_message_at", "chats", ["last_message_at"]),
        ("idx_messages_chat_id_sent_at", "messages", ["chat_id", "sent_at"]),
    ],
)
def test_named_index_exists(conn, index_name, table, columns):
    rows = conn.execute(
        """
        SELECT t.relname, a.attname FROM pg_index i
        JOIN pg_class t ON t.oid = i.indrelid
        CROSS JOIN unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
        WHERE i.indexrelid = to_regclass(%s) ORDER BY k.o
        """,
        (index_name,),
    ).fetchall()
    assert rows == [(table, c) for c in columns]


def test_delete_rules(conn):
    rules = {(table, tuple(cols)): (ref, rule) for table, _, cols, ref, rule in _foreign_keys(conn)}
    expected = {
        ("chats", ("contact_id",)): ("contacts", SET_NULL),
        ("messages", ("chat_id",)): ("chats", CASCADE),
        ("media", ("message_id",)): ("messages", CASCADE),
    }
    for parent, children in CASCADES.items():
        for child in children:
            expected[(child, (PARENT_KEY[parent],))] = (parent, CASCADE)
    assert rules == expected


def test_cascade_migration_rewrites_existing_constraints(scratch_db):
    """0012 is a real migration: before it, deleting a referenced account is refused."""
    files = migration_files("slice")
    before = [f for f in files if f.name[:4] < CASCADE_FROM]
    apply_files(scratch_db.dsn(), before)
    with psycopg.connect(scratch_db.dsn()) as conn:
        fks_before = {(t, name): rule for t, name, _, _, rule in _foreign_keys(conn)}
        account_id = _account(conn, 1)
        _org_rows_for(conn, account_id)
        conn.commit()
        with pytest.raises(errors.ForeignKeyViolation):
            conn.execute("DELETE FROM whatsapp_accounts WHERE id = %s", (account_id,))
        conn.rollback()

    apply_files(scratch_db.dsn(), [f for f in files if f.name[:4] >= CASCADE_FROM])
    with psycopg.connect(scratch_db.dsn()) as conn:
        fks_after = {(t, name): rule for t, name, _, _, rule in _foreign_keys(conn)}
        assert fks_after.keys() == fks_before.keys(), "constraints keep their names"
        changed = {k for k in fks_after if fks_before[k] != fks_after[k]}
        assert all(fks_before[k] == NO_ACTION and fks_after[k] == CASCADE for k in changed)
        assert changed == {
            (child, f"{child}_{PARENT_KEY[parent]}_fkey") for parent, cs in CASCADES.items() for child in cs
        }
        conn.execute("DELETE FROM whatsapp_accounts WHERE id = %s", (account_id,))
        assert _count(conn, "chat_folders") == 0


# --- behaviour ---------------------------------------------------------------


@pytest.mark.parametrize(
    "table, values, distinct",
    [
        # (table, a row clashing with the one _org_rows_for made, the change that makes it legal)
        ("chat_tags", {"chat_id": "1@c.us", "tag": "lead"}, {"chat_id": "2@c.us"}),
        ("chat_priorities", {"chat_id": "1@c.us"}, {"chat_id": "2@c.us"}),
        ("chat_folders", {"chat_id": "1@c.us"}, {"chat_id": "2@c.us"}),
        ("newsletters", {"channel_id": "1203@newsletter"}, {"channel_id": "1204@newsletter"}),
    ],
)
def test_unique_assignments_reject_duplicates(conn, table, values, distinct):
    account_id = _account(conn, 1)
    ids = _org_rows_for(conn, account_id)
    refs = {"account_id": account_id}
    if table == "chat_priorities":
        # a second priority for the same chat is still a second assignment
        refs["priority_id"] = _insert(conn, "priorities", name="Low", color="grey", account_id=account_id)
    if table == "chat_folders":
        refs["folder_id"] = ids["folders"]
    with pytest.raises(errors.UniqueViolation):
        with conn.transaction():
            _insert(conn, table, **values, **refs)
    _insert(conn, table, **{**values, **distinct}, **refs)


def test_the_same_chat_may_be_tagged_by_each_account(conn):
    first, second = _account(conn, 1), _account(conn, 2)
    _insert(conn, "chat_tags", chat_id="1@c.us", tag="vip", account_id=first)
    _insert(conn, "chat_tags", chat_id="1@c.us", tag="lead", account_id=second)
    assert _count(conn, "chat_tags", "chat_id = '1@c.us'") == 2


def test_account_number_and_session_are_unique_per_account(conn):
    account_id = _account(conn, 1)
    with pytest.raises(errors.UniqueViolation):
        with conn.transaction():
            _account(conn, 1)
    _insert(conn, "whatsapp_sessions", account_id=account_id)
    with pytest.raises(errors.UniqueViolation):
        with conn.transaction():
            _insert(conn, "whatsapp_sessions", account_id=account_id)


def test_defaults_for_new_account_and_session(conn):
    account_id = _account(conn, 1)
    _insert(conn, "whatsapp_sessions", account_id=account_id)
    row = conn.execute(
        """
        SELECT a.status, a.is_business_account, a.is_verified, s.status, s.session_data, s.last_connected
        FROM whatsapp_accounts a JOIN whatsapp_sessions s ON s.account_id = a.id
        """
    ).fetchone()
    assert row == ("active", False, False, "disconnected", None, None)


@pytest.mark.parametrize("parent", CASCADES)
def test_deleting_a_parent_deletes_its_children_only(conn, parent):
    doomed = _org_rows_for(conn, _account(conn, 1))
    kept = _org_rows_for(conn, _account(conn, 2))
    conn.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(sql.Identifier(parent)), (doomed[parent],))
    for child in CASCADES[parent]:
        assert _count(conn, child, "id = %s", (doomed[child],)) == 0, f"{child} row outlived its {parent}"
    for table, row_id in kept.items():
        assert _count(conn, table, "id = %s", (row_id,)) == 1, f"{table} row of another account deleted"
    # Deleting a folder must leave the same account's templates, tags, ... alone.
    for table in set(ORG_TABLES) - set(CASCADES[parent]) - {parent}:
        assert _count(conn, table, "id = %s", (doomed[table],)) == 1, f"{table} should not depend on {parent}"


def test_deleting_a_chat_deletes_its_messages_and_media_but_not_the_contact(conn):
    contact_id = _insert(conn, "contacts", wa_id="4915100000001@c.us")
    chat_id = _insert(conn, "chats", wa_id="4915100000001@c.us", contact_id=contact_id)
    message_id = _insert(
        conn, "messages", chat_id=chat_id, wa_id="false_4915100000001@c.us_3EB0A1",
        from_me=False, sent_at="2026-01-04T10:00:00Z", type="image", has_media=True,
    )
    _insert(conn, "media", message_id=message_id, mime_type="image/jpeg", size_bytes=1234)
    conn.execute("DELETE FROM chats WHERE id = %s", (chat_id,))
    assert (_count(conn, "messages"), _count(conn, "media"), _count(conn, "contacts")) == (0, 0, 1)


def test_deleting_a_contact_keeps_the_conversation(conn):
    contact_id = _insert(conn, "contacts", wa_id="4915100000001@c.us")
    chat_id = _insert(conn, "chats", wa_id="4915100000001@c.us", contact_id=contact_id)
    conn.execute("DELETE FROM contacts WHERE id = %s", (contact_id,))
    assert conn.execute("SELECT contact_id FROM chats WHERE id = %s", (chat_id,)).fetchone() == (None,)


def test_session_data_round_trips_as_jsonb(conn):
    data = {
        "WABrowserId": '"q1w2e3=="',
        "WAToken1": "ключ-🔑",
        "nested": {"list": [1, 2.5, None, True], "empty": {}},
        "big": 2**53 + 1,
    }
    account_id = _account(conn, 1)
    _insert(conn, "whatsapp_sessions", account_id=account_id, session_data=Jsonb(data))
    stored, token, kind = conn.execute(
        "SELECT session_data, session_data->>'WAToken1', pg_typeof(session_data)::text FROM whatsapp_sessions"
    ).fetchone()
    assert stored == data
    assert (token, kind) == ("ключ-🔑", "jsonb")


# --- seed 004's queries on generated data --------------------------------------

# Enough accounts that PICKED of them is a small slice of folders and
# chat_folders: with a few hundred the planner rightly prefers one hash join
# over a sequential scan of chat_folders to 24 random index probes.
ACCOUNTS, FOLDERS_PER_ACCOUNT, CHATS_PER_FOLDER, TEMPLATES_PER_ACCOUNT = 1000, 8, 4, 6
CHATS, MESSAGES_PER_CHAT = 2000, 10
PICKED = 3  # accounts a user looks at together, seed 004's accountIds


@pytest.fixture(scope="module")
def loaded_db(pg_server):
    """A slice with thousands of rows per table (32k chat_folders), vacuumed and analyzed so plans are realistic."""
    with pg_server.temp_database("sliceops_slice_plans") as db:
        apply_files(db.dsn(), migration_files("slice"))
        with psycopg.connect(db.dsn(), autocommit=True) as conn:
            for statement in [
                f"""INSERT INTO whatsapp_accounts (name, phone_number, color, account_number)
                    SELECT 'Account ' || g, '+49151' || lpad(g::text, 7, '0'), '#25d366', g
                    FROM generate_series(1, {ACCOUNTS}) g""",
                f"""INSERT INTO folders (name, color, account_id)
                    SELECT 'Folder ' || g, '#ff9900', a.id
                    FROM whatsapp_accounts a CROSS JOIN generate_series(1, {FOLDERS_PER_ACCOUNT}) g""",
                f"""INSERT INTO chat_folders (chat_id, folder_id, account_id)
                    SELECT '49151' || lpad(g::text, 7, '0') || '@c.us', f.id, f.account_id
                    FROM folders f CROSS JOIN generate_series(1, {CHATS_PER_FOLDER}) g""",
                f"""INSERT INTO templates (name, content, account_id)
                    SELECT 'Template ' || g, 'Thanks for your message #' || g, a.id
                    FROM whatsapp_accounts a CROSS JOIN generate_series(1, {TEMPLATES_PER_ACCOUNT}) g""",
                # every tenth chat has never had a message
                f"""INSERT INTO chats (wa_id, name, last_message_at)
                    SELECT '49152' || lpad(g::text, 7, '0') || '@c.us', 'Chat ' || g,
                           CASE WHEN g % 10 <> 0 THEN now() - g * interval '7 minutes' END
                    FROM generate_series(1, {CHATS}) g""",
                f"""INSERT INTO messages (chat_id, wa_id, from_me, body, sent_at)
                    SELECT c.id, 'false_' || c.wa_id || '_' || g, g % 2 = 0, 'message ' || g,
                           now() - g * interval '1 minute'
                    FROM chats c CROSS JOIN generate_series(1, {MESSAGES_PER_CHAT}) g""",
            ]:
                conn.execute(statement)
            # VACUUM as well: index-only scans need the visibility map.
            conn.execute("VACUUM ANALYZE")
        yield db


def _picked_accounts(conn) -> list[uuid.UUID]:
    rows = conn.execute(
        "SELECT id FROM whatsapp_accounts WHERE account_number %% 97 = 0 ORDER BY account_number LIMIT %s",
        (PICKED,),
    ).fetchall()
    return [r[0] for r in rows]


def _busiest_chat(conn) -> uuid.UUID:
    return conn.execute("SELECT id FROM chats ORDER BY last_message_at DESC NULLS LAST LIMIT 1").fetchone()[0]


# (query, indexes the plan must read through, a check that the answer is right)
PLAN_CASES = {
    # seed 004: folders LEFT JOIN chat_folders WHERE folders.account_id IN (accountIds)
    "folder_list": (
        """
        SELECT f.id, f.name, f.color, f.account_id, cf.chat_id
        FROM folders f LEFT JOIN chat_folders cf ON f.id = cf.folder_id
        WHERE f.account_id = ANY ({accounts})
        """,
        {"idx_folders_account_id", "idx_chat_folders_folder_id"},
        lambda rows: len(rows) == PICKED * FOLDERS_PER_ACCOUNT * CHATS_PER_FOLDER,
    ),
    # seed 004: count(*) of templates per account, for accountIds
    "template_counts": (
        """
        SELECT account_id, count(*) FROM templates
        WHERE account_id = ANY ({accounts}) GROUP BY account_id
        """,
        {"idx_templates_account_id"},
        lambda rows: sorted(n for _, n in rows) == [TEMPLATES_PER_ACCOUNT] * PICKED,
    ),
    "chat_list": (
        "SELECT id, name, last_message_at FROM chats ORDER BY last_message_at DESC NULLS LAST LIMIT 50",
        {"idx_chats_last_message_at"},
        lambda rows: len(rows) == 50 and rows[0][2] >= rows[-1][2],
    ),
    "conversation_page": (
        "SELECT id, body, sent_at FROM messages WHERE chat_id = {chat} ORDER BY sent_at DESC LIMIT 5",
        {"idx_messages_chat_id_sent_at"},
        lambda rows: len(rows) == 5 and rows[0][2] > rows[-1][2],
    ),
}

INDEX_NODES = {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}


@pytest.mark.parametrize("case", PLAN_CASES)
def test_seed_queries_use_their_indexes(loaded_db, case):
    template, expected_indexes, result_ok = PLAN_CASES[case]
    with psycopg.connect(loaded_db.dsn()) as conn:
        query = sql.SQL(template).format(
            accounts=sql.Literal(_picked_accounts(conn)), chat=sql.Literal(_busiest_chat(conn))
        )
        (plan,) = conn.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ") + query).fetchone()[0]
        print(f"\n-- {case}:{query.as_string(conn)}\n{format_plan(plan['Plan'])}")
        used = {n["Index Name"] for n in plan_nodes(plan["Plan"]) if n["Node Type"] in INDEX_NODES}
        assert expected_indexes <= used, f"{case}: expected {expected_indexes}, plan used {used or 'no index'}"
        assert result_ok(conn.execute(query).fetchall()), f"{case}: wrong result"
