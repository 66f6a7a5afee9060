-- Seed 004 migration 0010: WhatsApp channels an account follows.
CREATE TABLE newsletters (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id    uuid NOT NULL CONSTRAINT newsletters_account_id_fkey REFERENCES whatsapp_accounts (id),
    channel_id    text NOT NULL,
    name          text,
    subscribed_at timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- following a channel twice means nothing
    CONSTRAINT newsletters_account_id_channel_id_key UNIQUE (account_id, channel_id)
);
