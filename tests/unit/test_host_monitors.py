"""Slice hosts' monitors: each its own role (named from its host), its own credential whose
verifier is computed on its host, and its row in sliceops_fleet.monitor_hosts that RLS reads."""

from __future__ import annotations

import subprocess
from types import SimpleNamespace as NS

from sliceops.facts.monitor_credential import HostMonitors, MonitorVerifier
from sliceops.names import host_monitor_role
from sliceops.operations.postgres.monitors import desired_host_monitors, host_monitors_sql


def fleet(*names: str, db: str = "db1"):
    hosts = [NS(name=n) for n in names]
    return NS(database_host=NS(name=db), slice_hosts=tuple(hosts))


def test_each_slice_host_but_the_database_host_gets_a_role():
    assert desired_host_monitors(fleet("db1", "app1", "app-2")) == {
        "sliceops_monitor_app1": "app1", host_monitor_role("app-2"): "app-2"}
    assert desired_host_monitors(fleet("local", db="local")) == {}


def test_role_names_stay_apart_and_within_postgres_limit():
    names = {host_monitor_role(h) for h in ("a-b", "a.b", "a_b", "ab", "x" * 63, "x" * 62 + "y")}
    assert len(names) == 6 and all(len(n) <= 63 for n in names)


def test_a_new_host_monitor_is_created_granted_mapped_and_given_its_verifier():
    sql, verifiers = host_monitors_sql({"sliceops_monitor_app1": "app1"}, {}, ["sliceops_monitor_app1"])
    assert verifiers == ["sliceops_monitor_app1"]
    assert 'CREATE ROLE "sliceops_monitor_app1" NOLOGIN;' in sql
    assert 'GRANT INSERT ON gateway.telemetry, gateway.server_telemetry TO "sliceops_monitor_app1";' in sql
    assert "DELETE" not in sql.split("GRANT INSERT")[0]  # no prune rights
    assert ("INSERT INTO sliceops_fleet.monitor_hosts (role, host) VALUES ('sliceops_monitor_app1', 'app1') "
            "ON CONFLICT (role) DO UPDATE SET host = EXCLUDED.host;") in sql
    assert sql.endswith("""ALTER ROLE "sliceops_monitor_app1" WITH LOGIN PASSWORD :'pw0';""")


def test_a_converged_host_monitor_needs_nothing_and_a_removed_one_loses_its_row_and_login():
    assert host_monitors_sql({"sliceops_monitor_app1": "app1"}, {"sliceops_monitor_app1": "app1"}, []) == ("", [])
    sql, _ = host_monitors_sql({}, {"sliceops_monitor_app1": "app1"}, [])
    assert sql == ("DELETE FROM sliceops_fleet.monitor_hosts WHERE role = 'sliceops_monitor_app1';\n"
                   'ALTER ROLE "sliceops_monitor_app1" NOLOGIN;')


def test_the_verifier_is_stable_for_a_password_and_the_password_is_not_in_it(tmp_path):
    pw = tmp_path / "monitor.password"
    pw.write_text("Abc123Abc123Abc123\n")
    run = lambda: MonitorVerifier().process(  # noqa: E731
        subprocess.run(["sh", "-c", MonitorVerifier().command(path=str(pw))], capture_output=True, text=True)
        .stdout.splitlines())
    first = run()
    assert first.startswith("SCRAM-SHA-256$4096:") and first == run() and "Abc123" not in first
    pw.write_text("Other0Other0Other0\n")
    assert run() != first
    assert MonitorVerifier().process([]) is None


def test_the_database_sides_reading():
    assert HostMonitors().process([
        "ROLE sliceops_monitor_app1 SCRAM-SHA-256$4096:abc$def:ghi", "HOST sliceops_monitor_app1 app1"]) == {
        "verifiers": {"sliceops_monitor_app1": "SCRAM-SHA-256$4096:abc$def:ghi"},
        "hosts": {"sliceops_monitor_app1": "app1"}}
