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
