"""Slice moves: which slices an inventory moves (gateway.slices.host vs the inventory), what a
move keeps for the old host until it succeeds (its role's password, pg_hba's rule), the
refusal of a move the deploy cannot make, and the controller's pipe between two hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

from sliceops import moves
from sliceops.errors import InventoryError, RemoteStateError
from sliceops.inventory import load
from sliceops.remote import Target, pipe
from sliceops.tuning import remote_slice_hosts

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


def test_a_running_slice_moves_and_one_not_in_service_is_refused_one_line_each(tmp_path):
    inv = load(FLEET)
    moves.refuse(inv, rows(s1="app2", s2="app1"))  # both active: they move
    path = tmp_path / "fleet.yaml"
    path.write_text(FLEET.read_text().replace("{id: 1, host: app1}", "{id: 1, host: app1, status: suspended}"))
    with pytest.raises(InventoryError) as caught:
        moves.refuse(load(path), rows(s1="app2", s2="app1"))
    assert caught.value.problems == [
        f"{path}: slice 1: host: 'app1': the slice is on 'app2' (gateway.slices.host) and not in service: a slice "
        "moves only while it runs (status: active); set its host back to 'app2' until then"]


def test_until_it_has_moved_a_slice_keeps_its_old_host_s_admission_and_its_password():
    inv = load(FLEET)
    moving = moves.moving_roles(inv, rows(s1="app2", s2="app2", s3="app1", s4="db1"))
    assert moving == {"wa_slice_1": "app2"}
    by_host = {h["name"]: h["roles"] for h in remote_slice_hosts(inv, moving)}
    assert by_host == {"app1": ["wa_slice_1", "wa_slice_3"], "app2": ["wa_slice_2", "wa_slice_1"]}
    assert {h["name"]: h["roles"] for h in remote_slice_hosts(inv)} == {
        "app1": ["wa_slice_1", "wa_slice_3"], "app2": ["wa_slice_2"]}


def test_the_old_copy_is_archived_beside_the_slices_data_never_in_their_place():
    inv = load(FLEET)
    assert inv.moved_data_dir(1, "20261202T020000Z") == f"{inv.slices_data_dir}/.moved-1-20261202T020000Z"
    assert inv.moved_data_dir(1, "x") != inv.slice_data_dir(1)


def test_the_pipe_carries_a_tree_from_one_command_to_another_byte_for_byte(tmp_path):
    source, copy = tmp_path / "source", tmp_path / "copy"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "file").write_bytes(bytes(range(256)) * 2048)  # 512 KiB: several chunks
    (source / "row").write_text("a row\n")
    copy.mkdir()
    here = Target(load(FLEET), "@local")
    carried = pipe(here, ["tar", "-C", str(source), "-cf", "-", "."], here, ["tar", "-C", str(copy), "-xpf", "-"])
    assert carried > 512 * 1024
    assert (copy / "sub" / "file").read_bytes() == (source / "sub" / "file").read_bytes()
    assert (copy / "row").read_text() == "a row\n"
    with pytest.raises(RemoteStateError, match="tar on @local"):
        pipe(here, ["tar", "-C", str(tmp_path / "missing"), "-cf", "-", "."], here, ["tar", "-C", str(copy), "-xf", "-"])


def test_a_destination_that_stops_reading_ends_the_pipe_and_the_source_too():
    """The source writes without end; the destination exits at once. The pipe must name the
    destination and stop the source, not wait forever on a writer nobody reads."""
    import threading

    here = Target(load(FLEET), "@local")
    outcome: list = []

    def carry():
        try:
            pipe(here, ["cat", "/dev/zero"], here, ["sh", "-c", "head -c 100000 >/dev/null; exit 3"])
            outcome.append(None)
        except Exception as exc:
            outcome.append(exc)

    worker = threading.Thread(target=carry, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "the pipe hung on a source nobody reads"
    assert isinstance(outcome[0], RemoteStateError) and "sh on @local stopped reading" in str(outcome[0])


def test_a_failed_move_keeps_what_the_new_host_wrote_beside_the_slices_data():
    inv = load(FLEET)
    kept = inv.failed_move_data_dir(1, "20261202T020000Z")
    assert kept == f"{inv.slices_data_dir}/.failed-move-1-20261202T020000Z"
    assert kept not in (inv.slice_data_dir(1), inv.moved_data_dir(1, "20261202T020000Z"))


def test_a_slices_data_part_is_kept_where_its_data_is_until_its_move_has_finished():
    """moves.data_hosts: the file's host, except while the gateway row names another host of
    the inventory (a pending or failed move): the old host, where the data still is."""
    inv = load(FLEET)
    settled = {1: "app1", 2: "app2", 3: "app1", 4: "db1"}
    assert moves.data_hosts(inv, None) == settled == moves.data_hosts(inv, rows(s1="app1", s2="app2"))
    assert moves.data_hosts(inv, rows(s1="app2", s3="db1", s4="app1")) == {1: "app2", 2: "app2", 3: "db1", 4: "app1"}
    # A row naming a host the file no longer lists (the deploy refuses that) or none: the file's.
    assert moves.data_hosts(inv, rows(s1="app9", s2=None)) == settled
    target = load(Path(__file__).parents[2] / "inventory" / "slices.yaml")
    other = {s.id: {"host": "old-name"} for s in target.slices}
    assert set(moves.data_hosts(target, other).values()) == {target.database_host.name}
