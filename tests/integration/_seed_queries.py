"""Seed 004's three example queries as the SQL Drizzle sends for them, generated rows to run
them on, and what their plans read through."""

from __future__ import annotations

import uuid

from psycopg import sql

from tests.integration._sql import format_plan, plan_nodes

# Enough accounts that PICKED of them is a small slice of folders and
# chat_folders: with a few hundred the planner rightly prefers one hash join
# over a sequential scan of chat_folders to 24 random index probes.
USERS, ACCOUNTS, FOLDERS_PER_ACCOUNT, CHATS_PER_FOLDER, TEMPLATES_PER_ACCOUNT = 1000, 2000, 8, 4, 6
CHATS, MESSAGES_PER_CHAT = 2000, 10
PICKED = 3  # accounts a user looks at together, seed 004's accountIds

def load_statements(users: int = USERS, accounts: int = ACCOUNTS) -> list[str]:
    """Generated rows in seed 004's tables (users, subscriptions, accounts, folders, templates), then the CRM's."""
    return [
        f"""INSERT INTO "user" (id, name, email, "emailVerified", "createdAt", "updatedAt")
            SELECT 'user-' || g, 'User ' || g, 'user' || g || '@example.com', true, now(), now()
            FROM generate_series(1, {users}) g""",
        # every other user pays
        """INSERT INTO subscriptions ("userId", "planType", status, "createdAt", "updatedAt")
           SELECT id, 'pro_monthly', 'active', now(), now() FROM "user" WHERE right(id, 1) IN ('0', '2', '4', '6', '8')""",
        f"""INSERT INTO accounts ("userId", name, "phoneNumber", color, "isBusinessAccount", "isVerified",
                                 "accountNumber", "createdAt")
            SELECT 'user-' || (1 + g % {users}), 'Account ' || g, '+49151' || lpad(g::text, 7, '0'), '#25d366',
                   false, false, g, now()
            FROM generate_series(1, {accounts}) g""",
        f"""INSERT INTO folders (name, color, "accountId", "createdAt")
            SELECT 'Folder ' || g, '#ff9900', a.id, now()
            FROM accounts a CROSS JOIN generate_series(1, {FOLDERS_PER_ACCOUNT}) g""",
        f"""INSERT INTO chat_folders ("chatId", "folderId", "accountId", "createdAt")
            SELECT '49151' || lpad(g::text, 7, '0') || '@c.us', f.id, f."accountId", now()
            FROM folders f CROSS JOIN generate_series(1, {CHATS_PER_FOLDER}) g""",
        f"""INSERT INTO templates (name, content, "accountId", "createdAt")
            SELECT 'Template ' || g, 'Thanks for your message #' || g, a.id, now()
            FROM accounts a CROSS JOIN generate_series(1, {TEMPLATES_PER_ACCOUNT}) g""",
        # chats of the first account; every tenth chat has never had a message
        f"""INSERT INTO chats ("accountId", "waId", name, "lastMessageAt")
            SELECT (SELECT id FROM accounts WHERE "accountNumber" = 1), '49152' || lpad(g::text, 7, '0') || '@c.us',
                   'Chat ' || g, CASE WHEN g % 10 <> 0 THEN now() - g * interval '7 minutes' END
            FROM generate_series(1, {CHATS}) g""",
        f"""INSERT INTO messages ("chatId", "waId", "fromMe", body, "sentAt")
            SELECT c.id, 'false_' || c."waId" || '_' || g, g % 2 = 0, 'message ' || g, now() - g * interval '1 minute'
            FROM chats c CROSS JOIN generate_series(1, {MESSAGES_PER_CHAT}) g""",
    ]


def picked_accounts(conn) -> list[uuid.UUID]:
    rows = conn.execute(
        'SELECT id FROM accounts WHERE "accountNumber" %% 97 = 0 ORDER BY "accountNumber" LIMIT %s', (PICKED,)
    ).fetchall()
    return [r[0] for r in rows]


def first_account(conn) -> uuid.UUID:
    return conn.execute('SELECT id FROM accounts WHERE "accountNumber" = 1').fetchone()[0]


def busiest_chat(conn) -> uuid.UUID:
    return conn.execute('SELECT id FROM chats ORDER BY "lastMessageAt" DESC NULLS LAST LIMIT 1').fetchone()[0]


# Seed 004's three example queries, as the SQL Drizzle sends for them:
# (query, indexes the plan must read through, a check that the answer is right)
SEED_QUERIES = {
    # db.select().from(users).leftJoin(subscriptions, eq(users.id, subscriptions.userId)).where(eq(users.id, userId))
    "user_with_subscription": (
        """
        SELECT * FROM "user" LEFT JOIN subscriptions ON "user".id = subscriptions."userId"
        WHERE "user".id = {user}
        """,
        {"user_pkey", "subscriptions_userId_unique"},
        lambda rows: len(rows) == 1 and rows[0][0] == "user-2" and rows[0][8] == "user-2",
    ),
    # db.select().from(foldersTable).leftJoin(chatFolders, eq(foldersTable.id, chatFolders.folderId))
    #   .where(inArray(foldersTable.accountId, accountIds))
    "folders_with_chats": (
        """
        SELECT * FROM folders LEFT JOIN chat_folders ON folders.id = chat_folders."folderId"
        WHERE folders."accountId" IN ({accounts})
        """,
        {"idx_folders_accountId", "idx_chat_folders_folderId"},
        lambda rows: len(rows) == PICKED * FOLDERS_PER_ACCOUNT * CHATS_PER_FOLDER,
    ),
    # db.select({accountId: templates.accountId, count: count()}).from(templates)
    #   .groupBy(templates.accountId).where(inArray(templates.accountId, accountIds))
    "template_counts": (
        """
        SELECT "accountId", count(*) FROM templates WHERE "accountId" IN ({accounts}) GROUP BY "accountId"
        """,
        {"idx_templates_accountId"},
        lambda rows: sorted(n for _, n in rows) == [TEMPLATES_PER_ACCOUNT] * PICKED,
    ),
}
INDEX_NODES = {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}


def query_for(conn, template: str) -> sql.Composed:
    return sql.SQL(template).format(
        user=sql.Literal("user-2"),
        accounts=sql.SQL(", ").join(map(sql.Literal, picked_accounts(conn))),
        account=sql.Literal(first_account(conn)),
        chat=sql.Literal(busiest_chat(conn)) if "{chat}" in template else sql.SQL("NULL"),
    )


def indexes_used(conn, query) -> tuple[set[str], str]:
    (plan,) = conn.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ") + query).fetchone()[0]
    used = {n["Index Name"] for n in plan_nodes(plan["Plan"]) if n["Node Type"] in INDEX_NODES}
    return used, format_plan(plan["Plan"])
