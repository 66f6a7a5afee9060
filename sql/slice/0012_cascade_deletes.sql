-- Seed 004 migration 0014: deleting a WhatsApp account, priority or folder
-- takes everything hanging off it, instead of being refused while children
-- exist. A foreign key's ON DELETE action cannot be altered in place, so each
-- is dropped and re-added under the same name, one ALTER TABLE per table so
-- the table is locked once. Re-adding validates existing rows, which already
-- satisfied the same reference.

ALTER TABLE priorities
    DROP CONSTRAINT priorities_account_id_fkey,
    ADD CONSTRAINT priorities_account_id_fkey
        FOREIGN KEY (account_id) REFERENCES whatsapp_accounts (id) ON DELETE CASCADE;

ALTER TABLE folders
    DROP CONSTRAINT folders_account_id_fkey,
    ADD CONSTRAINT folders_account_id_fkey
        FOREIGN KEY (account_id) REFERENCES whatsapp_accounts (id) ON DELETE CASCADE;

ALTER TABLE templates
    DROP CONSTRAINT templates_account_id_fkey,
    ADD CONSTRAINT templates_account_id_fkey
        FOREIGN KEY (account_id) REFERENCES whatsapp_accounts (id) ON DELETE CASCADE;

ALTER TABLE chat_tags
    DROP CONSTRAINT chat_tags_account_id_fkey,
    ADD CONSTRAINT chat_tags_account_id_fkey
        FOREIGN KEY (account_id) REFERENCES whatsapp_accounts (id) ON DELETE CASCADE;

ALTER TABLE chat_priorities
    DROP CONSTRAINT chat_priorities_priority_id_fkey,
    ADD CONSTRAINT chat_priorities_priority_id_fkey
        FOREIGN KEY (priority_id) REFERENCES priorities (id) ON DELETE CASCADE,
    DROP CONSTRAINT chat_priorities_account_id_fkey,
    ADD CONSTRAINT chat_priorities_account_id_fkey
        FOREIGN KEY (account_id) REFERENCES whatsapp_accounts (id) ON DELETE CASCADE;

ALTER TABLE chat_folders
    DROP CONSTRAINT chat_folders_folder_id_fkey,
    ADD CONSTRAINT chat_folders_folder_id_fkey
        FOREIGN KEY (folder_id) REFERENCES folders (id) ON DELETE CASCADE,
    DROP CONSTRAINT chat_folders_account_id_fkey,
    ADD CONSTRAINT chat_folders_account_id_fkey
        FOREIGN KEY (account_id) REFERENCES whatsapp_accounts (id) ON DELETE CASCADE;

ALTER TABLE whatsapp_sessions
    DROP CONSTRAINT whatsapp_sessions_account_id_fkey,
    ADD CONSTRAINT whatsapp_sessions_account_id_fkey
        FOREIGN KEY (account_id) REFERENCES whatsapp_accounts (id) ON DELETE CASCADE;

ALTER TABLE newsletters
    DROP CONSTRAINT newsletters_account_id_fkey,
    ADD CONSTRAINT newsletters_account_id_fkey
        FOREIGN KEY (account_id) REFERENCES whatsapp_accounts (id) ON DELETE CASCADE;
