"""`slice_defaults.spares`: which slices count as unassigned (now, and after a deploy), the one
warning line `check`, `plan` and `status` print, and that a warning never changes an exit
status or a plan's sentences. The real plan and status against a deployed instance:
tests/integration/test_spares_add.py."""

from __future__ import annotations

import json

from sliceops import cli, plan, spares
from sliceops.inventory import load
from sliceops.plan import Change
from sliceops.status import model


def inventory(tmp_path, wanted: int | None, slices: str = "  - id: 1\n  - id: 2\n  - id: 3\n    status: suspended\n"):
    path = tmp_path / "inv.yaml"
    defaults = f"slice_defaults:\n  disk: false\n  spares: {wanted}\n" if wanted is not None else ""
    path.write_text(f'target: "@local"\ninstance: unit\n{defaults}slices:\n{slices}')
    return load(path)


def row(status="available", user_id=None):
    return {"status": status, "user_id": user_id, "port": 5001}


def test_spares_default_to_0_and_never_warn(tmp_path):
    inv = inventory(tmp_path, None)
    assert inv.slice_defaults.spares == 0
    assert spares.check_warning(inv) is None
    assert spares.plan_warning(inv, {}) is None
    assert spares.status_warning(inv, {1: row("assigned", 7), 2: row("assigned", 8)}) is None


def test_unassigned_now_is_an_in_service_slice_whose_row_is_available_with_no_user(tmp_path):
    inv = inventory(tmp_path, 2, "  - id: 1\n  - id: 2\n  - id: 3\n  - id: 4\n    status: suspended\n  - id: 5\n")
    rows = {
        1: row(),  # a spare
        2: row("assigned", 7),
        3: row("suspended"),  # in service in the file, not yet put back by a deploy
        4: row(),  # available in the gateway but suspended in the file: not in service
        # 5: no row yet (never deployed)
    }
    assert spares.unassigned_now(inv, rows) == [1]
    # The deploy inserts 5 as available and puts 3 back as available (no user); 2 stays assigned.
    assert spares.unassigned_after_deploy(inv, rows) == [1, 3, 5]
    assert spares.summary(inv, rows) == {"wanted": 2, "unassigned": 1, "unassigned_ids": [1], "short_by": 1}


def test_check_warns_only_when_the_file_makes_it_certain(tmp_path, capsys):
    inv = inventory(tmp_path, 3)  # 2 in service: at most 2 can be unassigned
    message = spares.check_warning(inv)
    assert message == (
        f"{inv.path}:5: slice_defaults.spares: 3 but only 2 slices are in service, so fewer than 3 can be "
        f"unassigned: sign-ups would wait; `sliceops add --count 1 -i {inv.path}` appends the missing ones"
    )
    assert cli.main(["check", "-i", inv.path]) == 0  # a warning, not an error
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 and err == f"sliceops: warning: {message}\n"
    enough = inventory(tmp_path, 2)  # possible: check cannot see the gateway, so it says nothing
    assert spares.check_warning(enough) is None
    assert cli.main(["check", "-i", enough.path]) == 0
    assert capsys.readouterr().err == ""


def test_plan_counts_what_the_deploy_leaves(tmp_path):
    inv = inventory(tmp_path, 2)
    assert spares.plan_warning(inv, {}) is None  # a fresh host: both new slices become available
    rows = {1: row("assigned", 7), 2: row()}
    assert spares.plan_warning(inv, rows) == (
        f"after this deploy 1 of 2 in-service slices would be unassigned (slice 2), fewer than "
        f"slice_defaults.spares (2): sign-ups would wait; `sliceops add --count 1 -i {inv.path}` appends more"
    )


def test_status_says_whether_a_deploy_is_enough_or_more_must_be_added(tmp_path):
    inv = inventory(tmp_path, 2, "  - id: 1\n  - id: 2\n  - id: 3\n")
    # Slice 3 is listed but not deployed yet: a deploy makes it the second spare.
    rows = {1: row("assigned", 7), 2: row()}
    assert spares.status_warning(inv, rows) == (
        "1 of 3 in-service slices is unassigned (slice 2), fewer than slice_defaults.spares (2): sign-ups would "
        f"wait; 1 more in {inv.path} awaits a deploy: `sliceops deploy -i {inv.path}`"
    )
    rows[3] = row("assigned", 8)
    assert spares.status_warning(inv, rows) == (
        "1 of 3 in-service slices is unassigned (slice 2), fewer than slice_defaults.spares (2): sign-ups would "
        f"wait; `sliceops add --count 1 -i {inv.path}`, then `sliceops deploy -i {inv.path}`"
    )
    rows[1] = row()
    assert spares.status_warning(inv, rows) is None


def test_a_warning_names_at_most_ten_slices(tmp_path):
    listed = "".join(f"  - id: {i}\n" for i in range(1, 16))
    inv = inventory(tmp_path, 20, listed)
    message = spares.status_warning(inv, {i: row() for i in range(1, 16)})
    assert "(slices 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 5 more)" in message


def test_a_plan_warning_is_no_change_no_sentence_and_no_orphan():
    changes = [Change("plan", "warning", "after this deploy 0 of 3 ...", changes=False, warning=True)]
    assert plan.lines(changes) == []
    assert plan.summary(changes) == "plan: nothing would change"
    assert plan.exit_status(changes) == plan.NO_CHANGES
    assert plan.warnings(changes) == ["after this deploy 0 of 3 ..."]
    # It survives the dry run's JSON hand-over to the CLI.
    assert plan.warnings(plan.load(plan.dump(changes))) == ["after this deploy 0 of 3 ..."]
    with_change = changes + [Change("slice 4", "new", "role", 4)]
    assert plan.exit_status(with_change) == plan.CHANGES and plan.summary(with_change).startswith("plan: 1 would")


def test_status_json_carries_the_whole_fleets_spares(tmp_path):
    inv = inventory(tmp_path, 2)
    rows = model.build_rows(inv, {"now": 0.0, "slices": {
        1: {"id": 1, "port": 5001, "status": "available", "user_id": None, "email": None, "wa_connected": False,
            "wa_phone": None, "telemetry": None},
        2: {"id": 2, "port": 5003, "status": "assigned", "user_id": 4, "email": "a@b.c", "wa_connected": False,
            "wa_phone": None, "telemetry": None},
    }, "databases": {}}, {})
    assert model.gateway_rows(rows) == {1: {"status": "available", "user_id": None},
                                         2: {"status": "assigned", "user_id": 4}}
    doc = json.loads(json.dumps(model.to_json(inv, rows, model.summary(rows))))
    assert doc["spares"] == {"wanted": 2, "unassigned": 1, "unassigned_ids": [1], "short_by": 1}
    # With --find the rows shown are a selection; the spares stay the fleet's.
    found = model.find(rows, "a@b.c")
    whole = spares.summary(inv, model.gateway_rows(rows))
    assert model.to_json(inv, found, model.summary(rows), whole)["spares"]["unassigned_ids"] == [1]
