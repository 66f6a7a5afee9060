-- Seed 004 migration 0007.
CREATE TABLE chat_priorities (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    chat_id     text NOT NULL,
    priority_id uuid NOT NULL CONSTRAINT chat_priorities_priority_id_fkey REFERENCES priorities (id),
    account_id  uuid NOT NULL CONSTRAINT chat_priorities_account_id_fkey REFERENCES whatsapp_accounts (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- one priority per chat per account
    CONSTRAINT chat_priorities_chat_id_account_id_key UNIQUE (chat_id, account_id)
);
