CREATE INDEX ON gateway.slices (port);
