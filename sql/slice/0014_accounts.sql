-- Seed 004 migrations 0001 ("Add WhatsApp accounts table"), 0011 (its two
-- indexes) and 0014 (its cascade): 0002's whatsapp_accounts becomes the seed's
-- "accounts", renamed in place so every row, id and reference survives.
--
-- * Columns take the seed's names and types: quoted camelCase, "createdAt" a
--   timestamp (UTC wall time: the old timestamptz values are converted AT TIME
--   ZONE 'UTC', and tenant roles read and write in UTC).
-- * Defaults and NOT NULLs the seed does not list go ("status" keeps 'active'
--   and becomes nullable; "isBusinessAccount", "isVerified", "createdAt" have no
--   default, as drizzle-kit generates them for the documented schema).
-- * "accountNumber" is "sequential number per user": 0002's database-wide
--   UNIQUE goes, and seed 0011's indexes come: "idx_accounts_userId" and the
--   non-unique composite ("userId", "accountNumber"), named here
--   "idx_accounts_userId_accountNumber" (the seed gives it no name).
-- * "userId" is a NOT NULL reference to "user". A slice belongs to one customer
--   (seed 000), so a database that already holds accounts, or seed 000 CRM rows
--   (which 0017 attaches to an account), gets that customer's one owner row
--   and every existing account is attached to it. The gateway (wank_saas)
--   knows the customer, the slice database does not: the row's email is the
--   placeholder 'owner@slice.invalid' (RFC 2606), for the app's operator to
--   correct. An empty database (the template, every new slice) gets no row:
--   its owner signs up through the app.
-- * CRM rows with no account at all get one placeholder account (number 1,
--   phone number unknown, so '') for 0017 to attach them to.
-- Cascade target where the seed is silent: deleting a user deletes their
-- WhatsApp accounts (ON DELETE CASCADE, seed 0014 "cascade delete rules").

ALTER TABLE whatsapp_accounts RENAME TO accounts;
ALTER TABLE accounts RENAME CONSTRAINT whatsapp_accounts_pkey TO accounts_pkey;
ALTER TABLE accounts RENAME COLUMN phone_number TO "phoneNumber";
ALTER TABLE accounts RENAME COLUMN is_business_account TO "isBusinessAccount";
ALTER TABLE accounts RENAME COLUMN is_verified TO "isVerified";
ALTER TABLE accounts RENAME COLUMN account_number TO "accountNumber";
ALTER TABLE accounts RENAME COLUMN created_at TO "createdAt";

ALTER TABLE accounts
    DROP CONSTRAINT whatsapp_accounts_account_number_key,
    ALTER COLUMN "status" DROP NOT NULL,
    ALTER COLUMN "isBusinessAccount" DROP DEFAULT,
    ALTER COLUMN "isVerified" DROP DEFAULT,
    ALTER COLUMN "createdAt" DROP DEFAULT,
    ALTER COLUMN "createdAt" TYPE timestamp USING "createdAt" AT TIME ZONE 'UTC',
    ADD COLUMN "userId" varchar(36);

INSERT INTO accounts ("name", "phoneNumber", "color", "status", "isBusinessAccount", "isVerified",
                      "accountNumber", "createdAt")
SELECT 'WhatsApp', '', '#25d366', 'active', false, false, 1, now() AT TIME ZONE 'UTC'
WHERE NOT EXISTS (SELECT 1 FROM accounts)
  AND (EXISTS (SELECT 1 FROM contacts) OR EXISTS (SELECT 1 FROM chats));

INSERT INTO "user" ("id", "name", "email", "emailVerified", "createdAt", "updatedAt")
SELECT gen_random_uuid()::text, 'Slice owner', 'owner@slice.invalid', false,
       coalesce(min("createdAt"), now() AT TIME ZONE 'UTC'), now() AT TIME ZONE 'UTC'
FROM accounts
HAVING count(*) > 0 AND NOT EXISTS (SELECT 1 FROM "user");

UPDATE accounts SET "userId" = (SELECT "id" FROM "user" ORDER BY "createdAt", "id" LIMIT 1);

ALTER TABLE accounts
    ALTER COLUMN "userId" SET NOT NULL,
    ADD CONSTRAINT "accounts_userId_user_id_fk"
        FOREIGN KEY ("userId") REFERENCES "user" ("id") ON DELETE CASCADE;

CREATE INDEX "idx_accounts_userId" ON accounts ("userId");
CREATE INDEX "idx_accounts_userId_accountNumber" ON accounts ("userId", "accountNumber");
