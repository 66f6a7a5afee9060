-- Seed 004 migration 0000 ("Initial schema (user, session, account,
-- verification)"): Better Auth's four tables, as the seed documents them, with
-- the cascades its migration 0014 adds. They are the app's own login data, in
-- the slice database next to the WhatsApp data it guards; seed 000's gateway
-- keeps its own gateway.users and sessions in wank_saas for the SaaS login,
-- and neither replaces the other.
--
-- Where the seed is silent this is what drizzle-kit generates for the
-- documented schema: constraint names <table>_pkey (an inline primary key),
-- <table>_<column>_unique, <table>_<column>_<table>_<column>_fk; no column
-- default the seed does not list (Better Auth fills every timestamp itself);
-- ON DELETE CASCADE on the user references (Better Auth's own schema, and
-- seed 0014 "cascade delete rules"). session.userId and account.userId are
-- nullable because the seed lists no NOT NULL for them.
-- The two userId indexes are sliceops' (seed 0011 lists only the accounts
-- indexes): every deleted user's cascade and every "sessions of this user"
-- lookup would otherwise scan the table.

CREATE TABLE "user" (
    "id"            varchar(36) PRIMARY KEY,
    "name"          text NOT NULL,
    "email"         text NOT NULL CONSTRAINT "user_email_unique" UNIQUE,
    "emailVerified" boolean NOT NULL,
    "image"         text,
    "createdAt"     timestamp NOT NULL,
    "updatedAt"     timestamp NOT NULL
);

CREATE TABLE "session" (
    "id"        varchar(36) PRIMARY KEY,
    "expiresAt" timestamp NOT NULL,
    "token"     text NOT NULL CONSTRAINT "session_token_unique" UNIQUE,
    "createdAt" timestamp NOT NULL,
    "updatedAt" timestamp NOT NULL,
    "ipAddress" text,
    "userAgent" text,
    "userId"    varchar(36) CONSTRAINT "session_userId_user_id_fk"
                REFERENCES "user" ("id") ON DELETE CASCADE
);
CREATE INDEX "idx_session_userId" ON "session" ("userId");

CREATE TABLE "account" (
    "id"                    varchar(36) PRIMARY KEY,
    "accountId"             text NOT NULL,
    "providerId"            text NOT NULL,
    "userId"                varchar(36) CONSTRAINT "account_userId_user_id_fk"
                            REFERENCES "user" ("id") ON DELETE CASCADE,
    "accessToken"           text,
    "refreshToken"          text,
    "idToken"               text,
    "accessTokenExpiresAt"  timestamp,
    "refreshTokenExpiresAt" timestamp,
    "scope"                 text,
    "password"              text,        -- a hash, written by Better Auth
    "createdAt"             timestamp NOT NULL,
    "updatedAt"             timestamp NOT NULL
);
CREATE INDEX "idx_account_userId" ON "account" ("userId");

CREATE TABLE "verification" (
    "id"         varchar(36) PRIMARY KEY,
    "identifier" text NOT NULL,
    "value"      text NOT NULL,
    "expiresAt"  timestamp NOT NULL,
    "createdAt"  timestamp,
    "updatedAt"  timestamp
);
