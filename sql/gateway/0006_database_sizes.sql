-- Each slice database's size as the database host's monitor last measured it, so that
-- `sliceops status` reads one row per database instead of walking every database's files
-- (pg_database_size of 200 slice databases stats some 60,000 relation files: most of what
-- status cost). The monitor measures them every `disk_interval` (300 s) through
-- sliceops.record_database_sizes(), a function the deploy makes as the superuser (a size
-- needs CONNECT on the database, which neither the monitor nor wank_gateway has).
--
-- One row per database, replaced at each measurement: nothing charts a database's size over
-- time, so there is no history to keep and nothing to prune. Keyed by the database's name,
-- not gateway.slices.id: an orphan database (no gateway row) has a size too. In
-- sliceops_fleet, like 0005's mapping: the gateway schema keeps exactly seed 000's tables
-- (tests/integration/test_gateway_schema.py), and the gateway application never reads it.
CREATE TABLE sliceops_fleet.database_sizes (
    datname name PRIMARY KEY,
    size_bytes bigint NOT NULL,
    measured_at timestamptz NOT NULL
);
