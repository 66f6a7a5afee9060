CREATE TABLE contacts (id bigserial PRIMARY KEY, phone text NOT NULL);
