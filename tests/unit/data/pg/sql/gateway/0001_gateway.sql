CREATE SCHEMA gateway;
CREATE TABLE gateway.slices (id serial PRIMARY KEY, port int UNIQUE NOT NULL);
