-- Seed 000's CRM tables (contacts, chats, messages, media; today's 0001) in
-- seed 004's style, since they hold the same app's data: quoted camelCase
-- columns, timestamp (UTC wall time, converted AT TIME ZONE 'UTC'), drizzle-kit
-- constraint names, and an "accountId" referencing accounts with cascade.
-- No seed 004 migration corresponds: the seed's app keeps WhatsApp data in
-- MongoDB; sliceops' slices keep it here.
--
-- * contacts and chats belong to a WhatsApp account: "accountId" uuid NOT NULL,
--   ON DELETE CASCADE. Their WhatsApp id is unique per account, no longer per
--   database (two accounts may share a contact or a group). Existing rows were
--   synced by the slice's one WhatsApp session (0001) and are attached to the
--   slice's first account ("accountNumber" order; 0014 made one if there was
--   none).
-- * messages and media reach their account through their chat (CASCADE, as
--   before); a second path to the account could contradict the first. A
--   message's WhatsApp id is unique per chat: two accounts in one group see the
--   same message.
-- * The CRM tables keep their column defaults (now(), false, 0, 'chat'): they
--   are sliceops' own tables, and the sync writes partial rows.
-- * The chat list is per account now: ("accountId", "lastMessageAt" DESC NULLS
--   LAST) replaces the database-wide index.

ALTER TABLE contacts RENAME COLUMN wa_id TO "waId";
ALTER TABLE contacts RENAME COLUMN phone_number TO "phoneNumber";
ALTER TABLE contacts RENAME COLUMN push_name TO "pushName";
ALTER TABLE contacts RENAME COLUMN is_business TO "isBusiness";
ALTER TABLE contacts RENAME COLUMN is_blocked TO "isBlocked";
ALTER TABLE contacts RENAME COLUMN profile_pic_url TO "profilePicUrl";
ALTER TABLE contacts RENAME COLUMN created_at TO "createdAt";
ALTER TABLE contacts RENAME COLUMN updated_at TO "updatedAt";
ALTER TABLE contacts
    DROP CONSTRAINT contacts_wa_id_key,
    ALTER COLUMN "createdAt" TYPE timestamp USING "createdAt" AT TIME ZONE 'UTC',
    ALTER COLUMN "updatedAt" TYPE timestamp USING "updatedAt" AT TIME ZONE 'UTC',
    ADD COLUMN "accountId" uuid;
UPDATE contacts SET "accountId" = (SELECT "id" FROM accounts ORDER BY "accountNumber", "createdAt", "id" LIMIT 1);
ALTER TABLE contacts
    ALTER COLUMN "accountId" SET NOT NULL,
    ADD CONSTRAINT "contacts_accountId_accounts_id_fk"
        FOREIGN KEY ("accountId") REFERENCES accounts ("id") ON DELETE CASCADE,
    ADD CONSTRAINT "contacts_accountId_waId_unique" UNIQUE ("accountId", "waId");

ALTER TABLE chats RENAME COLUMN wa_id TO "waId";
ALTER TABLE chats RENAME COLUMN contact_id TO "contactId";
ALTER TABLE chats RENAME COLUMN is_group TO "isGroup";
ALTER TABLE chats RENAME COLUMN is_archived TO "isArchived";
ALTER TABLE chats RENAME COLUMN is_pinned TO "isPinned";
ALTER TABLE chats RENAME COLUMN unread_count TO "unreadCount";
ALTER TABLE chats RENAME COLUMN last_message_at TO "lastMessageAt";
ALTER TABLE chats RENAME COLUMN created_at TO "createdAt";
ALTER TABLE chats RENAME COLUMN updated_at TO "updatedAt";
ALTER TABLE chats RENAME CONSTRAINT chats_contact_id_fkey TO "chats_contactId_contacts_id_fk";
ALTER TABLE chats RENAME CONSTRAINT chats_unread_count_check TO "chats_unreadCount_check";
ALTER INDEX idx_chats_contact_id RENAME TO "idx_chats_contactId";
DROP INDEX idx_chats_last_message_at;
ALTER TABLE chats
    DROP CONSTRAINT chats_wa_id_key,
    ALTER COLUMN "lastMessageAt" TYPE timestamp USING "lastMessageAt" AT TIME ZONE 'UTC',
    ALTER COLUMN "createdAt" TYPE timestamp USING "createdAt" AT TIME ZONE 'UTC',
    ALTER COLUMN "updatedAt" TYPE timestamp USING "updatedAt" AT TIME ZONE 'UTC',
    ADD COLUMN "accountId" uuid;
UPDATE chats SET "accountId" = (SELECT "id" FROM accounts ORDER BY "accountNumber", "createdAt", "id" LIMIT 1);
ALTER TABLE chats
    ALTER COLUMN "accountId" SET NOT NULL,
    ADD CONSTRAINT "chats_accountId_accounts_id_fk"
        FOREIGN KEY ("accountId") REFERENCES accounts ("id") ON DELETE CASCADE,
    ADD CONSTRAINT "chats_accountId_waId_unique" UNIQUE ("accountId", "waId");
CREATE INDEX "idx_chats_accountId_lastMessageAt" ON chats ("accountId", "lastMessageAt" DESC NULLS LAST);

ALTER TABLE messages RENAME COLUMN chat_id TO "chatId";
ALTER TABLE messages RENAME COLUMN wa_id TO "waId";
ALTER TABLE messages RENAME COLUMN from_me TO "fromMe";
ALTER TABLE messages RENAME COLUMN sent_at TO "sentAt";
ALTER TABLE messages RENAME COLUMN has_media TO "hasMedia";
ALTER TABLE messages RENAME COLUMN quoted_wa_id TO "quotedWaId";
ALTER TABLE messages RENAME COLUMN created_at TO "createdAt";
ALTER TABLE messages RENAME CONSTRAINT messages_chat_id_fkey TO "messages_chatId_chats_id_fk";
ALTER INDEX idx_messages_chat_id_sent_at RENAME TO "idx_messages_chatId_sentAt";
ALTER TABLE messages
    DROP CONSTRAINT messages_wa_id_key,
    ALTER COLUMN "sentAt" TYPE timestamp USING "sentAt" AT TIME ZONE 'UTC',
    ALTER COLUMN "createdAt" TYPE timestamp USING "createdAt" AT TIME ZONE 'UTC',
    ADD CONSTRAINT "messages_chatId_waId_unique" UNIQUE ("chatId", "waId");

ALTER TABLE media RENAME COLUMN message_id TO "messageId";
ALTER TABLE media RENAME COLUMN mime_type TO "mimeType";
ALTER TABLE media RENAME COLUMN file_name TO "fileName";
ALTER TABLE media RENAME COLUMN size_bytes TO "sizeBytes";
ALTER TABLE media RENAME COLUMN storage_path TO "storagePath";
ALTER TABLE media RENAME COLUMN created_at TO "createdAt";
ALTER TABLE media RENAME CONSTRAINT media_message_id_key TO "media_messageId_unique";
ALTER TABLE media RENAME CONSTRAINT media_message_id_fkey TO "media_messageId_messages_id_fk";
ALTER TABLE media RENAME CONSTRAINT media_size_bytes_check TO "media_sizeBytes_check";
ALTER TABLE media
    ALTER COLUMN "createdAt" TYPE timestamp USING "createdAt" AT TIME ZONE 'UTC';
