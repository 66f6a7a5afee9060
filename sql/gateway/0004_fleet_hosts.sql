-- One inventory, many hosts (issue 14): the gateway knows where each slice runs and
-- which host each server_telemetry row describes.
--
-- gateway.slices.host: the inventory's name of the slice host running the slice's
-- container (hosts.<name>; a single-target inventory's one host is "local" for
-- @local, else the target's hostname). The deploy's registration writes it; a move
-- rewrites it only once the slice answers /health on its new host. Nullable and
-- without a default: seed 000's columns and rows are untouched, and adding it is a
-- catalog-only change (no table rewrite). NULL: registered before this migration,
-- on the database host.
ALTER TABLE gateway.slices ADD COLUMN host text;

-- gateway.server_telemetry.host: each host's monitor writes one row per cycle,
-- labelled with its own host name. NULL: a row written before this migration.
ALTER TABLE gateway.server_telemetry ADD COLUMN host text;

-- The dashboard's "newest row of each host" and a host's series read this; the
-- prune keeps using idx_server_telemetry_time ("timestamp" leads there).
CREATE INDEX idx_server_telemetry_host_time ON gateway.server_telemetry (host, "timestamp" DESC);
