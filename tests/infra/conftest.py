"""testinfra suite: verify a converged host from outside, driven by the same inventory file.

`sliceops verify` (make verify) runs it with --hosts=local:// or an SSH spec and
SLICEOPS_INVENTORY pointing at the inventory.
"""

from __future__ import annotations

import os

import paramiko
import pytest

from sliceops.hostkeys import known_hosts_path
from sliceops.inventory import DEFAULT_INVENTORY, load

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


def pytest_generate_tests(metafunc):
    """Parametrize by slice: each check names the slice it is about."""
    for fixture, slices in (
        ("slice", INVENTORY.kept_slices()),
        ("active_slice", [s for s in INVENTORY.slices if s.in_service]),
        ("suspended_slice", [s for s in INVENTORY.slices if s.status == "suspended"]),
    ):
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, slices, ids=[f"slice{s.id}" for s in slices])
