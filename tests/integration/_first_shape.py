"""Today's first slice schema (sql/slice 0001-0012, snake_case) filled with rows, and a check
that a database carried forward to seed 004's shape still holds every one of them."""

from __future__ import annotations

from datetime import timezone

import psycopg
from psycopg import sql

FIRST_SHAPE = "0012"  # the newest file of the snake_case schema
# Rows in every table of the first shape (rows of 0003-0010 hang off account 2, whose
# number is higher but which was created first: 0017 attaches CRM rows by number).
FIRST_SHAPE_ROWS = [
    """INSERT INTO whatsapp_accounts (name, phone_number, avatar, color, status, is_business_account, is_verified,
                                      account_number, created_at)
       VALUES ('Shop', '+4915100000001', 'a.png', '#25d366', 'paused', true, true, 1, '2026-01-02 10:00:00+01'),
              ('Home', '+4915100000002', NULL, '#000000', 'active', false, false, 2, '2026-01-01 10:00:00+01')""",
    "INSERT INTO priorities (name, color, account_id) SELECT 'High', 'red', id FROM whatsapp_accounts WHERE account_number = 2",
    "INSERT INTO folders (name, color, account_id) SELECT 'Leads', 'blue', id FROM whatsapp_accounts WHERE account_number = 2",
    "INSERT INTO templates (name, content, account_id) SELECT 'Hi', 'Hello!', id FROM whatsapp_accounts WHERE account_number = 2",
    "INSERT INTO chat_tags (chat_id, tag, account_id) SELECT '1@c.us', 'vip', id FROM whatsapp_accounts WHERE account_number = 2",
    """INSERT INTO chat_priorities (chat_id, priority_id, account_id)
       SELECT '1@c.us', p.id, p.account_id FROM priorities p""",
    """INSERT INTO chat_folders (chat_id, folder_id, account_id)
       SELECT '1@c.us', f.id, f.account_id FROM folders f""",
    """INSERT INTO whatsapp_sessions (account_id, session_data, status, last_connected)
       SELECT id, '{"WABrowserId": "q1w2"}', 'connected', '2026-01-03 12:00:00-05' FROM whatsapp_accounts""",
    """INSERT INTO newsletters (account_id, channel_id, name, subscribed_at)
       SELECT id, '1203@newsletter', 'News', '2026-01-03 00:30:00+02' FROM whatsapp_accounts WHERE account_number = 2""",
    """INSERT INTO contacts (wa_id, phone_number, name, push_name, is_business, is_blocked, profile_pic_url)
       VALUES ('4915100000009@c.us', '+4915100000009', 'Ada', 'ada', true, false, 'p.png'),
              ('4915100000008@c.us', NULL, NULL, NULL, false, true, NULL)""",
    """INSERT INTO chats (wa_id, contact_id, name, is_group, is_archived, is_pinned, unread_count, last_message_at)
       SELECT wa_id, id, name, false, true, false, 3, timestamptz '2026-01-04 09:00:00+00' FROM contacts
       UNION ALL SELECT '120363000@g.us', NULL, 'Group', true, false, true, 0, NULL""",
    """INSERT INTO messages (chat_id, wa_id, from_me, author, type, body, sent_at, ack, has_media, quoted_wa_id)
       SELECT id, 'false_' || wa_id || '_3EB0', false, NULL, 'image', 'look', timestamptz '2026-01-04 09:00:00+00', 3, true, NULL
       FROM chats UNION ALL
       SELECT id, 'true_' || wa_id || '_3EB1', true, 'me', 'chat', 'ok', timestamptz '2026-01-04 09:01:00+00', 1, false, 'x'
       FROM chats""",
    """INSERT INTO media (message_id, mime_type, file_name, size_bytes, sha256, storage_path)
       SELECT id, 'image/jpeg', 'a.jpg', 1234, 'abc', 'media/a.jpg' FROM messages WHERE has_media""",
]
FIRST_SHAPE_TABLES = [
    "contacts", "chats", "messages", "media", "whatsapp_accounts", "priorities", "folders", "templates",
    "chat_tags", "chat_priorities", "chat_folders", "whatsapp_sessions", "newsletters",
]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _as_utc_wall_time(value):
    """timestamptz (aware) -> timestamp (naive UTC): what 0014-0017 do to a value."""
    if getattr(value, "tzinfo", None) is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def fill_first_shape(conn) -> dict[str, list[dict]]:
    """Rows in every table of the first shape; returns them as read back, by table."""
    for statement in FIRST_SHAPE_ROWS:
        conn.execute(statement)
    conn.commit()
    rows = {}
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        for table in FIRST_SHAPE_TABLES:
            rows[table] = cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))).fetchall()
    assert all(rows.values()), "every table of the first shape holds rows"
    return rows


def carried_forward_differences(conn, before: dict[str, list[dict]]) -> list[str]:
    """Every row of `before` must be in the new shape, every value as it was (camelCase name,
    timestamps as UTC wall time); the new references go to the slice's owner and first account."""
    problems = []
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        for table, rows in before.items():
            new_table = "accounts" if table == "whatsapp_accounts" else table
            after = {r["id"]: r for r in cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(new_table)))}
            if len(after) != len(rows):
                problems.append(f"{new_table}: {len(rows)} rows before, {len(after)} after")
            for row in rows:
                new = after.get(row["id"])
                if new is None:
                    problems.append(f"{new_table}: row {row['id']} lost")
                    continue
                for col, value in row.items():
                    if new.get(_camel(col), "<no column>") != _as_utc_wall_time(value):
                        problems.append(f"{new_table}.{_camel(col)} of {row['id']}: {value!r} became "
                                        f"{new.get(_camel(col), '<no column>')!r}")
        owners = cur.execute('SELECT id, email FROM "user"').fetchall()
        if len(owners) != 1:
            problems.append(f"expected one owner user, found {owners}")
        elif cur.execute('SELECT count(*) AS n FROM accounts WHERE "userId" <> %s', (owners[0]["id"],)).fetchone()["n"]:
            problems.append("an account is not attached to the owner")
        (first,) = [r["id"] for r in before["whatsapp_accounts"] if r["account_number"] == 1]
        for table in ("contacts", "chats"):
            stray = cur.execute(
                sql.SQL('SELECT count(*) AS n FROM {} WHERE "accountId" <> %s').format(sql.Identifier(table)), (first,)
            ).fetchone()["n"]
            if stray:
                problems.append(f"{table}: {stray} rows not attached to the first account")
    return problems
