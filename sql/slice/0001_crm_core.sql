-- The CRM core of one slice (seed 000, "Per-Slice Databases"): the WhatsApp
-- contacts, chats, messages and media metadata that the slice's WhatsApp
-- session syncs. The database is the tenant, so nothing here names a user.
-- A slice runs one WhatsApp session, so a WhatsApp id ('4915112345678@c.us',
-- '1203630...@g.us') identifies a contact or chat within the database.

CREATE TABLE contacts (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    wa_id           text NOT NULL CONSTRAINT contacts_wa_id_key UNIQUE,
    phone_number    text,
    name            text,                    -- as saved in the address book
    push_name       text,                    -- as the contact calls themselves
    is_business     boolean NOT NULL DEFAULT false,
    is_blocked      boolean NOT NULL DEFAULT false,
    profile_pic_url text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE chats (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    wa_id           text NOT NULL CONSTRAINT chats_wa_id_key UNIQUE,
    -- SET NULL, not CASCADE: removing someone from the address book must not
    -- delete the conversation. Group chats have no contact.
    contact_id      uuid CONSTRAINT chats_contact_id_fkey
                    REFERENCES contacts (id) ON DELETE SET NULL,
    name            text,
    is_group        boolean NOT NULL DEFAULT false,
    is_archived     boolean NOT NULL DEFAULT false,
    is_pinned       boolean NOT NULL DEFAULT false,
    unread_count    integer NOT NULL DEFAULT 0 CONSTRAINT chats_unread_count_check CHECK (unread_count >= 0),
    -- Denormalised from messages so the chat list is one index scan, not a
    -- max(sent_at) per chat.
    last_message_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The chat list: newest conversation first, never-used chats last.
CREATE INDEX idx_chats_last_message_at ON chats (last_message_at DESC NULLS LAST);
CREATE INDEX idx_chats_contact_id ON chats (contact_id);

CREATE TABLE messages (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    chat_id       uuid NOT NULL CONSTRAINT messages_chat_id_fkey
                  REFERENCES chats (id) ON DELETE CASCADE,
    -- WhatsApp's serialized message id ('true_4915...@c.us_3EB0...') already
    -- names the chat and direction, so it is unique on its own; the sync
    -- upserts on it.
    wa_id         text NOT NULL CONSTRAINT messages_wa_id_key UNIQUE,
    from_me       boolean NOT NULL,
    author        text,                      -- sender's WhatsApp id in group chats
    type          text NOT NULL DEFAULT 'chat',
    body          text,
    sent_at       timestamptz NOT NULL,
    -- WhatsApp ack: -1 error, 0 pending, 1 server, 2 device, 3 read, 4 played
    ack           smallint CONSTRAINT messages_ack_check CHECK (ack BETWEEN -1 AND 4),
    has_media     boolean NOT NULL DEFAULT false,
    quoted_wa_id  text,                      -- a reply's original, which may never have been synced
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- A conversation pages backwards from its newest message.
CREATE INDEX idx_messages_chat_id_sent_at ON messages (chat_id, sent_at DESC);

-- Metadata only: the bytes live under the slice's data directory.
CREATE TABLE media (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    message_id   uuid NOT NULL CONSTRAINT media_message_id_key UNIQUE
                 CONSTRAINT media_message_id_fkey REFERENCES messages (id) ON DELETE CASCADE,
    mime_type    text NOT NULL,
    file_name    text,
    size_bytes   bigint CONSTRAINT media_size_bytes_check CHECK (size_bytes >= 0),
    sha256       text,
    storage_path text,                       -- relative to the slice data dir; NULL until downloaded
    created_at   timestamptz NOT NULL DEFAULT now()
);
