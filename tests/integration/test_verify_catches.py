"""`make verify` (the testinfra suite) catches a host broken behind the tool's back, and says
what is wrong: a stopped slice container, a dropped database, a stopped monitor."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.fix_deploy import ROOT, run_deploy

pytestmark = pytest.mark.integration

INSTANCE = "itver"
PG_PORT = 5443


def verify(inventory) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sliceops.cli", "verify", "--inventory", str(inventory), "--", "-q", "--tb=line"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture(scope="module")
def converged(tmp_path_factory):
    import yaml

    from tests.fix_deploy import teardown_instance

    path = tmp_path_factory.mktemp("inv") / f"{INSTANCE}.yaml"
    path.write_text(yaml.safe_dump({
        "target": "@local", "instance": INSTANCE,
        "postgres": {"port": PG_PORT}, "docker": {"subnet": "172.30.43.0/24"},
        "slice_defaults": {"port_base": 6401}, "monitor": {"interval": 5},
        "slices": [{"id": 1}, {"id": 2}],
    }, sort_keys=False))
    result = run_deploy(path)
    assert result.returncode == 0, result.output[-4000:]
    time.sleep(6)  # one monitor beat
    yield path
    teardown_instance(INSTANCE)


def _repair(path):
    result = run_deploy(path)
    assert result.returncode == 0, result.output[-4000:]
    time.sleep(6)


def test_a_converged_host_passes(converged):
    proc = verify(converged)
    assert proc.returncode == 0, proc.stdout[-4000:]


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (f"docker stop {INSTANCE}-wa-slice-2", f"container {INSTANCE}-wa-slice-2 is exited, not running"),
        (f"runuser -u postgres -- psql -p {PG_PORT} -c 'DROP DATABASE wa_slice_1 WITH (FORCE)'",
         "database wa_slice_1 is missing"),
        (f"/etc/init.d/sliceops-monitor-{INSTANCE} stop", f"sliceops-monitor-{INSTANCE} is not running"),
    ],
    ids=["stopped container", "dropped database", "stopped monitor"],
)
def test_a_broken_host_fails_verify_naming_the_problem(converged, breakage, expected):
    subprocess.run(["sh", "-c", breakage], check=True, capture_output=True)
    try:
        proc = verify(converged)
        assert proc.returncode != 0, "verify passed on a broken host"
        assert expected in proc.stdout, proc.stdout[-4000:]
    finally:
        _repair(converged)
