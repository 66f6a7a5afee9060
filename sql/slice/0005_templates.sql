-- Seed 004 migration 0005: canned replies per account.
CREATE TABLE templates (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL,
    content    text NOT NULL,
    account_id uuid NOT NULL CONSTRAINT templates_account_id_fkey REFERENCES whatsapp_accounts (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
