CREATE TABLE chats (id bigserial PRIMARY KEY, contact_id bigint REFERENCES contacts);
