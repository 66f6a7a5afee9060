-- Seed 004 migration 0009: the whatsapp-web.js session of each account.
CREATE TABLE whatsapp_sessions (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id     uuid NOT NULL CONSTRAINT whatsapp_sessions_account_id_key UNIQUE
                   CONSTRAINT whatsapp_sessions_account_id_fkey REFERENCES whatsapp_accounts (id),
    session_data   jsonb,                    -- encrypted by the application before it lands here
    status         text NOT NULL DEFAULT 'disconnected',
    last_connected timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
