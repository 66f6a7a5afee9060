"""testinfra suite: verify a converged host from outside, driven by the same inventory file.

`sliceops verify` (make verify) runs it with --hosts=local:// or an SSH spec and
SLICEOPS_INVENTORY pointing at the inventory.
"""

from __future__ import annotations

import os

import pytest

from sliceops.inventory import DEFAULT_INVENTORY, load

INVENTORY = load(os.environ.get("SLICEOPS_INVENTORY", str(DEFAULT_INVENTORY)))


@pytest.fixture(scope="session")
def inv():
    return INVENTORY


def pytest_generate_tests(metafunc):
    """Parametrize by slice: each check names the slice it is about."""
    for fixture, slices in (
        ("slice", INVENTORY.kept_slices()),
        ("active_slice", [s for s in INVENTORY.slices if s.in_service]),
        ("suspended_slice", [s for s in INVENTORY.slices if s.status == "suspended"]),
    ):
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, slices, ids=[f"slice{s.id}" for s in slices])
