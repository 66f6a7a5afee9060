"""The monitor's Prometheus endpoint, from a real `sliceops-monitor run` process against a
real PostgreSQL and real containers, parsed with prometheus_client's parser."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fix_docker import wait_until
from tests.integration.test_monitor_service import (  # noqa: F401  (fixtures)
    CONNECTED, MONITOR_PYTHON, MONITOR_SRC, Env, add_slices, env, free_port, monitor_role, start_backend,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 64 * 2**20


def scrape(port: int) -> dict:
    """{name: {(slice, extra label values...): value}} as Prometheus would read the page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = tuple(v for k, v in sorted(s.labels.items()) if k != "container")
            out.setdefault(s.name, {})[key] = s.value
    return out


@pytest.fixture
def running_monitor(env: Env, containers):
    """`sliceops-monitor run` with metrics on: slice 1 answering CONNECTED with a 64 MiB
    limit, slice 2 stopped, slice 3 with a disk quota but no container."""
    c1, p1 = start_backend(env, containers, 1, CONNECTED)
    c1.update(mem_limit=LIMIT, memswap_limit=-1)
    c2 = env.run(containers, 2, ["sleep", "3600"])
    c2.stop(timeout=0)
    slices = [
        {**env.slice(1, p1), "data_dir": env.data_dir(1, 50_000)},
        env.slice(2, free_port()),
        env.slice(3, free_port(), disk_quota_bytes=10**9),
    ]
    add_slices(env, [(1, p1, "assigned"), (2, slices[1]["port"], "available"), (3, slices[2]["port"], "available")])
    port = free_port()
    path = env.write_config(slices, metrics_port=port)
    log = open(env.tmp / "monitor.log", "w")
    proc = subprocess.Popen([MONITOR_PYTHON, "-m", "sliceops_monitor", "--config", path, "run"],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(MONITOR_SRC)})
    try:
        # Two written cycles: the second has a CPU baseline and the disk walker has reported.
        wait_until(lambda: env.sql("SELECT count(DISTINCT \"timestamp\") FROM gateway.telemetry")[0][0] >= 2
                   and scrape(port).get("sliceops_slice_fs_usage_bytes", {}).get(("1",), 0) >= 50_000,
                   what="two written cycles and a disk figure", timeout=30)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        log.close()


def test_a_running_monitor_serves_what_it_wrote(env, running_monitor):
    proc, port = running_monitor
    got = scrape(port)
    assert got["sliceops_slice_up"] == {("1",): 1, ("2",): 0, ("3",): 0}
    assert got["sliceops_slice_whatsapp_connected"][("1",)] == 1
    assert got["sliceops_slice_whatsapp_state"] == {
        ("1", "CONNECTED"): 1, ("2", "CONTAINER_STOPPED"): 1, ("3", "CONTAINER_MISSING"): 1}
    assert got["sliceops_slice_spec_memory_limit_bytes"] == {("1",): LIMIT}  # from the container's cgroup
    assert 0 < got["sliceops_slice_memory_working_set_bytes"][("1",)] < LIMIT
    assert got["sliceops_slice_cpu_usage_seconds_total"][("1",)] > 0
    assert got["sliceops_slice_fs_limit_bytes"] == {("3",): 10**9}
    # The endpoint's timestamp is the newest row the monitor wrote for the slice.
    newest = {sid: ts.timestamp() for sid, ts in env.sql(
        'SELECT slice_id, max("timestamp") FROM gateway.telemetry GROUP BY slice_id')}
    shown = got["sliceops_slice_last_telemetry_timestamp_seconds"]
    for sid in (1, 2, 3):
        # Scraped after the query: equal, or a cycle newer.
        assert newest[sid] <= shown[(str(sid),)] < newest[sid] + 5, (sid, newest, shown)
    server = env.sql("SELECT ram_total_bytes, active_slices, total_slices FROM gateway.server_telemetry "
                     'ORDER BY "timestamp" DESC LIMIT 1')[0]
    assert got["sliceops_server_memory_total_bytes"][()] == server[0]
    assert (got["sliceops_server_slices_assigned"][()], got["sliceops_server_slices"][()]) == (1, 3)
    assert 0 <= got["sliceops_server_cpu_usage_ratio"][()] <= 1
    assert got["sliceops_monitor_cycles_total"][()] >= 2
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    with pytest.raises(OSError):
        scrape(port)



# A deployed instance: the monitor runs from its venv on Debian's python3 and
# python3-prometheus-client, under its init script, as the deploy installs it.
DEPLOYED = "rep12m"


def test_the_deployed_monitor_serves_metrics_from_debians_prometheus_client(make_inventory):
    from tests.fix_deploy import run_deploy

    port = free_port()
    inventory = make_inventory(
        DEPLOYED, [{"id": 1}, {"id": 2, "status": "suspended"}],
        postgres={"port": 5621}, docker={"subnet": "172.30.121.0/24"},
        slice_defaults={"port_base": 18121, "memory": "128m"},
        monitor={"interval": 5, "metrics_port": port},
    )
    result = run_deploy(inventory)
    assert result.returncode == 0, result.output[-3000:]
    wait_until(lambda: scrape(port).get("sliceops_slice_last_telemetry_timestamp_seconds"),
               what="the deployed monitor's first written cycle", timeout=60)
    got = scrape(port)
    assert got["sliceops_slice_spec_memory_limit_bytes"] == {("1",): 128 * 2**20}
    assert got["sliceops_slice_up"] == {("1",): 1}  # the suspended slice is not measured
    assert got["sliceops_monitor_info"] == {("rep12m", "0.1.0"): 1}
    served_by = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    assert f"127.0.0.1:{port}" in served_by and served_by.count("\n") == 1, served_by  # loopback only
    pid = re.search(r"pid=(\d+)", served_by)[1]
    assert os.readlink(f"/proc/{pid}/exe").startswith("/usr/bin/python3")  # the distribution's interpreter
