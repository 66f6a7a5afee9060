"""`sliceops plan`'s sentences, count and exit status from recorded changes; what a container
recreate says changed; how a prepared (not executed) pyinfra run becomes planned changes."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

from sliceops import plan
from sliceops.operations import docker as op
from sliceops.operations import sentences
from sliceops.operations.util import Changes, changed
from sliceops.paths import ROOT
from sliceops.plan import Change

NEW_4 = [
    Change("slice 4", "new", "role", 4),
    Change("slice 4", "new", "database from the template", 4),
    Change("slice 4", "new", "gateway row", 4),
    Change("slice 4", "new", "container on 127.0.0.1:5007", 4),
]


def test_a_new_slice_reads_as_one_sentence():
    assert plan.lines(NEW_4) == ["slice 4: new: role, database from the template, gateway row, container on 127.0.0.1:5007"]


def test_slices_by_id_then_the_rest_in_deploy_order_with_the_count():
    changes = [
        Change("slice 9", "orphan, left intact", "", 9, changes=False),
        Change("postgres", "role and credentials", "sliceops_monitor"),
        Change("slice 10", "container recreated", "memory 256m -> 512m", 10),
        *NEW_4,
        Change("slice 2", "suspended", "gateway row available -> suspended", 2),
        Change("slice 2", "suspended", "container stopped", 2),
        Change("monitor", "reloaded", "configuration changed"),
        Change("slice 10", "container recreated", "cpus 0.5 -> 1", 10),
        Change("host", "Install PostgreSQL 15"),
        Change("host", "Configure the monitor (/etc/sliceops/main/monitor.json)"),
    ]
    assert plan.lines(changes) == [
        "slice 2: suspended: gateway row available -> suspended, container stopped",
        "slice 4: new: role, database from the template, gateway row, container on 127.0.0.1:5007",
        "slice 9: orphan, left intact",
        "slice 10: container recreated: memory 256m -> 512m, cpus 0.5 -> 1",
        "postgres: role and credentials: sliceops_monitor",
        "monitor: reloaded: configuration changed",
        "host: Install PostgreSQL 15",
        "host: Configure the monitor (/etc/sliceops/main/monitor.json)",
    ]
    assert plan.summary(changes) == "plan: 6 would change: 3 slices, 3 others; 1 orphan left intact"
    assert plan.exit_status(changes) == plan.CHANGES == 3


def test_the_same_change_from_two_operations_is_said_once():
    twice = [Change("slice 4", "new", "database from the template", 4)] * 2
    assert plan.lines(twice) == ["slice 4: new: database from the template"]


def test_several_kinds_of_change_to_one_slice_are_joined():
    changes = [
        Change("slice 3", "back in service", "gateway row suspended -> assigned", 3),
        Change("slice 3", "container started", "it was stopped", 3),
    ]
    assert plan.lines(changes) == ["slice 3: back in service: gateway row suspended -> assigned; container started: it was stopped"]
    assert plan.summary(changes) == "plan: 1 would change: 1 slice, 0 others"


def test_nothing_to_do_exits_0_even_with_orphans():
    orphans = [Change("slice 9", "orphan, left intact", "", 9, changes=False)]
    assert plan.summary([]) == "plan: nothing would change"
    assert plan.exit_status([]) == plan.NO_CHANGES == 0
    assert plan.summary(orphans) == "plan: nothing would change; 1 orphan left intact"
    assert plan.exit_status(orphans) == 0


def test_a_deploy_that_would_stop_is_a_failure_not_a_sentence():
    changes = [*NEW_4, Change("deploy", "would stop", "refusing to destroy: slice 2 is assigned", refused=True)]
    assert plan.exit_status(changes) == plan.FAILED == 1
    assert all("refusing" not in line for line in plan.lines(changes))


def test_changes_travel_as_json():
    changes = [*NEW_4, Change("slice 9", "orphan, left intact", "", 9, changes=False)]
    assert plan.load(plan.dump(changes)) == changes


# --------------------------------------------------------------------------- container recreates


def _spec(tmp_path, **slice_keys):
    import yaml

    from sliceops.inventory import load

    path = tmp_path / f"inv{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump({"target": "@local", "slices": [{"id": 2, **slice_keys}]}))
    inv = load(path)
    return op.desired_spec(inv, inv.slice(2), "sha256:" + "a" * 64, "f" * 64)


def _label(spec: dict) -> dict:
    return json.loads(op.spec_label(spec))


def test_a_recreate_names_what_changed(tmp_path):
    old = _label(_spec(tmp_path))
    changes = sentences.spec_changes
    assert changes(old, _label(_spec(tmp_path, memory="512m"))) == ["memory 256m -> 512m"]
    assert changes(old, _label(_spec(tmp_path, memory="512m", cpus=1))) == ["cpus 0.5 -> 1", "memory 256m -> 512m"]
    assert changes(old, _label(dict(_spec(tmp_path), env_file_sha256="0" * 64))) == ["credentials changed"]
    assert changes(old, _label(dict(_spec(tmp_path), image="(unbuilt sliceops/slice-backend:1)"))) == ["image rebuilt"]
    assert changes(old, old) == ["spec changed"]  # recreated for a reason the spec does not show
    assert changes(None, old) == ["spec changed"]  # a container from before the label


def test_the_spec_label_never_carries_the_whole_credentials_checksum(tmp_path):
    spec = _spec(tmp_path)
    assert "f" * 13 not in op.spec_label(spec) and "f" * 12 in op.spec_label(spec)


# --------------------------------------------------------------------------- conditions


class FakeOp:
    def __init__(self, done: bool | None = None, will: bool = False):
        self.done, self.will = done, will

    def is_complete(self):
        return self.done is not None

    def did_change(self):
        return self.done

    @property
    def will_change(self):
        return self.will


def test_changed_answers_before_and_after_execution():
    planned = changed(code=FakeOp(will=False), configuration=FakeOp(will=True))
    assert planned() and planned.which() == ["configuration"]
    ran = changed(FakeOp(done=False, will=True), FakeOp(done=False))
    assert not ran() and isinstance(ran, Changes)


# --------------------------------------------------------------------------- collect


def _state(ops: list[tuple[str, str, bool, dict]]):
    """A prepared pyinfra state: (hash, name, would change, global arguments) in order."""
    host = "@local"
    data = {
        h: types.SimpleNamespace(operation_meta=types.SimpleNamespace(_maybe_is_change=change), global_arguments=args)
        for h, _, change, args in ops
    }
    meta = {h: types.SimpleNamespace(names={name}) for h, name, _, _ in ops}
    return types.SimpleNamespace(
        inventory=[host],
        get_op_order=lambda: [h for h, _, _, _ in ops],
        get_op_data_for_host=lambda _host, h: data[h],
        get_op_meta=lambda h: meta[h],
    ), data


@pytest.fixture
def recorded(monkeypatch):
    """Record as if from inside the operation with the given hash."""
    plan.reset()

    def at(op_hash):
        monkeypatch.setattr(plan, "_current_op", lambda: op_hash)

    yield at
    plan.reset()


def test_collect_keeps_what_changing_operations_said_and_names_the_silent_ones(recorded):
    state, data = _state([
        ("a", "Check the inventory's requests are safe", False, {}),
        ("b", "Create roles", True, {}),
        ("c", "Configure the monitor (/etc/sliceops/x/monitor.json)", True, {}),
        ("d", "Apply /etc/sysctl.d/60-sliceops.conf", True, {"_if": changed(FakeOp(will=False))}),
        ("e", "Install PostgreSQL 15", True, {}),
        ("f", "Ship the SQL migrations", False, {}),
    ])
    recorded("a")
    plan.for_slice(9, "orphan, left intact", changes=False)  # said by an operation that changes nothing
    recorded("b")
    plan.for_slice(4, "new", "role")
    recorded("f")
    plan.for_slice(5, "new", "never happens")  # its operation would not change: dropped
    data["c"].operation_meta.sliceops_explained = True  # the monitor's restart names it
    assert plan.collect(state) == [
        Change("slice 9", "orphan, left intact", "", 9, changes=False),
        Change("slice 4", "new", "role", 4),
        Change("host", "Install PostgreSQL 15"),
    ]


def test_plan_with_a_bad_inventory_is_one_line_and_status_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("target: '@local'\nslices:\n  - id: 0\n")
    proc = subprocess.run([sys.executable, "-m", "sliceops.cli", "plan", "-i", str(bad)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and str(bad) in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_every_condition_in_the_deploy_answers_in_a_dry_run():
    """pyinfra's `any_changed` and `.did_change` raise before execution, which would crash
    `sliceops plan`; conditions go through `operations.util.changed`."""
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "sliceops").rglob("*.py")) + [ROOT / "deploy.py"]
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if any(call in line for call in ("any_changed(", "all_changed(", ".did_change,", ".did_change)"))
    ]
    assert offenders == []
