"""Slice hosts' monitors: each its own role (named from its host), its own credential whose
verifier is computed on its host, and its row in sliceops_fleet.monitor_hosts that RLS reads."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace as NS

from sliceops.facts.monitor_credential import HostMonitors, MonitorVerifier
from sliceops.names import host_monitor_role
from sliceops.operations.postgres.monitors import desired_host_monitors, host_monitors_sql
from tests.unit.fake_host import FakeHost


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
    assert 'GRANT SELECT, INSERT ON gateway.telemetry, gateway.server_telemetry TO "sliceops_monitor_app1";' in sql
    assert "DELETE" not in sql  # no prune rights
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
        "hosts": {"sliceops_monitor_app1": "app1"}, "granted": []}


def _run(monkeypatch, op, here: str, facts: dict, peers: dict, executing: bool = True):
    from sliceops.inventory import load
    from sliceops.operations import peers as peers_mod
    from sliceops.operations.postgres import monitors
    from sliceops.operations.util import script_text

    fake = FakeHost(facts, name=here, data={"sliceops_host": here})
    for module in (monitors, peers_mod):
        monkeypatch.setattr(module, "host", fake)
    monkeypatch.setattr(monitors, "state", NS(is_executing=executing))
    monkeypatch.setattr(monitors, "peer_fact", lambda name, cls, **kw: peers.get(name))
    inv = load(Path(__file__).parent / "data" / "good" / "fleet.yaml")
    out = []
    for c in getattr(monitors, op)._inner(inv=inv):
        out.append(script_text(c) or str(c))
    return out, fake.noops


V1 = "SCRAM-SHA-256$4096:c2FsdA==$Y2xpZW50:c2VydmVy"


def test_the_database_host_gives_each_slice_hosts_monitor_its_role_and_verifier(monkeypatch):
    have = {"verifiers": {}, "hosts": {}}
    commands, _ = _run(monkeypatch, "roles", "db1", {"HostMonitors": have}, {"app1": V1, "app2": None})
    script = next(c for c in commands if "psql" in c)
    # The verifier reaches psql on its standard input, as a variable: run the prelude's shell.
    prelude = script.split("\ncat <<")[0].removeprefix("{ ")
    shown = subprocess.run(["sh", "-c", prelude], capture_output=True, text=True).stdout
    assert shown == f"\\set pw0 '{V1}'\n"
    assert 'CREATE ROLE "sliceops_monitor_app1" NOLOGIN;' in script
    assert 'CREATE ROLE "sliceops_monitor_app2" NOLOGIN;' in script  # mapped; LOGIN once app2 answers
    assert """ALTER ROLE "sliceops_monitor_app1" WITH LOGIN PASSWORD :'pw0';""" in script
    assert "sliceops_monitor_app2\" WITH LOGIN" not in script


def test_a_converged_fleet_changes_nothing_and_slice_hosts_skip_the_database_step(monkeypatch):
    have = {"verifiers": {"sliceops_monitor_app1": V1, "sliceops_monitor_app2": V1},
            "hosts": {"sliceops_monitor_app1": "app1", "sliceops_monitor_app2": "app2"},
            "granted": ["sliceops_monitor_app1", "sliceops_monitor_app2"]}
    commands, noops = _run(monkeypatch, "roles", "db1", {"HostMonitors": have}, {"app1": V1, "app2": V1})
    assert commands == [] and noops == ["2 slice hosts' monitor roles are in place"]
    assert _run(monkeypatch, "roles", "app1", {}, {}) == ([], [])


def test_a_slice_host_makes_its_monitor_password_once(monkeypatch):
    commands, _ = _run(monkeypatch, "credential", "app1", {"MonitorVerifier": None}, {})
    assert "monitor.password" in commands[0] and "chmod 0400" in commands[0]
    assert _run(monkeypatch, "credential", "app1", {"MonitorVerifier": V1}, {})[0] == []
    assert _run(monkeypatch, "credential", "db1", {}, {})[1] == ["the database host's monitor logs in by peer authentication"]


def test_a_host_monitor_that_may_not_connect_to_the_gateway_database_is_granted_it():
    # PUBLIC's CONNECT is revoked on the gateway database: each monitor role needs its own.
    mapped = {"sliceops_monitor_app1": "app1"}
    assert host_monitors_sql(mapped, mapped, [], ["sliceops_monitor_app1"]) == ("", [])
    sql, _ = host_monitors_sql(mapped, mapped, [], [], "wank_saas")
    assert 'GRANT CONNECT ON DATABASE "wank_saas" TO "sliceops_monitor_app1";' in sql
