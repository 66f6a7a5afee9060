-- Gateway schema of wank_saas: users, the slices they are assigned to, login
-- sessions and the monitor's telemetry (seed 000, "Gateway Database").
-- Objects are owned by wank_gateway because the runner SETs ROLE to it.

CREATE SCHEMA IF NOT EXISTS gateway;

CREATE TABLE gateway.users (
    id                   SERIAL PRIMARY KEY,
    -- Login compares against the stored value, so it must already be lowercase;
    -- lower() in every lookup would leave 'A@x' and 'a@x' both insertable.
    email                TEXT NOT NULL
                         CONSTRAINT users_email_key UNIQUE
                         CONSTRAINT users_email_lowercase CHECK (email = lower(email)),
    password_hash        TEXT NOT NULL,                  -- bcrypt, cost 12
    slice_id             INTEGER,                        -- NULL while waiting for a slice
    stripe_customer      TEXT,
    subscription_status  TEXT NOT NULL DEFAULT 'trial'
                         CONSTRAINT users_subscription_status_check
                         CHECK (subscription_status IN ('trial', 'active', 'past_due', 'cancelled')),
    subscription_id      TEXT,
    subscription_ends_at TIMESTAMPTZ,
    is_admin             BOOLEAN NOT NULL DEFAULT false,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_login_at        TIMESTAMPTZ
);

CREATE TABLE gateway.slices (
    id             SERIAL PRIMARY KEY,
    port           INTEGER NOT NULL
                   CONSTRAINT slices_port_key UNIQUE
                   CONSTRAINT slices_port_check CHECK (port BETWEEN 1 AND 65535),
    status         TEXT NOT NULL DEFAULT 'available'
                   CONSTRAINT slices_status_check
                   CHECK (status IN ('available', 'assigned', 'suspended', 'destroying')),
    user_id        INTEGER,                              -- NULL while available
    wa_connected   BOOLEAN NOT NULL DEFAULT false,
    wa_phone       TEXT,
    last_health_at TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    storage_bytes  BIGINT NOT NULL DEFAULT 0
);

-- The two tables point at each other, so the references can only be added once
-- both exist. UNIQUE on both sides: one user per slice and one slice per user;
-- a slice shared by two users would show one tenant's CRM to another.
-- No ON DELETE action: a user or slice that is still assigned must be released
-- through the slice lifecycle (status 'destroying') before it can be deleted.
ALTER TABLE gateway.users
    ADD CONSTRAINT users_slice_id_key UNIQUE (slice_id),
    ADD CONSTRAINT users_slice_id_fkey FOREIGN KEY (slice_id) REFERENCES gateway.slices (id);

ALTER TABLE gateway.slices
    ADD CONSTRAINT slices_user_id_key UNIQUE (user_id),
    ADD CONSTRAINT slices_user_id_fkey FOREIGN KEY (user_id) REFERENCES gateway.users (id);

CREATE TABLE gateway.sessions (
    -- The id is the bearer token itself: 256 random bits as 64 hex digits.
    id         TEXT PRIMARY KEY
               CONSTRAINT sessions_id_check CHECK (id ~ '^[0-9a-f]{64}$'),
    user_id    INTEGER NOT NULL
               CONSTRAINT sessions_user_id_fkey REFERENCES gateway.users (id) ON DELETE CASCADE,
    expires_at TIMESTAMPTZ NOT NULL,                     -- 30-day rolling expiry
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Deleting a user cascades here; without this it would scan every session.
CREATE INDEX idx_sessions_user_id ON gateway.sessions (user_id);

CREATE TABLE gateway.telemetry (
    id          BIGSERIAL PRIMARY KEY,
    slice_id    INTEGER NOT NULL
                CONSTRAINT telemetry_slice_id_fkey REFERENCES gateway.slices (id) ON DELETE CASCADE,
    "timestamp" TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Each probe can fail on its own (container gone, du timed out), so a
    -- sample keeps what was measured and leaves the rest NULL.
    rss_bytes   BIGINT,
    wa_state    TEXT,
    cpu_percent NUMERIC,
    disk_bytes  BIGINT
);

-- Per-slice charts read the newest samples of one slice first.
CREATE INDEX idx_telemetry_slice_time ON gateway.telemetry (slice_id, "timestamp" DESC);

CREATE TABLE gateway.server_telemetry (
    id               BIGSERIAL PRIMARY KEY,
    "timestamp"      TIMESTAMPTZ NOT NULL DEFAULT now(),
    ram_used_bytes   BIGINT,
    ram_total_bytes  BIGINT,
    swap_used_bytes  BIGINT,
    swap_total_bytes BIGINT,
    cpu_percent      REAL,
    disk_used_bytes  BIGINT,
    disk_total_bytes BIGINT,
    active_slices    INTEGER,
    total_slices     INTEGER
);

-- Serves both the dashboard (newest first) and the retention prune: a range
-- scan below the cutoff reads only the expired entries.
CREATE INDEX idx_server_telemetry_time ON gateway.server_telemetry ("timestamp" DESC);
