"""One inventory, two hosts (issue 14), deployed for real from this machine: the database host
is this machine (@local, running one slice too), the other slice host does not answer
(TEST-NET-1, 192.0.2.1). pyinfra goes on with the host it reaches, the deploy ends non-zero
naming the other; the gateway records each slice's host and the monitor labels its server
rows; dropping the silent host while the gateway shows a slice on it is refused before any
change. Cross-host wiring (TLS, pg_hba) and the three-host fleet are fleet14b/fleet14c's.
"""

from __future__ import annotations

import subprocess
import time

import pytest
import yaml

from tests.fix_deploy import run_deploy, teardown_instance

INSTANCE = "fl14a1"
PG_PORT = 5414
BASE = 7411
HOSTS = {
    "db1": {"target": "@local", "address": "10.251.14.1", "database": True},
    "app9": {"target": "ssh://root@192.0.2.1", "address": "192.0.2.1"},
}


def _write(path, hosts, slices):
    path.write_text(yaml.safe_dump({
        "instance": INSTANCE, "hosts": hosts,
        "postgres": {"port": PG_PORT}, "docker": {"subnet": "172.30.114.0/24"},
        "slice_defaults": {"port_base": BASE, "disk": "64m"},
        "slices": slices,
    }, sort_keys=False))
    return path


def _psql(sql: str) -> str:
    proc = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-p", str(PG_PORT), "-d", "wank_saas",
                           "-c", sql], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _started(name: str) -> str:
    return subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", name],
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    path = _write(tmp_path_factory.mktemp("fleet") / "fleet.yaml", HOSTS,
                  [{"id": 1, "host": "db1"}, {"id": 2, "host": "app9"}])
    result = run_deploy(path)
    yield path, result
    teardown_instance(INSTANCE)


def test_an_unreachable_slice_host_does_not_stop_the_others_and_is_named_at_the_end(fleet):
    _, result = fleet
    assert result.returncode != 0, result.output[-3000:]
    assert "sliceops: 1 of 2 hosts did not finish: app9 (unreachable" in result.output, result.output[-3000:]
    # The database host converged: its own slice runs, every slice's database exists.
    assert _started(f"{INSTANCE}-wa-slice-1"), result.output[-3000:]
    assert _psql("SELECT datname FROM pg_database WHERE datname LIKE 'wa_slice_%' ORDER BY 1") == "wa_slice_1\nwa_slice_2"
    assert not _started(f"{INSTANCE}-wa-slice-2")  # its container belongs on app9, not here


def test_the_gateway_records_each_slice_s_host_and_the_monitor_labels_its_rows(fleet):
    assert _psql("SELECT id || ':' || host FROM gateway.slices ORDER BY id") == "1:db1\n2:app9"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if _psql("SELECT count(*) FROM gateway.server_telemetry WHERE host = 'db1'") != "0":
            break
        time.sleep(3)
    assert _psql("SELECT string_agg(DISTINCT coalesce(host, 'NULL'), ',') FROM gateway.server_telemetry") == "db1"


def test_dropping_a_host_the_gateway_still_shows_a_slice_on_is_refused_before_any_change(fleet, tmp_path):
    before = _started(f"{INSTANCE}-wa-slice-1")
    path = _write(tmp_path / "dropped.yaml", {"db1": HOSTS["db1"]}, [{"id": 1, "host": "db1"}])
    result = run_deploy(path)
    assert result.returncode != 0
    assert "hosts: 'app9' is no longer listed but the gateway shows slice(s) 2 on it" in result.output, result.output[-3000:]
    assert _started(f"{INSTANCE}-wa-slice-1") == before
    assert _psql("SELECT id || ':' || host FROM gateway.slices ORDER BY id") == "1:db1\n2:app9"
