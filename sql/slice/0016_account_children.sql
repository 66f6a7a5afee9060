-- Seed 004 migrations 0003-0010 (priorities, folders, templates, chat_tags,
-- chat_priorities, chat_folders, whatsapp_sessions, newsletters), 0011 and
-- 0014, brought to the seed's shape in place: today's 0003-0012 built these
-- tables in snake_case; every row stays.
--
-- * Columns renamed to the seed's quoted camelCase; timestamptz columns become
--   timestamp (UTC wall time, converted AT TIME ZONE 'UTC'); defaults the seed
--   does not list go ("createdAt" now(), ...); whatsapp_sessions."status" keeps
--   'disconnected' and becomes nullable, as the seed has it.
-- * UNIQUEs the seed does not have go: chat_folders (chat_id, folder_id) and
--   newsletters (account_id, channel_id). The seed's stay: one tag and one
--   priority per chat per account, one WhatsApp session per account.
-- * Constraints and indexes take drizzle-kit's names (the seed gives none):
--   <table>_<columns>_unique, <table>_<column>_<table>_<column>_fk; the
--   cascades of 0012 (seed 0014) are kept as they are, only renamed.
-- * Indexes: seed 0011 lists only the accounts indexes (0014). The foreign-key
--   indexes of today's 0011 stay, renamed idx_<table>_<column>: seed 004's
--   folder and template queries read through them, and every cascading delete
--   would otherwise scan. newsletters."accountId" was covered by the UNIQUE
--   that goes, so it gets its own.

-- priorities, folders, templates: (id, name, color|content, accountId, createdAt)
ALTER TABLE priorities RENAME COLUMN account_id TO "accountId";
ALTER TABLE priorities RENAME COLUMN created_at TO "createdAt";
ALTER TABLE priorities RENAME CONSTRAINT priorities_account_id_fkey TO "priorities_accountId_accounts_id_fk";
ALTER TABLE priorities
    ALTER COLUMN "createdAt" DROP DEFAULT,
    ALTER COLUMN "createdAt" TYPE timestamp USING "createdAt" AT TIME ZONE 'UTC';
ALTER INDEX idx_priorities_account_id RENAME TO "idx_priorities_accountId";

ALTER TABLE folders RENAME COLUMN account_id TO "accountId";
ALTER TABLE folders RENAME COLUMN created_at TO "createdAt";
ALTER TABLE folders RENAME CONSTRAINT folders_account_id_fkey TO "folders_accountId_accounts_id_fk";
ALTER TABLE folders
    ALTER COLUMN "createdAt" DROP DEFAULT,
    ALTER COLUMN "createdAt" TYPE timestamp USING "createdAt" AT TIME ZONE 'UTC';
ALTER INDEX idx_folders_account_id RENAME TO "idx_folders_accountId";

ALTER TABLE templates RENAME COLUMN account_id TO "accountId";
ALTER TABLE templates RENAME COLUMN created_at TO "createdAt";
ALTER TABLE templates RENAME CONSTRAINT templates_account_id_fkey TO "templates_accountId_accounts_id_fk";
ALTER TABLE templates
    ALTER COLUMN "createdAt" DROP DEFAULT,
    ALTER COLUMN "createdAt" TYPE timestamp USING "createdAt" AT TIME ZONE 'UTC';
ALTER INDEX idx_templates_account_id RENAME TO "idx_templates_accountId";

-- chat_tags: chatId is WhatsApp's chat id, not a reference (tags outlive the chat cache).
ALTER TABLE chat_tags RENAME COLUMN chat_id TO "chatId";
ALTER TABLE chat_tags RENAME COLUMN account_id TO "accountId";
ALTER TABLE chat_tags RENAME COLUMN created_at TO "createdAt";
ALTER TABLE chat_tags RENAME CONSTRAINT chat_tags_account_id_fkey TO "chat_tags_accountId_accounts_id_fk";
ALTER TABLE chat_tags RENAME CONSTRAINT chat_tags_chat_id_account_id_key TO "chat_tags_chatId_accountId_unique";
ALTER TABLE chat_tags
    ALTER COLUMN "createdAt" DROP DEFAULT,
    ALTER COLUMN "createdAt" TYPE timestamp USING "createdAt" AT TIME ZONE 'UTC';
ALTER INDEX idx_chat_tags_account_id RENAME TO "idx_chat_tags_accountId";

ALTER TABLE chat_priorities RENAME COLUMN chat_id TO "chatId";
ALTER TABLE chat_priorities RENAME COLUMN priority_id TO "priorityId";
ALTER TABLE chat_priorities RENAME COLUMN account_id TO "accountId";
ALTER TABLE chat_priorities RENAME COLUMN created_at TO "createdAt";
ALTER TABLE chat_priorities RENAME CONSTRAINT chat_priorities_priority_id_fkey TO "chat_priorities_priorityId_priorities_id_fk";
ALTER TABLE chat_priorities RENAME CONSTRAINT chat_priorities_account_id_fkey TO "chat_priorities_accountId_accounts_id_fk";
ALTER TABLE chat_priorities RENAME CONSTRAINT chat_priorities_chat_id_account_id_key TO "chat_priorities_chatId_accountId_unique";
ALTER TABLE chat_priorities
    ALTER COLUMN "createdAt" DROP DEFAULT,
    ALTER COLUMN "createdAt" TYPE timestamp USING "createdAt" AT TIME ZONE 'UTC';
ALTER INDEX idx_chat_priorities_account_id RENAME TO "idx_chat_priorities_accountId";
ALTER INDEX idx_chat_priorities_priority_id RENAME TO "idx_chat_priorities_priorityId";

ALTER TABLE chat_folders RENAME COLUMN chat_id TO "chatId";
ALTER TABLE chat_folders RENAME COLUMN folder_id TO "folderId";
ALTER TABLE chat_folders RENAME COLUMN account_id TO "accountId";
ALTER TABLE chat_folders RENAME COLUMN created_at TO "createdAt";
ALTER TABLE chat_folders RENAME CONSTRAINT chat_folders_folder_id_fkey TO "chat_folders_folderId_folders_id_fk";
ALTER TABLE chat_folders RENAME CONSTRAINT chat_folders_account_id_fkey TO "chat_folders_accountId_accounts_id_fk";
ALTER TABLE chat_folders
    DROP CONSTRAINT chat_folders_chat_id_folder_id_key,
    ALTER COLUMN "createdAt" DROP DEFAULT,
    ALTER COLUMN "createdAt" TYPE timestamp USING "createdAt" AT TIME ZONE 'UTC';
ALTER INDEX idx_chat_folders_folder_id RENAME TO "idx_chat_folders_folderId";
ALTER INDEX idx_chat_folders_account_id RENAME TO "idx_chat_folders_accountId";

ALTER TABLE whatsapp_sessions RENAME COLUMN account_id TO "accountId";
ALTER TABLE whatsapp_sessions RENAME COLUMN session_data TO "sessionData";
ALTER TABLE whatsapp_sessions RENAME COLUMN last_connected TO "lastConnected";
ALTER TABLE whatsapp_sessions RENAME COLUMN created_at TO "createdAt";
ALTER TABLE whatsapp_sessions RENAME COLUMN updated_at TO "updatedAt";
ALTER TABLE whatsapp_sessions RENAME CONSTRAINT whatsapp_sessions_account_id_fkey TO "whatsapp_sessions_accountId_accounts_id_fk";
ALTER TABLE whatsapp_sessions RENAME CONSTRAINT whatsapp_sessions_account_id_key TO "whatsapp_sessions_accountId_unique";
ALTER TABLE whatsapp_sessions
    ALTER COLUMN "status" DROP NOT NULL,
    ALTER COLUMN "lastConnected" TYPE timestamp USING "lastConnected" AT TIME ZONE 'UTC',
    ALTER COLUMN "createdAt" DROP DEFAULT,
    ALTER COLUMN "createdAt" TYPE timestamp USING "createdAt" AT TIME ZONE 'UTC',
    ALTER COLUMN "updatedAt" DROP DEFAULT,
    ALTER COLUMN "updatedAt" TYPE timestamp USING "updatedAt" AT TIME ZONE 'UTC';

ALTER TABLE newsletters RENAME COLUMN account_id TO "accountId";
ALTER TABLE newsletters RENAME COLUMN channel_id TO "channelId";
ALTER TABLE newsletters RENAME COLUMN subscribed_at TO "subscribedAt";
ALTER TABLE newsletters RENAME COLUMN created_at TO "createdAt";
ALTER TABLE newsletters RENAME CONSTRAINT newsletters_account_id_fkey TO "newsletters_accountId_accounts_id_fk";
ALTER TABLE newsletters
    DROP CONSTRAINT newsletters_account_id_channel_id_key,
    ALTER COLUMN "subscribedAt" DROP DEFAULT,
    ALTER COLUMN "subscribedAt" TYPE timestamp USING "subscribedAt" AT TIME ZONE 'UTC',
    ALTER COLUMN "createdAt" DROP DEFAULT,
    ALTER COLUMN "createdAt" TYPE timestamp USING "createdAt" AT TIME ZONE 'UTC';
CREATE INDEX "idx_newsletters_accountId" ON newsletters ("accountId");
