-- Seed 004 migration 0003. Deleting an account is refused until 0012.
CREATE TABLE priorities (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL,
    color      text NOT NULL,
    account_id uuid NOT NULL CONSTRAINT priorities_account_id_fkey REFERENCES whatsapp_accounts (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
