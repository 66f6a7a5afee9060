-- PROPOSED gateway migration (not applied by the deploy: bench/telemetry_scale.py
-- --layout partitioned measures it). gateway.telemetry becomes a table partitioned by UTC
-- day on "timestamp", so retention drops whole days: the prune's cost no longer depends on
-- the table's size and leaves no dead rows behind for VACUUM to scan every index for.
--
-- What the gateway application sees is unchanged: the table, its columns and types, the
-- seed's idx_telemetry_slice_time (now a partitioned index), the foreign key to
-- gateway.slices with ON DELETE CASCADE. Two differences: the primary key must contain the
-- partition key, so it is (id, "timestamp") (id stays unique: it still comes from the one
-- sequence), and retention is by whole days: a row is dropped once its whole day is older
-- than the retention, so rows are kept between 7 and 8 days (the monitor's prune test checks
-- "exactly older than the retention" and would check that instead).
--
-- The monitor's prune then runs
--     SELECT gateway.telemetry_maintain(make_interval(secs => %s))
-- instead of DELETE FROM gateway.telemetry ..., and the deploy grants it EXECUTE.

ALTER TABLE gateway.telemetry RENAME TO telemetry_unpartitioned;
ALTER INDEX gateway.telemetry_pkey RENAME TO telemetry_unpartitioned_pkey;
ALTER INDEX gateway.idx_telemetry_slice_time RENAME TO telemetry_unpartitioned_slice_time;
-- 0002's btree served only the DELETE prune; dropping days needs no index.
DROP INDEX gateway.idx_telemetry_timestamp;
ALTER TABLE gateway.telemetry_unpartitioned
    RENAME CONSTRAINT telemetry_slice_id_fkey TO telemetry_unpartitioned_slice_id_fkey;

CREATE TABLE gateway.telemetry (
    id          BIGINT NOT NULL DEFAULT nextval('gateway.telemetry_id_seq'),
    slice_id    INTEGER NOT NULL
                CONSTRAINT telemetry_slice_id_fkey REFERENCES gateway.slices (id) ON DELETE CASCADE,
    "timestamp" TIMESTAMPTZ NOT NULL DEFAULT now(),
    rss_bytes   BIGINT,
    wa_state    TEXT,
    cpu_percent NUMERIC,
    disk_bytes  BIGINT,
    CONSTRAINT telemetry_pkey PRIMARY KEY (id, "timestamp")
) PARTITION BY RANGE ("timestamp");
ALTER SEQUENCE gateway.telemetry_id_seq OWNED BY gateway.telemetry.id;
CREATE INDEX idx_telemetry_slice_time ON gateway.telemetry (slice_id, "timestamp" DESC);
-- Rows outside every day partition (a clock far off, a replayed outage older than the
-- oldest day) land here instead of failing the monitor's whole COPY.
CREATE TABLE gateway.telemetry_default PARTITION OF gateway.telemetry DEFAULT;

-- Day partitions gateway.telemetry_YYYYMMDD covering [first, last], UTC days.
CREATE FUNCTION gateway.telemetry_partitions(first timestamptz, last timestamptz) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    d date;
    made integer := 0;
BEGIN
    FOR d IN SELECT generate_series((first AT TIME ZONE 'UTC')::date, (last AT TIME ZONE 'UTC')::date, '1 day')::date
    LOOP
        IF to_regclass(format('gateway.telemetry_%s', to_char(d, 'YYYYMMDD'))) IS NULL THEN
            EXECUTE format('CREATE TABLE gateway.%I PARTITION OF gateway.telemetry FOR VALUES FROM (%L) TO (%L)',
                           'telemetry_' || to_char(d, 'YYYYMMDD'),
                           d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
            made := made + 1;
        END IF;
    END LOOP;
    RETURN made;
END $$;

-- The hourly retention step: make sure today and the next two days have partitions, drop
-- every day partition wholly older than now() - retention, and delete expired strays from
-- the default partition. Returns the number of day partitions dropped.
CREATE FUNCTION gateway.telemetry_maintain(retention interval) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    part record;
    dropped integer := 0;
    cutoff timestamptz := now() - retention;
BEGIN
    PERFORM gateway.telemetry_partitions(now(), now() + interval '2 days');
    FOR part IN
        SELECT c.relname
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'gateway.telemetry'::regclass AND c.relname ~ '^telemetry_[0-9]{8}$'
          AND (to_date(substr(c.relname, 11), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC' <= cutoff
    LOOP
        EXECUTE format('DROP TABLE gateway.%I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    DELETE FROM gateway.telemetry_default WHERE "timestamp" < cutoff;
    RETURN dropped;
END $$;
REVOKE ALL ON FUNCTION gateway.telemetry_partitions(timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION gateway.telemetry_maintain(interval) FROM PUBLIC;

-- Existing rows move over (a fresh install has none; ~10 M rows take a few minutes, during
-- which the monitor buffers its cycles).
SELECT gateway.telemetry_partitions(coalesce(min("timestamp"), now()), now() + interval '2 days')
FROM gateway.telemetry_unpartitioned;
INSERT INTO gateway.telemetry SELECT * FROM gateway.telemetry_unpartitioned;
DROP TABLE gateway.telemetry_unpartitioned;
-- 0002's autovacuum settings are not needed: nothing is deleted, and each day partition
-- is analyzed by autovacuum's insert threshold as it fills.
