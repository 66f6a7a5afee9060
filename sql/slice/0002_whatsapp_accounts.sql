-- Seed 004 migration 0001 ("accounts"), renamed so it is not mistaken for a
-- login account. Without user_id the seed's per-user sequence number becomes
-- unique per database, and its (user_id, account_number) index is that UNIQUE.
CREATE TABLE whatsapp_accounts (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                text NOT NULL,
    phone_number        text NOT NULL,
    avatar              text,
    color               text NOT NULL,
    status              text NOT NULL DEFAULT 'active',
    is_business_account boolean NOT NULL DEFAULT false,
    is_verified         boolean NOT NULL DEFAULT false,
    account_number      integer NOT NULL CONSTRAINT whatsapp_accounts_account_number_key UNIQUE,
    created_at          timestamptz NOT NULL DEFAULT now()
);
