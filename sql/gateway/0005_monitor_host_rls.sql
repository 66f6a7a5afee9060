-- Per-host monitors (issue 14): each slice host's monitor logs in with its own role and
-- may write telemetry only for the slices on its host, enforced here, by row-level
-- security keyed by gateway.slices.host (0004), not by the monitor's good behaviour.
--
-- sliceops_fleet.monitor_hosts names each host monitor's role and its host; the deploy fills it.
-- A role listed there sees and writes only its host's gateway.slices rows, telemetry rows
-- of those slices and server_telemetry rows labelled with its host. Any other role keeps
-- exactly what its grants gave it before (the permissive "granted" policies): the database
-- host's monitor (sliceops_monitor, the hourly prune over every row), and the table owner
-- wank_gateway, whom RLS does not apply to at all (no FORCE).
--
-- Measured against the monitor's 50 ms cycle write goal: bench/monitor_write_rls.py.

-- The mapping lives in a schema of its own: the gateway schema keeps exactly seed 000's
-- tables (tests/integration/test_gateway_schema.py).
CREATE SCHEMA sliceops_fleet;

CREATE TABLE sliceops_fleet.monitor_hosts (
    role name PRIMARY KEY,
    host text NOT NULL
);

-- The caller's host: the policies pass current_user in (inside a SECURITY DEFINER function
-- current_user is the definer). SECURITY DEFINER so that a role without a grant on
-- sliceops_fleet.monitor_hosts can still be checked; a fixed search_path so it cannot be misled.
CREATE FUNCTION sliceops_fleet.monitor_host(who name) RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT host FROM sliceops_fleet.monitor_hosts WHERE role = who $$;
-- Every role the policies below are evaluated for must reach the function (the table
-- itself stays unreadable to them).
GRANT USAGE ON SCHEMA sliceops_fleet TO PUBLIC;

ALTER TABLE gateway.slices ENABLE ROW LEVEL SECURITY;
ALTER TABLE gateway.telemetry ENABLE ROW LEVEL SECURITY;
ALTER TABLE gateway.server_telemetry ENABLE ROW LEVEL SECURITY;

CREATE POLICY granted ON gateway.slices USING (true) WITH CHECK (true);
CREATE POLICY granted ON gateway.telemetry USING (true) WITH CHECK (true);
CREATE POLICY granted ON gateway.server_telemetry USING (true) WITH CHECK (true);

-- "(SELECT ...)" makes each lookup an InitPlan: once per statement, not once per row.
CREATE POLICY own_host ON gateway.slices AS RESTRICTIVE
    USING ((SELECT sliceops_fleet.monitor_host(current_user)) IS NULL
           OR host = (SELECT sliceops_fleet.monitor_host(current_user)))
    WITH CHECK ((SELECT sliceops_fleet.monitor_host(current_user)) IS NULL
                OR host = (SELECT sliceops_fleet.monitor_host(current_user)));

-- gateway.slices as the caller sees it (own_host above): its own host's slices.
CREATE POLICY own_host ON gateway.telemetry AS RESTRICTIVE
    USING ((SELECT sliceops_fleet.monitor_host(current_user)) IS NULL
           OR slice_id IN (SELECT id FROM gateway.slices))
    WITH CHECK ((SELECT sliceops_fleet.monitor_host(current_user)) IS NULL
                OR slice_id IN (SELECT id FROM gateway.slices));

CREATE POLICY own_host ON gateway.server_telemetry AS RESTRICTIVE
    USING ((SELECT sliceops_fleet.monitor_host(current_user)) IS NULL
           OR host = (SELECT sliceops_fleet.monitor_host(current_user)))
    WITH CHECK ((SELECT sliceops_fleet.monitor_host(current_user)) IS NULL
                OR host = (SELECT sliceops_fleet.monitor_host(current_user)));
