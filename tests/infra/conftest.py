"""testinfra suite: verify a converged host from outside, driven by the same inventory file.

`sliceops verify` (make verify) runs it with --hosts= one spec per inventory host (local://
or SSH) and SLICEOPS_INVENTORY pointing at the inventory. Each check runs where what it asks
about lives: `database_host` checks on the database host, a slice's checks on the slice's host,
`slice_host` checks on every slice host, the rest on every host; a `target:` file's one host
runs them all.
"""

from __future__ import annotations

import os

import paramiko
import pytest

from sliceops.hostkeys import known_hosts_path, ssh_parts
from sliceops.inventory import DEFAULT_INVENTORY, Host, load

INVENTORY = load(os.environ.get("SLICEOPS_INVENTORY", str(DEFAULT_INVENTORY)))


@pytest.fixture(scope="session")
def inv():
    return INVENTORY


@pytest.fixture(scope="module", autouse=True)
def _checked_host_key(request):
    """testinfra's paramiko backend accepts any host key (WarningPolicy, nothing loaded): hand it
    a client that knows only the inventory's known-hosts file and refuses every other key."""
    if "host" not in request.fixturenames:
        return
    backend = request.getfixturevalue("host").backend
    if backend.NAME != "paramiko" or "client" in vars(backend):
        return
    client = paramiko.SSHClient()
    path = known_hosts_path(INVENTORY.ssh_known_hosts)
    if os.path.exists(path):
        client.load_host_keys(path)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    spec = backend.host
    client.connect(spec.name, port=int(spec.port or 22), username=spec.user or "root",
                   key_filename=backend.ssh_identity_file, timeout=backend.timeout,
                   allow_agent=backend.ssh_identity_file is None, look_for_keys=backend.ssh_identity_file is None)
    backend.client = client  # the backend's cached_property: its own connect() never runs


def inventory_host(host) -> Host:
    """The inventory host a testinfra host is (matched on its connection: local, or SSH
    hostname and port)."""
    backend = host.backend
    for h in INVENTORY.hosts:
        if h.target == "@local":
            if backend.NAME == "local":
                return h
            continue
        _, hostname, port = ssh_parts(h.target)
        spec = getattr(backend, "host", None)
        if backend.NAME != "local" and spec is not None and spec.name == hostname and int(spec.port or 22) == port:
            return h
    raise LookupError(f"{backend.get_pytest_id()} is none of the inventory's hosts")


def pytest_configure(config):
    config.addinivalue_line("markers", "database_host: a check of the database host (PostgreSQL, the gateway)")
    config.addinivalue_line("markers", "slice_host: a check of every slice host (engine, firewall, containers)")


@pytest.fixture(autouse=True)
def _where_it_lives(request):
    """Skip a check on a host where what it asks about does not live."""
    if "host" not in request.fixturenames:
        return
    here = inventory_host(request.getfixturevalue("host"))
    if request.node.get_closest_marker("database_host"):
        if not here.database:
            pytest.skip(f"a database host check; {here.name} is a slice host")
        return
    for name in ("slice", "active_slice", "suspended_slice"):
        if name in request.fixturenames:
            s = request.getfixturevalue(name)
            if s.host != here.name:
                pytest.skip(f"slice {s.id} runs on {s.host}")
            return
    if request.node.get_closest_marker("slice_host") and here not in INVENTORY.slice_hosts:
        pytest.skip(f"a slice host check; {here.name} runs no slices")


def pytest_generate_tests(metafunc):
    """Parametrize by slice: each check names the slice it is about."""
    for fixture, slices in (
        ("slice", INVENTORY.kept_slices()),
        ("active_slice", [s for s in INVENTORY.slices if s.in_service]),
        ("suspended_slice", [s for s in INVENTORY.slices if s.status == "suspended"]),
    ):
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, slices, ids=[f"slice{s.id}" for s in slices])
    if "fleet_host" in metafunc.fixturenames:
        metafunc.parametrize("fleet_host", INVENTORY.hosts, ids=[h.name for h in INVENTORY.hosts])
