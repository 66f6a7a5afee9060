-- Seed 004 migration 0008: a chat can sit in many folders, but in each once.
CREATE TABLE chat_folders (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    chat_id    text NOT NULL,
    folder_id  uuid NOT NULL CONSTRAINT chat_folders_folder_id_fkey REFERENCES folders (id),
    account_id uuid NOT NULL CONSTRAINT chat_folders_account_id_fkey REFERENCES whatsapp_accounts (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chat_folders_chat_id_folder_id_key UNIQUE (chat_id, folder_id)
);
