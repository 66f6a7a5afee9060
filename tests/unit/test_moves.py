"""Slice moves: which slices an inventory moves (gateway.slices.host vs the inventory), and the
deploy's refusal of a move, before any change, until moving data is implemented."""

from __future__ import annotations

from pathlib import Path

import pytest

from sliceops import moves
from sliceops.errors import InventoryError
from sliceops.inventory import load

DATA = Path(__file__).parent / "data"
FLEET = DATA / "good" / "fleet.yaml"  # slices 1, 3 on app1; 2 on app2; 4 on db1


def rows(**hosts: str | None) -> dict[int, dict]:
    return {int(k[1:]): {"port": 0, "status": "available", "user_id": None, "host": h} for k, h in hosts.items()}


def test_slices_where_the_gateway_says_move_nothing():
    inv = load(FLEET)
    assert moves.pending(inv, rows(s1="app1", s2="app2", s3="app1", s4="db1")) == []
    moves.refuse(inv, rows(s1="app1", s2="app2", s3="app1", s4="db1"))


def test_an_edited_host_is_a_move_from_the_gateways_host():
    inv = load(FLEET)
    assert moves.pending(inv, rows(s1="app2", s2="app2", s3="db1", s4="db1")) == [
        moves.Move(1, "app2", "app1"), moves.Move(3, "db1", "app1"),
    ]


@pytest.mark.parametrize("gateway", [None, {}, rows(s1=None, s2=None), rows(s9="app2")])
def test_no_gateway_row_or_no_host_in_it_moves_nothing(gateway):
    # A fresh fleet, rows from before gateway migration 0004 (the deploy fills the host in),
    # a row of a slice the file does not list (an orphan).
    assert moves.pending(load(FLEET), gateway) == []


def test_a_single_target_file_moves_nothing_whatever_its_target_is_called():
    inv = load(Path(__file__).parents[2] / "inventory" / "slices.yaml")  # target: "@local"
    assert not inv.multi_host
    other = {s.id: {"port": 0, "status": "available", "user_id": None, "host": "old-name"} for s in inv.slices}
    assert moves.pending(inv, other) == []


def test_a_move_is_refused_one_line_per_slice_naming_file_slice_and_both_hosts():
    inv = load(FLEET)
    with pytest.raises(InventoryError) as caught:
        moves.refuse(inv, rows(s1="app2", s2="app1"))
    assert caught.value.problems == [
        f"{inv.path}: slice 1: host: 'app1': the slice runs on 'app2' (gateway.slices.host) and moving a slice "
        "to another host is not supported yet: set its host back to 'app2' (a file turned from target: into "
        "hosts: keeps its slices by naming that host 'app2')",
        f"{inv.path}: slice 2: host: 'app2': the slice runs on 'app1' (gateway.slices.host) and moving a slice "
        "to another host is not supported yet: set its host back to 'app1' (a file turned from target: into "
        "hosts: keeps its slices by naming that host 'app1')",
    ]
