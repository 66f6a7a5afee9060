-- Seed 004 migration 0006. chat_id is WhatsApp's id, deliberately not a
-- reference to chats: tags are the user's own data and must survive the
-- synced chat cache being cleared or rebuilt (the same holds for 0007, 0008).
CREATE TABLE chat_tags (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    chat_id    text NOT NULL,
    tag        text NOT NULL,
    account_id uuid NOT NULL CONSTRAINT chat_tags_account_id_fkey REFERENCES whatsapp_accounts (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- one tag per chat per account
    CONSTRAINT chat_tags_chat_id_account_id_key UNIQUE (chat_id, account_id)
);
