"""How long a converged slice database of the first shape (sql/slice 0001-0012) takes to reach
seed 004's schema (0013-0017, issue 11), at a realistic size: the deploy applies them in one
transaction per database, which holds its tables locked meanwhile (the timestamptz ->
timestamp conversions rewrite every table that has one).

    .venv/bin/python bench/slice_carry_forward.py [--messages 1000000] [--runs 3]

A throwaway cluster (tests/fix_db.py); one database filled once at 0012, each run on a fresh
copy of it (CREATE DATABASE ... TEMPLATE), each file timed, then the whole transaction.
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import ROOT, Figure, append_results, command_line, table

import psycopg  # noqa: E402

from tests.fix_db import LocalCluster  # noqa: E402

FIRST_SHAPE = "0012"


def fill(conn, messages: int) -> None:
    """2 WhatsApp accounts with 20 of each organising row; chats of 50 messages each, 1 in 10
    messages with media; a contact per chat."""
    chats = max(1, messages // 50)
    for statement in [
        """INSERT INTO whatsapp_accounts (name, phone_number, color, account_number)
           VALUES ('Shop', '+4915100000001', '#25d366', 1), ('Home', '+4915100000002', '#000', 2)""",
        "INSERT INTO priorities (name, color, account_id) SELECT 'P' || g, 'red', a.id FROM whatsapp_accounts a, generate_series(1, 20) g",
        "INSERT INTO folders (name, color, account_id) SELECT 'F' || g, 'blue', a.id FROM whatsapp_accounts a, generate_series(1, 20) g",
        "INSERT INTO templates (name, content, account_id) SELECT 'T' || g, 'Hello', a.id FROM whatsapp_accounts a, generate_series(1, 20) g",
        f"INSERT INTO contacts (wa_id, name) SELECT g || '@c.us', 'Contact ' || g FROM generate_series(1, {chats}) g",
        """INSERT INTO chats (wa_id, contact_id, name, last_message_at)
           SELECT wa_id, id, name, now() - random() * interval '90 days' FROM contacts""",
        """INSERT INTO chat_tags (chat_id, tag, account_id)
           SELECT c.wa_id, 'vip', a.id FROM chats c, whatsapp_accounts a WHERE a.account_number = 1""",
        """INSERT INTO chat_folders (chat_id, folder_id, account_id)
           SELECT c.wa_id, f.id, f.account_id FROM chats c,
                  LATERAL (SELECT id, account_id FROM folders ORDER BY id LIMIT 1) f""",
        """INSERT INTO messages (chat_id, wa_id, from_me, body, sent_at, has_media)
           SELECT c.id, c.wa_id || '_' || g, g % 2 = 0, 'message ' || g, now() - g * interval '1 minute', g % 10 = 0
           FROM chats c, generate_series(1, 50) g""",
        """INSERT INTO media (message_id, mime_type, size_bytes, storage_path)
           SELECT id, 'image/jpeg', 100000, 'media/' || id FROM messages WHERE has_media""",
    ]:
        conn.execute(statement)
    conn.execute("VACUUM ANALYZE")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    files = sorted((ROOT / "sql" / "slice").glob("[0-9]*.sql"))
    first = [f for f in files if f.name[:4] <= FIRST_SHAPE]
    later = [f for f in files if f.name[:4] > FIRST_SHAPE]
    cluster = LocalCluster()
    cluster.init()
    cluster.start()
    dsn = f"host={cluster.root} port={cluster.port} user=postgres"
    per_file = {f.name: Figure(f.name, unit="ms") for f in later}
    whole = Figure(f"0013-0017 in one transaction, {args.messages} messages", unit="s")
    try:
        with psycopg.connect(dsn + " dbname=postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE first_shape")
        with psycopg.connect(dsn + " dbname=first_shape", autocommit=True) as conn:
            for f in first:
                conn.execute(f.read_text())
            fill(conn, args.messages)
            size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
        for run in range(args.runs):
            with psycopg.connect(dsn + " dbname=postgres", autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE run_{run} TEMPLATE first_shape")
            with psycopg.connect(dsn + f" dbname=run_{run}") as conn:
                start = time.perf_counter()
                with conn.transaction():
                    for f in later:
                        t = time.perf_counter()
                        conn.execute(f.read_text())
                        per_file[f.name].add((time.perf_counter() - t) * 1000)
                whole.add(time.perf_counter() - start)
                rows = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
                assert rows >= args.messages, rows
            with psycopg.connect(dsn + " dbname=postgres", autocommit=True) as conn:
                conn.execute(f"DROP DATABASE run_{run}")
    finally:
        cluster.stop()
        cluster.remove()
    figures = [whole, *per_file.values()]
    print(table(figures))
    append_results("slice_carry_forward", command_line(), "\n".join([
        f"Throwaway cluster (tests/fix_db.py), a first-shape slice database of {size} ({args.messages} messages, "
        f"{max(1, args.messages // 50)} chats and contacts, media for 1 message in 10), each run on a fresh copy.",
        "", table(figures)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
