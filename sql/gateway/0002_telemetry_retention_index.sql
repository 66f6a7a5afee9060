-- Keep the monitor's hourly retention prune,
--     DELETE FROM gateway.telemetry WHERE "timestamp" < now() - interval '7 days',
-- proportional to the hour of expired rows instead of the 7-day table.
-- idx_telemetry_slice_time cannot serve it: slice_id leads, and PostgreSQL 15
-- has no skip scan. server_telemetry needs nothing: idx_server_telemetry_time
-- leads with "timestamp".
--
-- btree, not BRIN (measured with 50 slices, 504k rows, 9 simulated days of
-- hourly insert + prune + vacuum + analyze): BRIN starts at ~2 ms but degrades
-- once vacuum lets new rows reuse the pages of pruned ones. Block ranges then
-- hold old and new timestamps, a summary only ever widens, so 4.5 days in the
-- prune reads two thirds of the heap and after 9 days all of it (~30 ms, the
-- same as no index; pages_per_range=16 and autosummarize do not help). The
-- btree stays at ~1-2 ms throughout, for ~3.6 MB and no measurable insert
-- cost at one row per slice per minute.
CREATE INDEX idx_telemetry_timestamp ON gateway.telemetry ("timestamp");

-- The prune removes ~1/168 of the table each hour. With the default scale
-- factors autovacuum would analyze about every 8 hours and vacuum every ~33,
-- so the planner overestimates the expired rows (with stats a few days stale
-- it chose a sequential scan despite the btree) and dead rows pile up before
-- their space is reused. At 0.01 both run every hour or two.
ALTER TABLE gateway.telemetry SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.01
);
