-- Seed 004 migration 0004.
CREATE TABLE folders (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL,
    color      text NOT NULL,
    account_id uuid NOT NULL CONSTRAINT folders_account_id_fkey REFERENCES whatsapp_accounts (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
