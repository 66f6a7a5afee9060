"""Seed 004's PostgreSQL schema as the seed documents it, and a reader of what a database holds.

SEED_004 below is the seed's own tables (column, type, constraints), copied from the
document row by row; `expected()` turns it into the catalog's terms, and `differences()`
compares it, column by column and constraint by constraint, with a live database. Where the
seed is silent, the expectations are what drizzle-kit generates for that schema (see
sql/slice/README.md): constraint names, and ON DELETE CASCADE on every reference (seed
migration 0014, "Add cascade delete rules").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# table / column | type | constraints, as in seed 004 ("Database Schema"); "unique:" and
# "index:" lines are the notes under a table.
SEED_004 = """
user
  id                    | varchar(36) | PRIMARY KEY
  name                  | text        | NOT NULL
  email                 | text        | UNIQUE, NOT NULL
  emailVerified         | boolean     | NOT NULL
  image                 | text        |
  createdAt             | timestamp   | NOT NULL
  updatedAt             | timestamp   | NOT NULL
session
  id                    | varchar(36) | PRIMARY KEY
  expiresAt             | timestamp   | NOT NULL
  token                 | text        | UNIQUE, NOT NULL
  createdAt             | timestamp   | NOT NULL
  updatedAt             | timestamp   | NOT NULL
  ipAddress             | text        |
  userAgent             | text        |
  userId                | varchar(36) | FK → user.id
account
  id                    | varchar(36) | PRIMARY KEY
  accountId             | text        | NOT NULL
  providerId            | text        | NOT NULL
  userId                | varchar(36) | FK → user.id
  accessToken           | text        |
  refreshToken          | text        |
  idToken               | text        |
  accessTokenExpiresAt  | timestamp   |
  refreshTokenExpiresAt | timestamp   |
  scope                 | text        |
  password              | text        |
  createdAt             | timestamp   | NOT NULL
  updatedAt             | timestamp   | NOT NULL
verification
  id                    | varchar(36) | PRIMARY KEY
  identifier            | text        | NOT NULL
  value                 | text        | NOT NULL
  expiresAt             | timestamp   | NOT NULL
  createdAt             | timestamp   |
  updatedAt             | timestamp   |
accounts
  id                    | uuid        | PRIMARY KEY, DEFAULT gen_random_uuid()
  userId                | varchar(36) | FK → user.id, NOT NULL
  name                  | text        | NOT NULL
  phoneNumber           | text        | NOT NULL
  avatar                | text        |
  color                 | text        | NOT NULL
  status                | text        | DEFAULT 'active'
  isBusinessAccount     | boolean     | NOT NULL
  isVerified            | boolean     | NOT NULL
  accountNumber         | integer     | NOT NULL
  createdAt             | timestamp   | NOT NULL
  index: idx_accounts_userId on userId
  index: (userId, accountNumber)
subscriptions
  id                    | uuid        | PRIMARY KEY, DEFAULT gen_random_uuid()
  userId                | varchar(36) | FK → user.id, UNIQUE, NOT NULL
  planType              | text        | NOT NULL
  status                | text        | NOT NULL
  creemCustomerId       | text        | UNIQUE
  creemSubscriptionId   | text        | UNIQUE
  creemCheckoutId       | text        | UNIQUE
  currentPeriodStart    | timestamp   |
  currentPeriodEnd      | timestamp   |
  canceledAt            | timestamp   |
  createdAt             | timestamp   | NOT NULL
  updatedAt             | timestamp   | NOT NULL
priorities
  id                    | uuid        | PRIMARY KEY, DEFAULT gen_random_uuid()
  name                  | text        | NOT NULL
  color                 | text        | NOT NULL
  accountId             | uuid        | FK → accounts.id, NOT NULL
  createdAt             | timestamp   | NOT NULL
folders
  id                    | uuid        | PRIMARY KEY, DEFAULT gen_random_uuid()
  name                  | text        | NOT NULL
  color                 | text        | NOT NULL
  accountId             | uuid        | FK → accounts.id, NOT NULL
  createdAt             | timestamp   | NOT NULL
templates
  id                    | uuid        | PRIMARY KEY, DEFAULT gen_random_uuid()
  name                  | text        | NOT NULL
  content               | text        | NOT NULL
  accountId             | uuid        | FK → accounts.id, NOT NULL
  createdAt             | timestamp   | NOT NULL
chat_tags
  id                    | uuid        | PRIMARY KEY, DEFAULT gen_random_uuid()
  chatId                | text        | NOT NULL
  tag                   | text        | NOT NULL
  accountId             | uuid        | FK → accounts.id, NOT NULL
  createdAt             | timestamp   | NOT NULL
  unique: (chatId, accountId)
chat_priorities
  id                    | uuid        | PRIMARY KEY, DEFAULT gen_random_uuid()
  chatId                | text        | NOT NULL
  priorityId            | uuid        | FK → priorities.id, NOT NULL
  accountId             | uuid        | FK → accounts.id, NOT NULL
  createdAt             | timestamp   | NOT NULL
  unique: (chatId, accountId)
chat_folders
  id                    | uuid        | PRIMARY KEY, DEFAULT gen_random_uuid()
  chatId                | text        | NOT NULL
  folderId              | uuid        | FK → folders.id, NOT NULL
  accountId             | uuid        | FK → accounts.id, NOT NULL
  createdAt             | timestamp   | NOT NULL
whatsapp_sessions
  id                    | uuid        | PRIMARY KEY, DEFAULT gen_random_uuid()
  accountId             | uuid        | FK → accounts.id, UNIQUE, NOT NULL
  sessionData           | jsonb       |
  status                | text        | DEFAULT 'disconnected'
  lastConnected         | timestamp   |
  createdAt             | timestamp   | NOT NULL
  updatedAt             | timestamp   | NOT NULL
newsletters
  id                    | uuid        | PRIMARY KEY, DEFAULT gen_random_uuid()
  accountId             | uuid        | FK → accounts.id, NOT NULL
  channelId             | text        | NOT NULL
  name                  | text        |
  subscribedAt          | timestamp   | NOT NULL
  createdAt             | timestamp   | NOT NULL
"""

# The seed's type names as PostgreSQL's format_type() prints them.
_TYPES = {
    "varchar(36)": "character varying(36)",
    "text": "text",
    "uuid": "uuid",
    "boolean": "boolean",
    "integer": "integer",
    "jsonb": "jsonb",
    "timestamp": "timestamp without time zone",
}
CASCADE = "c"  # pg_constraint.confdeltype


@dataclass
class Table:
    columns: dict[str, tuple[str, bool, str | None]] = field(default_factory=dict)  # name: (type, not null, default)
    constraints: dict[str, tuple] = field(default_factory=dict)  # name: ('p'|'u', cols) or ('f', cols, ref, refcols, del)
    indexes: dict[str, tuple[tuple[str, ...], bool]] = field(default_factory=dict)  # name: (cols, unique)


def expected() -> dict[str, Table]:
    """SEED_004 in the catalog's terms, with drizzle-kit's constraint names."""
    tables: dict[str, Table] = {}
    current = ""
    for raw in SEED_004.strip().splitlines():
        line = raw.strip()
        if not raw.startswith(" "):
            current = line
            tables[current] = Table()
            continue
        t = tables[current]
        if line.startswith("unique:"):
            cols = tuple(re.findall(r"\w+", line.split(":", 1)[1]))
            t.constraints[f"{current}_{'_'.join(cols)}_unique"] = ("u", cols)
            continue
        if line.startswith("index:"):
            spec = line.split(":", 1)[1].strip()
            m = re.fullmatch(r"(\w+) on (\w+)", spec)
            if m:
                t.indexes[m[1]] = ((m[2],), False)
            else:
                cols = tuple(re.findall(r"\w+", spec))
                # The seed names no composite index: drizzle needs one, this is sliceops' choice.
                t.indexes[f"idx_{current}_{'_'.join(cols)}"] = (cols, False)
            continue
        name, typ, constraints = (part.strip() for part in line.split("|"))
        words = [c.strip() for c in constraints.split(",") if c.strip()]
        default = None
        for w in words:
            if w.startswith("DEFAULT "):
                value = w[len("DEFAULT "):]
                default = value if value.endswith(")") else f"{value}::text"
        primary = "PRIMARY KEY" in words
        t.columns[name] = (_TYPES[typ], primary or "NOT NULL" in words, default)
        if primary:
            t.constraints[f"{current}_pkey"] = ("p", (name,))
        if "UNIQUE" in words:
            t.constraints[f"{current}_{name}_unique"] = ("u", (name,))
        for w in words:
            m = re.fullmatch(r"FK → (\w+)\.(\w+)", w)
            if m:
                t.constraints[f"{current}_{name}_{m[1]}_{m[2]}_fk"] = ("f", (name,), m[1], (m[2],), CASCADE)
    return tables


def actual(conn, tables) -> dict[str, Table]:
    """What the connected database holds for `tables` (public schema), in the same terms."""
    found: dict[str, Table] = {}
    for table in tables:
        if conn.execute("SELECT to_regclass(format('public.%%I', %s::text))", (table,)).fetchone()[0] is None:
            continue
        t = found[table] = Table()
        for name, typ, notnull, default in conn.execute(
            """
            SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
            FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attrelid = format('public.%%I', %s::text)::regclass AND a.attnum > 0 AND NOT a.attisdropped
            """,
            (table,),
        ):
            t.columns[name] = (typ, notnull, default)
        for name, kind, cols, ref, refcols, deltype in conn.execute(
            """
            SELECT c.conname, c.contype::text,
                   array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
                   c.confrelid::regclass::text,
                   array(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
                         JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o),
                   c.confdeltype::text
            FROM pg_constraint c
            WHERE c.conrelid = format('public.%%I', %s::text)::regclass AND c.contype IN ('p', 'u', 'f')
            """,
            (table,),
        ):
            if kind == "f":
                t.constraints[name] = ("f", tuple(cols), ref.strip('"'), tuple(refcols), deltype)
            else:
                t.constraints[name] = (kind, tuple(cols))
        for name, cols, unique in conn.execute(
            """
            SELECT ic.relname,
                   array(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o),
                   i.indisunique
            FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
            WHERE i.indrelid = format('public.%%I', %s::text)::regclass
            """,
            (table,),
        ):
            t.indexes[name] = (tuple(cols), unique)
    return found


def differences(conn) -> list[str]:
    """Every way the connected database departs from seed 004: one line each, [] when it is exact.

    Columns and PRIMARY KEY / UNIQUE / FOREIGN KEY constraints must match exactly; the seed's
    indexes must exist (further indexes, on foreign keys, are allowed: the seed lists only
    those of its migration 0011)."""
    want = expected()
    have = actual(conn, want)
    out = []
    for table, w in want.items():
        h = have.get(table)
        if h is None:
            out.append(f"{table}: missing")
            continue
        for col in sorted(w.columns.keys() | h.columns.keys()):
            if w.columns.get(col) != h.columns.get(col):
                out.append(f"{table}.{col}: seed {w.columns.get(col)}, database {h.columns.get(col)}")
        for con in sorted(w.constraints.keys() | h.constraints.keys()):
            if w.constraints.get(con) != h.constraints.get(con):
                out.append(f"{table} constraint {con}: seed {w.constraints.get(con)}, database {h.constraints.get(con)}")
        for idx, spec in w.indexes.items():
            if h.indexes.get(idx) != spec:
                out.append(f"{table} index {idx}: seed {spec}, database {h.indexes.get(idx)}")
    return out
