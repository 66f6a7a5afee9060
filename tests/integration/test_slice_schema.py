"""The per-slice migrations: seed 004's schema exactly, constraints hold, cascades reach every
child, old databases are carried forward, and seed 004's queries use indexes."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.types.json import Jsonb

from tests.integration import _seed004
from tests.integration._first_shape import FIRST_SHAPE, carried_forward_differences, fill_first_shape
from tests.integration._seed_queries import SEED_QUERIES, indexes_used, load_statements, query_for
from tests.integration._sql import apply_files, migration_files

AUTH_TABLES = ["user", "session", "account", "verification", "subscriptions"]
CORE_TABLES = ["contacts", "chats", "messages", "media"]
ORG_TABLES = [
    "accounts", "priorities", "folders", "templates", "chat_tags",
    "chat_priorities", "chat_folders", "whatsapp_sessions", "newsletters",
]
# Children of each parent whose rows must disappear with it (seed 004, 0014; for contacts and
# chats, 0017).
CASCADES = {
    "user": ["session", "account", "subscriptions", "accounts"],
    "accounts": [
        "priorities", "folders", "templates", "chat_tags", "chat_priorities",
        "chat_folders", "whatsapp_sessions", "newsletters", "contacts", "chats",
    ],
    "priorities": ["chat_priorities"],
    "folders": ["chat_folders"],
}
# The column through which each parent's children point at it.
PARENT_KEY = {"user": "userId", "accounts": "accountId", "priorities": "priorityId", "folders": "folderId"}
NO_ACTION, CASCADE, SET_NULL = "a", "c", "n"  # pg_constraint.confdeltype
# Seed 004's tables have no default on their timestamps: the app writes them.
APP_TIMES = {t: ["createdAt"] for t in ORG_TABLES} | {
    "whatsapp_sessions": ["createdAt", "updatedAt"], "newsletters": ["createdAt", "subscribedAt"],
    "user": ["createdAt", "updatedAt"], "session": ["createdAt", "updatedAt"],
    "account": ["createdAt", "updatedAt"], "subscriptions": ["createdAt", "updatedAt"],
}
NOW = "2026-01-04 10:00:00"


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
               trim(both '"' from c.confrelid::regclass::text), c.confdeltype::text
        FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
        WHERE c.contype = 'f' AND t.relnamespace = 'public'::regnamespace
        ORDER BY 1, 2
        """
    ).fetchall()


def _insert(conn, table: str, **values):
    """INSERT one row, filling the timestamps seed 004's app would write; returns its id."""
    values = {**{col: NOW for col in APP_TIMES.get(table, [])}, **values}
    return conn.execute(
        sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, values)),
            sql.SQL(", ").join([sql.Placeholder()] * len(values)),
        ),
        list(values.values()),
    ).fetchone()[0]


def _user(conn, n: int = 1) -> str:
    return _insert(conn, "user", id=str(uuid.uuid4()), name=f"User {n}", email=f"u{n}-{uuid.uuid4().hex[:6]}@example.com",
                   emailVerified=True)


def _account(conn, number: int, user_id: str | None = None, **values) -> uuid.UUID:
    return _insert(
        conn, "accounts", userId=user_id or _user(conn, number), name=f"Account {number}",
        phoneNumber=f"+4915100000{number:03d}", color="#25d366", accountNumber=number,
        isBusinessAccount=False, isVerified=False, **values,
    )


def _count(conn, table: str, where: str = "true", params=()) -> int:
    return conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE ").format(sql.Identifier(table)) + sql.SQL(where), params
    ).fetchone()[0]


def _org_rows_for(conn, account_id: uuid.UUID) -> dict[str, uuid.UUID]:
    """One row in every table that hangs off the account."""
    ids = {"accounts": account_id}
    ids["priorities"] = _insert(conn, "priorities", name="High", color="red", accountId=account_id)
    ids["folders"] = _insert(conn, "folders", name="Leads", color="blue", accountId=account_id)
    ids["templates"] = _insert(conn, "templates", name="Hi", content="Hello!", accountId=account_id)
    ids["chat_tags"] = _insert(conn, "chat_tags", chatId="1@c.us", tag="vip", accountId=account_id)
    ids["chat_priorities"] = _insert(
        conn, "chat_priorities", chatId="1@c.us", priorityId=ids["priorities"], accountId=account_id
    )
    ids["chat_folders"] = _insert(conn, "chat_folders", chatId="1@c.us", folderId=ids["folders"], accountId=account_id)
    ids["whatsapp_sessions"] = _insert(conn, "whatsapp_sessions", accountId=account_id)
    ids["newsletters"] = _insert(conn, "newsletters", channelId="1203@newsletter", accountId=account_id)
    ids["contacts"] = _insert(conn, "contacts", waId="4915100000001@c.us", accountId=account_id)
    ids["chats"] = _insert(conn, "chats", waId="4915100000001@c.us", accountId=account_id, contactId=ids["contacts"])
    return ids


def _user_rows(conn) -> dict[str, object]:
    """A user with a row in each of its tables, one WhatsApp account and everything under it."""
    user_id = _user(conn)
    ids = {"user": user_id}
    ids["session"] = _insert(conn, "session", id=str(uuid.uuid4()), expiresAt=NOW, token=uuid.uuid4().hex, userId=user_id)
    ids["account"] = _insert(conn, "account", id=str(uuid.uuid4()), accountId="42", providerId="credential", userId=user_id)
    ids["subscriptions"] = _insert(conn, "subscriptions", userId=user_id, planType="free", status="active")
    ids.update(_org_rows_for(conn, _account(conn, 1, user_id)))
    return ids


# --- shape, from the catalog -------------------------------------------------


def test_slice_database_has_exactly_seed_004s_tables_and_the_crm_tables(conn):
    tables = {
        r[0]
        for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    }
    assert tables == set(AUTH_TABLES + CORE_TABLES + ORG_TABLES)


def test_the_schema_is_seed_004s_column_by_column_and_constraint_by_constraint(conn):
    assert _seed004.differences(conn) == []


def test_the_comparison_with_the_seed_sees_todays_first_shape(scratch_db):
    """The comparison can fail: 0001-0012 alone are not the seed's schema."""
    apply_files(scratch_db.dsn(), migration_files("slice", upto="0012"))
    with psycopg.connect(scratch_db.dsn()) as conn:
        found = _seed004.differences(conn)
    assert "user: missing" in found and "accounts: missing" in found
    assert any(line.startswith("priorities.accountId:") for line in found)


@pytest.mark.parametrize("table", CORE_TABLES + ORG_TABLES)
def test_uuid_primary_key_camel_case_and_timestamps(conn, table):
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
    # seed 004's tables: the app writes its timestamps; the CRM tables keep their default
    assert cols["createdAt"] == ("timestamp without time zone", "NO", "now()" if table in CORE_TABLES else None)
    assert [name for name in cols if "_" in name] == [], "columns are camelCase"
    assert {typ for typ, _, _ in cols.values()} & {"timestamp with time zone"} == set()
    (pk,) = conn.execute(
        """
        SELECT array_agg(a.attname) FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
        WHERE c.conrelid = format('public.%%I', %s::text)::regclass AND c.contype = 'p'
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
        ("idx_accounts_userId", "accounts", ["userId"]),
        ("idx_accounts_userId_accountNumber", "accounts", ["userId", "accountNumber"]),
        ("idx_folders_accountId", "folders", ["accountId"]),
        ("idx_chat_folders_folderId", "chat_folders", ["folderId"]),
        ("idx_templates_accountId", "templates", ["accountId"]),
        ("idx_chats_accountId_lastMessageAt", "chats", ["accountId", "lastMessageAt"]),
        ("idx_messages_chatId_sentAt", "messages", ["chatId", "sentAt"]),
    ],
)
def test_named_index_exists(conn, index_name, table, columns):
    rows = conn.execute(
        """
        SELECT t.relname, a.attname FROM pg_index i
        JOIN pg_class t ON t.oid = i.indrelid
        CROSS JOIN unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
        WHERE i.indexrelid = to_regclass(format('public.%%I', %s::text)) ORDER BY k.o
        """,
        (index_name,),
    ).fetchall()
    assert rows == [(table, c) for c in columns]


def test_delete_rules(conn):
    rules = {(table, tuple(cols)): (ref, rule) for table, _, cols, ref, rule in _foreign_keys(conn)}
    expected = {
        ("chats", ("contactId",)): ("contacts", SET_NULL),
        ("messages", ("chatId",)): ("chats", CASCADE),
        ("media", ("messageId",)): ("messages", CASCADE),
    }
    for parent, children in CASCADES.items():
        for child in children:
            expected[(child, (PARENT_KEY[parent],))] = (parent, CASCADE)
    assert rules == expected


def test_cascade_migration_rewrites_existing_constraints(scratch_db):
    """0012 is a real migration: before it, deleting a referenced account is refused."""
    files = migration_files("slice", upto="0012")
    apply_files(scratch_db.dsn(), files[:-1])
    children = CASCADES["accounts"][:8]  # today's 0003-0010
    with psycopg.connect(scratch_db.dsn()) as conn:
        fks_before = {(t, name): rule for t, name, _, _, rule in _foreign_keys(conn)}
        account_id = conn.execute(
            "INSERT INTO whatsapp_accounts (name, phone_number, color, account_number) "
            "VALUES ('A', '+49151', '#fff', 1) RETURNING id"
        ).fetchone()[0]
        conn.execute("INSERT INTO folders (name, color, account_id) VALUES ('F', '#fff', %s)", (account_id,))
        conn.commit()
        with pytest.raises(errors.ForeignKeyViolation):
            conn.execute("DELETE FROM whatsapp_accounts WHERE id = %s", (account_id,))
        conn.rollback()

    apply_files(scratch_db.dsn(), files[-1:])
    with psycopg.connect(scratch_db.dsn()) as conn:
        fks_after = {(t, name): rule for t, name, _, _, rule in _foreign_keys(conn)}
        assert fks_after.keys() == fks_before.keys(), "constraints keep their names"
        changed = {k for k in fks_after if fks_before[k] != fks_after[k]}
        assert all(fks_before[k] == NO_ACTION and fks_after[k] == CASCADE for k in changed)
        assert changed == {(c, f"{c}_account_id_fkey") for c in children} | {
            ("chat_priorities", "chat_priorities_priority_id_fkey"), ("chat_folders", "chat_folders_folder_id_fkey"),
        }
        conn.execute("DELETE FROM whatsapp_accounts WHERE id = %s", (account_id,))
        assert _count(conn, "folders") == 0


# --- behaviour ---------------------------------------------------------------


@pytest.mark.parametrize(
    "table, values, distinct",
    [
        # (table, a row clashing with the one _org_rows_for made, the change that makes it legal)
        ("chat_tags", {"chatId": "1@c.us", "tag": "lead"}, {"chatId": "2@c.us"}),
        ("chat_priorities", {"chatId": "1@c.us"}, {"chatId": "2@c.us"}),
        ("contacts", {"waId": "4915100000001@c.us"}, {"waId": "4915100000002@c.us"}),
    ],
)
def test_unique_assignments_reject_duplicates(conn, table, values, distinct):
    account_id = _account(conn, 1)
    ids = _org_rows_for(conn, account_id)
    refs = {"accountId": account_id}
    if table == "chat_priorities":
        # a second priority for the same chat is still a second assignment
        refs["priorityId"] = _insert(conn, "priorities", name="Low", color="grey", accountId=account_id)
    assert ids
    with pytest.raises(errors.UniqueViolation):
        with conn.transaction():
            _insert(conn, table, **values, **refs)
    _insert(conn, table, **{**values, **distinct}, **refs)


@pytest.mark.parametrize(
    "table, values",
    [
        # seed 004 has no UNIQUE on these (today's 0008 and 0010 had one)
        ("chat_folders", {"chatId": "1@c.us"}),
        ("newsletters", {"channelId": "1203@newsletter"}),
    ],
)
def test_assignments_the_seed_leaves_unconstrained_accept_a_repeat(conn, table, values):
    account_id = _account(conn, 1)
    ids = _org_rows_for(conn, account_id)
    refs = {"accountId": account_id} | ({"folderId": ids["folders"]} if table == "chat_folders" else {})
    _insert(conn, table, **values, **refs)
    assert _count(conn, table) == 2


def test_the_same_chat_may_be_tagged_by_each_account(conn):
    user_id = _user(conn)
    first, second = _account(conn, 1, user_id), _account(conn, 2, user_id)
    _insert(conn, "chat_tags", chatId="1@c.us", tag="vip", accountId=first)
    _insert(conn, "chat_tags", chatId="1@c.us", tag="lead", accountId=second)
    assert _count(conn, "chat_tags", '"chatId" = \'1@c.us\'') == 2


@pytest.mark.parametrize(
    "table, values",
    [
        ("user", {"email": "same@example.com"}),
        ("session", {"token": "same-token"}),
        ("subscriptions", {"creemCustomerId": "cust_1"}),
        ("subscriptions", {"creemSubscriptionId": "sub_1"}),
        ("subscriptions", {"creemCheckoutId": "ch_1"}),
    ],
)
def test_seed_uniques_on_auth_and_billing(conn, table, values):
    def row():
        if table == "user":
            return _insert(conn, "user", id=str(uuid.uuid4()), name="U", emailVerified=False, **values)
        if table == "session":
            return _insert(conn, "session", id=str(uuid.uuid4()), expiresAt=NOW, userId=_user(conn), **values)
        return _insert(conn, "subscriptions", userId=_user(conn), planType="pro_monthly", status="active", **values)

    row()
    with pytest.raises(errors.UniqueViolation):
        with conn.transaction():
            row()


def test_one_subscription_per_user(conn):
    user_id = _user(conn)
    _insert(conn, "subscriptions", userId=user_id, planType="free", status="active")
    with pytest.raises(errors.UniqueViolation):
        with conn.transaction():
            _insert(conn, "subscriptions", userId=user_id, planType="pro_yearly", status="active")


def test_an_account_needs_a_user(conn):
    with pytest.raises(errors.NotNullViolation):
        with conn.transaction():
            _insert(conn, "accounts", name="A", phoneNumber="+49", color="#fff", accountNumber=1,
                    isBusinessAccount=False, isVerified=False)
    with pytest.raises(errors.ForeignKeyViolation):
        with conn.transaction():
            _account(conn, 1, user_id="no-such-user")


def test_account_number_is_per_user_and_session_unique_per_account(conn):
    """seed 0011's (userId, accountNumber) index is not unique; one session per account is."""
    first, second = _user(conn, 1), _user(conn, 2)
    account_id = _account(conn, 1, first)
    _account(conn, 1, second)
    assert _count(conn, "accounts", '"accountNumber" = 1') == 2
    _insert(conn, "whatsapp_sessions", accountId=account_id)
    with pytest.raises(errors.UniqueViolation):
        with conn.transaction():
            _insert(conn, "whatsapp_sessions", accountId=account_id)


def test_defaults_for_new_account_and_session(conn):
    account_id = _account(conn, 1)
    _insert(conn, "whatsapp_sessions", accountId=account_id)
    row = conn.execute(
        """
        SELECT a.status, s.status, s."sessionData", s."lastConnected"
        FROM accounts a JOIN whatsapp_sessions s ON s."accountId" = a.id
        """
    ).fetchone()
    assert row == ("active", "disconnected", None, None)


@pytest.mark.parametrize("parent", CASCADES)
def test_deleting_a_parent_deletes_its_children_only(conn, parent):
    doomed, kept = _user_rows(conn), _user_rows(conn)
    conn.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(sql.Identifier(parent)), (doomed[parent],))
    gone = set(CASCADES[parent])
    for child in list(gone):  # and the children's children
        gone |= set(CASCADES.get(child, []))
    for child in gone:
        assert _count(conn, child, "id = %s", (doomed[child],)) == 0, f"{child} row outlived its {parent}"
    for table, row_id in kept.items():
        assert _count(conn, table, "id = %s", (row_id,)) == 1, f"{table} row of another user deleted"
    # Deleting a folder must leave the same account's templates, tags, ... alone.
    for table in set(doomed) - gone - {parent}:
        assert _count(conn, table, "id = %s", (doomed[table],)) == 1, f"{table} should not depend on {parent}"


def test_deleting_a_chat_deletes_its_messages_and_media_but_not_the_contact(conn):
    account_id = _account(conn, 1)
    contact_id = _insert(conn, "contacts", waId="4915100000001@c.us", accountId=account_id)
    chat_id = _insert(conn, "chats", waId="4915100000001@c.us", contactId=contact_id, accountId=account_id)
    message_id = _insert(
        conn, "messages", chatId=chat_id, waId="false_4915100000001@c.us_3EB0A1",
        fromMe=False, sentAt=NOW, type="image", hasMedia=True,
    )
    _insert(conn, "media", messageId=message_id, mimeType="image/jpeg", sizeBytes=1234)
    conn.execute("DELETE FROM chats WHERE id = %s", (chat_id,))
    assert (_count(conn, "messages"), _count(conn, "media"), _count(conn, "contacts")) == (0, 0, 1)


def test_deleting_a_contact_keeps_the_conversation(conn):
    account_id = _account(conn, 1)
    contact_id = _insert(conn, "contacts", waId="4915100000001@c.us", accountId=account_id)
    chat_id = _insert(conn, "chats", waId="4915100000001@c.us", contactId=contact_id, accountId=account_id)
    conn.execute("DELETE FROM contacts WHERE id = %s", (contact_id,))
    assert conn.execute('SELECT "contactId" FROM chats WHERE id = %s', (chat_id,)).fetchone() == (None,)


def test_session_data_round_trips_as_jsonb(conn):
    data = {
        "WABrowserId": '"q1w2e3=="',
        "WAToken1": "ключ-🔑",
        "nested": {"list": [1, 2.5, None, True], "empty": {}},
        "big": 2**53 + 1,
    }
    account_id = _account(conn, 1)
    _insert(conn, "whatsapp_sessions", accountId=account_id, sessionData=Jsonb(data))
    stored, token, kind = conn.execute(
        """SELECT "sessionData", "sessionData"->>'WAToken1', pg_typeof("sessionData")::text FROM whatsapp_sessions"""
    ).fetchone()
    assert stored == data
    assert (token, kind) == ("ключ-🔑", "jsonb")


# --- carried forward: a database of today's first shape (0001-0012) ----------------

def test_a_database_of_the_first_shape_is_carried_forward_row_by_row(scratch_db):
    apply_files(scratch_db.dsn(), migration_files("slice", upto=FIRST_SHAPE))
    with psycopg.connect(scratch_db.dsn()) as conn:
        before = fill_first_shape(conn)
    apply_files(scratch_db.dsn(), [f for f in migration_files("slice") if f.name[:4] > FIRST_SHAPE])
    with psycopg.connect(scratch_db.dsn()) as conn:
        assert carried_forward_differences(conn, before) == []
        assert _seed004.differences(conn) == []


def test_crm_rows_without_an_account_get_one_for_the_owner(scratch_db):
    apply_files(scratch_db.dsn(), migration_files("slice", upto=FIRST_SHAPE))
    with psycopg.connect(scratch_db.dsn()) as conn:
        conn.execute("INSERT INTO contacts (wa_id) VALUES ('4915100000009@c.us')")
        conn.commit()
    apply_files(scratch_db.dsn(), [f for f in migration_files("slice") if f.name[:4] > FIRST_SHAPE])
    with psycopg.connect(scratch_db.dsn()) as conn:
        (account,) = conn.execute(
            'SELECT a.id, a."accountNumber", u.email FROM accounts a JOIN "user" u ON u.id = a."userId"'
        ).fetchall()
        assert account[1:] == (1, "owner@slice.invalid")
        assert conn.execute('SELECT "accountId" FROM contacts').fetchall() == [(account[0],)]


def test_an_empty_database_gets_no_owner_row(conn):
    """The template and every new slice: the owner signs up through the app."""
    assert (_count(conn, "user"), _count(conn, "accounts")) == (0, 0)


# --- seed 004's queries on generated data --------------------------------------

@pytest.fixture(scope="module")
def loaded_db(pg_server):
    """A slice with thousands of rows per table (64k chat_folders), vacuumed and analyzed so plans are realistic."""
    with pg_server.temp_database("sliceops_slice_plans") as db:
        apply_files(db.dsn(), migration_files("slice"))
        with psycopg.connect(db.dsn(), autocommit=True) as conn:
            for statement in load_statements():
                conn.execute(statement)
            # VACUUM as well: index-only scans need the visibility map.
            conn.execute("VACUUM ANALYZE")
        yield db


PLAN_CASES = SEED_QUERIES | {
    "chat_list": (
        """SELECT id, name, "lastMessageAt" FROM chats WHERE "accountId" = {account}
           ORDER BY "lastMessageAt" DESC NULLS LAST LIMIT 50""",
        {"idx_chats_accountId_lastMessageAt"},
        lambda rows: len(rows) == 50 and rows[0][2] >= rows[-1][2],
    ),
    "conversation_page": (
        'SELECT id, body, "sentAt" FROM messages WHERE "chatId" = {chat} ORDER BY "sentAt" DESC LIMIT 5',
        {"idx_messages_chatId_sentAt"},
        lambda rows: len(rows) == 5 and rows[0][2] > rows[-1][2],
    ),
}


@pytest.mark.parametrize("case", PLAN_CASES)
def test_seed_queries_use_their_indexes(loaded_db, case):
    template, expected_indexes, result_ok = PLAN_CASES[case]
    with psycopg.connect(loaded_db.dsn()) as conn:
        query = query_for(conn, template)
        used, shown = indexes_used(conn, query)
        print(f"\n-- {case}:{query.as_string(conn)}\n{shown}")
        assert expected_indexes <= used, f"{case}: expected {expected_indexes}, plan used {used or 'no index'}"
        assert result_ok(conn.execute(query).fetchall()), f"{case}: wrong result"
