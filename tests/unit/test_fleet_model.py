"""The fleet model (issue 14): `hosts:` with one database host and slice hosts, and the
single-`target` file read as a fleet of one host that is both. The refusals are data in
tests/unit/data/bad/fleet_*.yaml (test_inventory.py runs them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sliceops import names
from sliceops.inventory import Host, load

DATA = Path(__file__).parent / "data"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "slices.yaml"
    path.write_text(text)
    return path


def test_a_fleet_file_gives_hosts_in_order_one_database_host_and_each_slice_its_host():
    inv = load(DATA / "good" / "fleet.yaml")
    assert inv.multi_host
    assert [h.name for h in inv.hosts] == ["db1", "app1", "app2"]
    assert inv.database_host == Host("db1", "ssh://root@10.0.0.10", "10.0.0.10", True)
    assert inv.host("app1") == Host("app1", "ssh://root@10.0.0.11:2222", "10.0.0.11", False)
    assert [(s.id, s.host) for s in inv.slices] == [(1, "app1"), (2, "app2"), (3, "app1"), (4, "db1")]
    assert [s.id for s in inv.slices_on("app1")] == [1, 3]
    assert [s.id for s in inv.slices_on("app2")] == [2]
    # Ports stay fleet-wide (gateway.slices.port UNIQUE): they follow the id, not the host.
    assert [s.port for s in inv.slices] == [5001, 5003, 5005, 5007]
    # The gateway lives on the database host: commands that read it connect there.
    assert inv.target == "ssh://root@10.0.0.10"


def test_the_database_host_is_a_slice_host_only_when_a_slice_runs_on_it(tmp_path):
    inv = load(DATA / "good" / "fleet.yaml")
    assert [h.name for h in inv.slice_hosts] == ["db1", "app1", "app2"]
    text = (DATA / "good" / "fleet.yaml").read_text().replace("  - {id: 4, host: db1}\n", "")
    inv = load(write(tmp_path, text))
    assert [h.name for h in inv.slice_hosts] == ["app1", "app2"]


def test_a_slice_reaches_postgresql_on_the_bridge_at_home_and_at_the_database_address_elsewhere():
    inv = load(DATA / "good" / "fleet.yaml")
    assert inv.database_address(inv.slice(4)) == inv.docker.gateway_address == "172.30.0.1"
    assert inv.database_address(inv.slice(1)) == "10.0.0.10"


@pytest.mark.parametrize(("target", "name"), [
    ("@local", "local"),
    ("ssh://deploy@DB1.example.net:2222", "db1.example.net"),
    ("ssh://10.0.0.5", "10.0.0.5"),
])
def test_a_single_target_file_is_one_host_both_database_and_slice_host(tmp_path, target, name):
    inv = load(write(tmp_path, f'target: "{target}"\nslices:\n  - id: 1\n  - id: 2\n'))
    assert not inv.multi_host
    assert inv.hosts == (Host(name, target, None, True),)
    assert inv.database_host == inv.hosts[0]
    assert inv.slice_hosts == inv.hosts
    assert [s.host for s in inv.slices] == [name, name]
    assert inv.database_address(inv.slice(1)) == inv.docker.gateway_address


def test_a_single_target_file_may_name_its_own_host_on_a_slice(tmp_path):
    inv = load(write(tmp_path, 'target: "@local"\nslices:\n  - {id: 1, host: local}\n'))
    assert inv.slice(1).host == "local"


def test_one_host_under_hosts_takes_the_slices_that_name_none(tmp_path):
    inv = load(write(tmp_path, 'hosts:\n  solo: {target: "@local", database: true}\nslices:\n  - id: 1\n'))
    assert inv.multi_host and inv.slice(1).host == "solo"
    assert [h.name for h in inv.slice_hosts] == ["solo"]
    assert inv.target == "@local"


@pytest.mark.parametrize(("a", "b", "same"), [
    ("ssh://db1", "ssh://root@db1:22", True),
    ("ssh://root@DB1", "ssh://root@db1", True),
    ("ssh://root@db1", "ssh://root@db1:2222", False),
    ("ssh://deploy@db1", "ssh://root@db1", False),
    ("@local", "@local", True),
])
def test_two_targets_are_one_machine_when_user_host_and_port_agree(a, b, same):
    assert (names.target_key(a) == names.target_key(b)) is same


# --------------------------------------------------------------------------- pyinfra's view


def test_pyinfra_gets_one_host_per_inventory_host_in_two_groups():
    from sliceops.target import pyinfra_groups

    groups = pyinfra_groups(load(DATA / "good" / "fleet.yaml"))
    assert [name for name, _ in groups["hosts"]] == ["db1", "app1", "app2"]
    assert [name for name, _ in groups["database"]] == ["db1"]
    assert [name for name, _ in groups["slice_hosts"]] == ["db1", "app1", "app2"]
    data = dict(groups["hosts"])["app1"]
    assert (data["sliceops_host"], data["ssh_hostname"], data["ssh_port"], data["ssh_user"]) == ("app1", "10.0.0.11", 2222, "root")


def test_a_single_target_keeps_the_pyinfra_host_name_it_always_had(tmp_path):
    from sliceops.target import pyinfra_groups

    groups = pyinfra_groups(load(write(tmp_path, 'target: "ssh://root@db1.example.net:2222"\nslices: []\n')))
    assert [name for name, _ in groups["hosts"]] == ["db1.example.net"]
    assert groups["database"] == groups["slice_hosts"] == groups["hosts"]
    assert "ssh_hostname" not in groups["hosts"][0][1]
    assert groups["hosts"][0][1]["sliceops_host"] == "db1.example.net"


def test_a_slice_host_sees_only_its_slices_and_a_single_host_sees_them_all(tmp_path):
    inv = load(DATA / "good" / "fleet.yaml")
    assert [s.id for s in inv.for_host("app1").slices] == [1, 3]
    assert [s.id for s in inv.for_host("db1").slices] == [4]
    assert inv.for_host("app1").hosts == inv.hosts  # the rest of the model is unchanged
    single = load(write(tmp_path, 'target: "@local"\nslices:\n  - id: 1\n  - id: 2\n'))
    assert single.for_host("local") is single


def test_a_host_dropped_while_the_gateway_shows_slices_on_it_is_named_with_them(tmp_path):
    from sliceops.operations.lifecycle import abandoned_hosts

    inv = load(DATA / "good" / "fleet.yaml")
    rows = {1: {"host": "app1"}, 5: {"host": "app3"}, 6: {"host": "app3"}, 7: {"host": None}, 8: {}}
    assert abandoned_hosts(inv, rows) == {"app3": [5, 6]}
    assert abandoned_hosts(inv, {1: {"host": "app1"}}) == {}
    # A `target:` file has one host: every row is on it, whatever name it was written with.
    single = load(write(tmp_path, 'target: "@local"\nslices:\n  - id: 1\n'))
    assert abandoned_hosts(single, rows) == {}


class _PyinfraHost:
    def __init__(self, name):
        self.name, self.data = name, {"sliceops_host": name}


class _State:
    def __init__(self, names, failed):
        self.inventory = [_PyinfraHost(n) for n in names]
        self.failed_hosts = {h for h in self.inventory if h.name in failed}


def test_the_deploy_ends_naming_the_hosts_it_did_not_finish():
    from sliceops.report import unfinished

    line = unfinished(_State(["db1", "app1", "app2"], {"app2", "app1"}))
    assert line.startswith("sliceops: 2 of 3 hosts did not finish: app1, app2 (unreachable")
    assert unfinished(_State(["db1", "app1"], set())) is None
    assert unfinished(_State(["local"], {"local"})) is None  # one host: pyinfra's own error says it


def test_status_shows_each_slice_s_container_from_its_own_host_first():
    from sliceops.status.gather import merge_containers

    inv = load(DATA / "good" / "fleet.yaml")
    per_host = {
        "db1": {4: {"name": "wa-slice-4", "state": "running"}},
        # slice 1 runs on app1; an old copy left on app2 (a move under way) does not hide it
        "app2": {1: {"name": "wa-slice-1", "state": "exited"}, 2: {"name": "wa-slice-2", "state": "running"}},
        "app1": {1: {"name": "wa-slice-1", "state": "running"}, 9: {"name": "wa-slice-9", "state": "exited"}},
    }
    merged = merge_containers(inv, per_host)
    assert {sid: c["state"] for sid, c in merged.items()} == {4: "running", 1: "running", 2: "running", 9: "exited"}


def test_check_says_how_many_slices_each_host_runs(capsys):
    from sliceops import cli

    assert cli.main(["check", "-i", str(DATA / "good" / "fleet.yaml")]) == 0
    assert capsys.readouterr().out.endswith(
        "fleet.yaml: ok: 3 hosts, instance main, 4 slices (db1 (database): 1, app1: 2, app2: 1)\n")
