-- Seed 004 migration 0011: an index on every foreign key column that no
-- UNIQUE constraint already leads with. PostgreSQL does not create them, and
-- without them the per-account queries and every cascading delete from 0012
-- scan the child table.
-- Already covered: whatsapp_sessions (account_id UNIQUE), newsletters
-- (account_id, channel_id) UNIQUE. chat_tags and chat_priorities lead their
-- UNIQUE with chat_id, so account_id still needs its own index.
CREATE INDEX idx_priorities_account_id ON priorities (account_id);
CREATE INDEX idx_folders_account_id ON folders (account_id);
CREATE INDEX idx_templates_account_id ON templates (account_id);
CREATE INDEX idx_chat_tags_account_id ON chat_tags (account_id);
CREATE INDEX idx_chat_priorities_account_id ON chat_priorities (account_id);
CREATE INDEX idx_chat_priorities_priority_id ON chat_priorities (priority_id);
CREATE INDEX idx_chat_folders_folder_id ON chat_folders (folder_id);
CREATE INDEX idx_chat_folders_account_id ON chat_folders (account_id);
