"""What the reading commands load: `sliceops status` for @local answers in under a second
for 200 slices (bench/status_fleet.py) only while its import path stays free of pyinfra,
paramiko, the docker SDK and psycopg (each costs it 0.2-1 s on this machine). A fresh
interpreter runs the real command path (cli.main -> status -> rows -> table / JSON) with
the target's two answers given, then says what it imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sliceops.errors import MigrationError, SliceopsError, for_pyinfra
from sliceops.paths import ROOT

HEAVY = ("pyinfra", "paramiko", "docker", "requests", "psycopg")

_RUN_STATUS = r"""
import json, os, sys
from sliceops import remote
from sliceops.cli import main

DB = {"now": 1800000000.0,
      "slices": [{"id": 1, "port": 5001, "status": "available", "user_id": None, "email": None,
                  "wa_connected": False, "wa_phone": None, "telemetry": None}],
      "databases": [{"name": "wa_slice_1", "size_bytes": 8000000, "connections": 0,
                     "current": True, "stamped": True}]}

def run(self, argv, stdin=""):  # the target's answers, without a host: psql, then the backup file
    return json.dumps(DB) + "\n" if argv[0] == "runuser" else ""

remote.Target.run = run
remote.Target.containers = lambda self, label: [
    {"Labels": {"sliceops.slice": "1"}, "Names": ["/wa-slice-1"], "State": "running", "Status": "Up (healthy)"}]
status = main(["status", *sys.argv[2:], "-i", sys.argv[1]])
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(os.environ["HEAVY"].split(",")))
print(json.dumps({"status": status, "heavy": heavy}), file=sys.stderr)
"""


@pytest.mark.parametrize("options", [[], ["--json"], ["--sort", "mem"]])
def test_status_for_a_local_target_imports_no_pyinfra_paramiko_docker_or_psycopg(tmp_path, options):
    inv = tmp_path / "inv.yaml"
    inv.write_text("target: '@local'\ninstance: unit\nslices:\n  - id: 1\n")
    proc = subprocess.run([sys.executable, "-c", _RUN_STATUS, str(inv), *options], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "HEAVY": ",".join(HEAVY)})
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report["status"] == 0, proc.stderr
    if "--json" in options:
        assert [s["id"] for s in json.loads(proc.stdout)["slices"]] == [1]
    else:
        assert [line.split()[0] for line in proc.stdout.splitlines()[2:]] == ["1"], proc.stdout
    assert report["heavy"] == []


def test_the_guard_sees_a_heavy_import():
    """The check above can fail: the same probe on `plan`'s module reports pyinfra."""
    probe = "import sys, sliceops.plan; print(sorted({m.split('.')[0] for m in sys.modules} & {'pyinfra'}))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "['pyinfra']", out.stderr


def test_inside_the_deploy_a_sliceops_error_reaches_pyinfra_as_its_own_operation_error():
    from pyinfra.api.exceptions import OperationError

    with pytest.raises(OperationError) as caught:
        with for_pyinfra():
            raise MigrationError("0002_x.sql changed after it was applied")
    assert str(caught.value) == "0002_x.sql changed after it was applied"
    assert isinstance(caught.value.__cause__, SliceopsError)
    # pyinfra names the line that raised it (its frame is kept), not the wrapper.
    frames = []
    tb = caught.value.__traceback__
    while tb:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert frames[-1] == "test_inside_the_deploy_a_sliceops_error_reaches_pyinfra_as_its_own_operation_error"


def test_other_errors_pass_through_the_deploy_s_wrapper_unchanged():
    with pytest.raises(KeyError):
        with for_pyinfra():
            raise KeyError("x")
