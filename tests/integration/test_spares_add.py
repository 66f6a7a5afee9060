"""Spare slices against a real instance: `status` warns while fewer in-service slices are
unassigned than `slice_defaults.spares`, `sliceops add --count 2` appends exactly two entries
to the (commented) inventory file, `plan` then names exactly those two as new, and after the
deploy the warning is gone; a sign-up taking a spare brings it back, in `plan` too; an
orphan's id (its entry deleted, its database kept) is never handed out again.

One 1-slice instance (no disk quota: cheaper), converged twice; about two minutes here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.fix_deploy import ROOT, SLICEOPS, run_deploy, teardown_instance

pytestmark = pytest.mark.integration

INSTANCE = "sp15a"
PG_PORT = 5515
BASE = 7511
# Written by hand, comments and all: `add` must keep every byte of it.
FIRST = f"""\
# yaml-language-server: $schema=../sliceops/schema/inventory.schema.json
# A shop's host: keep three slices ready for sign-ups.
target: "@local"
instance: {INSTANCE}
postgres:
  port: {PG_PORT}
docker:
  subnet: 172.30.151.0/24   # its own slice network
slice_defaults:
  port_base: {BASE}
  disk: false
  spares: 3
slices:
  - id: 1   # the first tenant
"""
_SLICE_LINE = re.compile(r"^slice (\d+): (.*)$")


def sliceops(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(SLICEOPS + list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def psql(sql: str) -> str:
    return subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1",
                           "-p", str(PG_PORT), "-d", "wank_saas", "-c", sql],
                          capture_output=True, text=True, check=True).stdout


def spares_json(path) -> dict:
    proc = sliceops("status", "--json", "-i", str(path))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["spares"]


def warnings(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("sliceops: warning: ")]


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    path = tmp_path_factory.mktemp("spares") / f"{INSTANCE}.yaml"
    path.write_text(FIRST)
    first = run_deploy(path)
    assert first.returncode == 0, first.output[-4000:]
    yield path
    if os.environ.get("SLICEOPS_KEEP_TEST_INSTANCES") != "1":
        teardown_instance(INSTANCE)


def test_add_then_plan_then_deploy_keeps_the_spares_and_the_warning_follows(inventory):
    path = inventory
    # One slice, unassigned: fewer than three spares.
    status = sliceops("status", "-i", str(path))
    assert status.returncode == 0, status.stderr
    assert warnings(status) == [
        f"sliceops: warning: 1 of 1 in-service slices is unassigned (slice 1), fewer than slice_defaults.spares (3): "
        f"sign-ups would wait; `sliceops add --count 2 -i {path}`, then `sliceops deploy -i {path}`"
    ]
    assert spares_json(path) == {"wanted": 3, "unassigned": 1, "unassigned_ids": [1], "short_by": 2}

    added = sliceops("add", "--count", "2", "-i", str(path))
    assert added.returncode == 0, added.stderr
    assert added.stdout.splitlines()[0] == f"{path}: added slices 2, 3 (ports {BASE + 2}, {BASE + 4}); 3 slices listed"
    assert path.read_text() == FIRST + "  - id: 2\n  - id: 3\n"

    # Listed, not deployed: status says a deploy is enough; the plan (what the deploy leaves) is quiet.
    waiting = sliceops("status", "-i", str(path))
    assert warnings(waiting)[0].endswith(f"2 more in {path} await a deploy: `sliceops deploy -i {path}`")
    plan = sliceops("plan", "-i", str(path))
    assert plan.returncode == 3, plan.stdout + plan.stderr
    named = {int(m[1]): m[2] for line in plan.stdout.splitlines() if (m := _SLICE_LINE.match(line))}
    assert sorted(named) == [2, 3] and all(what.startswith("new: ") for what in named.values()), plan.stdout
    assert warnings(plan) == []

    deployed = run_deploy(path)
    assert deployed.returncode == 0, deployed.output[-4000:]
    settled = sliceops("status", "-i", str(path))
    assert settled.returncode == 0 and warnings(settled) == [], settled.stderr
    assert spares_json(path) == {"wanted": 3, "unassigned": 3, "unassigned_ids": [1, 2, 3], "short_by": 0}

    # A sign-up takes slice 2 (as the gateway does): two spares left, and both commands say so.
    psql("INSERT INTO gateway.users (email, password_hash, slice_id) VALUES ('new@example.com', 'x', 2);"
         "UPDATE gateway.slices SET status = 'assigned', user_id = "
         "(SELECT id FROM gateway.users WHERE email = 'new@example.com') WHERE id = 2;")
    taken = sliceops("status", "-i", str(path))
    assert taken.returncode == 0
    assert warnings(taken) == [
        f"sliceops: warning: 2 of 3 in-service slices are unassigned (slices 1, 3), fewer than slice_defaults.spares "
        f"(3): sign-ups would wait; `sliceops add --count 1 -i {path}`, then `sliceops deploy -i {path}`"
    ]
    quiet = sliceops("plan", "-i", str(path))
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr  # a warning never changes the exit status
    assert quiet.stdout.strip().splitlines() == ["plan: nothing would change"]
    assert warnings(quiet) == [
        f"sliceops: warning: after this deploy 2 of 3 in-service slices would be unassigned (slices 1, 3), fewer "
        f"than slice_defaults.spares (3): sign-ups would wait; `sliceops add --count 1 -i {path}` appends more"
    ]

    # Slice 3's entry deleted by hand: an orphan, its database kept. `add` reads the host and skips it.
    path.write_text(FIRST + "  - id: 2\n")
    again = sliceops("add", "-i", str(path))
    assert again.returncode == 0, again.stderr
    assert path.read_text() == FIRST + "  - id: 2\n  - id: 4\n"
    assert f"skipped: slice 3 on @local but not in {path} (orphans keep their database: their ids are not reused)" \
        in again.stdout.splitlines()
