"""A deploy that changes one slice touches only it (issue 15), on a real instance: a memory
limit edited recreates that slice's container alone, and a slice added starts its own
container; neither restarts another container nor the monitor, which takes the new slice
list by reload (same pid) and writes the new slice's telemetry within about two beats,
without a gap in the others'."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.fix_deploy import run_deploy

pytestmark = pytest.mark.integration

INSTANCE = "f15one"
PG_PORT = 5717
INTERVAL = 2  # the monitor's beat (s): short, so "within two beats" is quick to see
SECTIONS = dict(
    postgres={"port": PG_PORT},
    docker={"subnet": "172.30.217.0/24"},
    slice_defaults={"port_base": 29001, "disk": "64m"},  # below the ephemeral ports (32768-60999)
    # The monitor refuses a /health timeout that is not shorter than its beat (default 2 s).
    monitor={"interval": INTERVAL, "health_timeout": 1},
)
NAME = lambda sid: f"{INSTANCE}-wa-slice-{sid}"  # noqa: E731


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def gateway(sql: str) -> list[str]:
    return sh("runuser", "-u", "postgres", "--", "psql", "-XAtq", "-p", str(PG_PORT), "-d", "wank_saas",
              "-c", sql).splitlines()


def containers() -> dict[str, dict]:
    """Every container of the instance: {name: {"id", "started", "memory"}}."""
    ids = sh("docker", "ps", "-aq", "--no-trunc", "--filter", f"label=sliceops.instance={INSTANCE}").split()
    return {c["Name"].lstrip("/"): {"id": c["Id"], "started": c["State"]["StartedAt"],
                                    "memory": c["HostConfig"]["Memory"]}
            for c in json.loads(sh("docker", "inspect", *ids))} if ids else {}


def monitor_pid() -> int:
    # The LSB script's pid file, or systemd's MainPID: the process, not the service's name.
    pidfile = Path(f"/run/sliceops-monitor-{INSTANCE}.pid")
    if pidfile.exists():
        return int(pidfile.read_text())
    return int(sh("systemctl", "show", "-p", "MainPID", "--value", f"sliceops-monitor-{INSTANCE}"))


def newest_row(slice_id: int) -> float:
    """Epoch of the slice's newest telemetry row (0 when it has none)."""
    return float(gateway(f"SELECT coalesce(extract(epoch FROM max(\"timestamp\")), 0) FROM gateway.telemetry "
                         f"WHERE slice_id = {int(slice_id)}")[0])


def deploy(path: Path):
    out = run_deploy(path)
    assert out.returncode == 0, out.output[-4000:]
    return out


def wait_for_row(slice_id: int, after: float, seconds: float) -> float:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (newest := newest_row(slice_id)) > after:
            return newest
        time.sleep(0.2)
    raise AssertionError(f"no telemetry row for slice {slice_id} within {seconds:.0f} s")


def test_one_slice_changed_or_added_touches_only_it(make_inventory):
    three = [{"id": 1}, {"id": 2}, {"id": 3}]
    deploy(make_inventory(INSTANCE, three, **SECTIONS))
    wait_for_row(1, 0, 60)
    before, pid = containers(), monitor_pid()
    assert sorted(before) == [NAME(1), NAME(2), NAME(3)]

    # Slice 2's memory limit: its container alone is recreated, with the new limit.
    edited = [{"id": 1}, {"id": 2, "memory": "300m"}, {"id": 3}]
    deploy(make_inventory(INSTANCE, edited, **SECTIONS))
    after = containers()
    assert after[NAME(2)]["id"] != before[NAME(2)]["id"]
    assert after[NAME(2)]["started"] != before[NAME(2)]["started"]
    assert after[NAME(2)]["memory"] == 300 * 1024 * 1024
    for sid in (1, 3):
        assert after[NAME(sid)] == before[NAME(sid)], f"slice {sid}'s container was touched"
    assert monitor_pid() == pid, "the monitor was restarted"

    # Slice 4 added: its container starts, nothing else does; the monitor reloads.
    t0 = newest_row(1)
    out = deploy(make_inventory(INSTANCE, edited + [{"id": 4}], **SECTIONS))
    done = time.time()
    # Its role, database, grants, stamp and gateway row in one step; the four steps found nothing
    # left (and the deploy below, reading the cluster afresh, changes nothing: the step's own
    # account of what it left was true).
    changed = " | ".join(out.changed_ops)
    assert "Add new slices" in changed, changed
    for step in ("Create roles", "Create databases", "Apply migrations", "Register slices"):
        assert step not in changed, changed
    assert gateway("SELECT status FROM gateway.slices WHERE id = 4") == ["available"]
    assert gateway("SELECT shobj_description(oid, 'pg_database') LIKE 'sliceops %' FROM pg_database "
                   "WHERE datname = 'wa_slice_4'") == ["t"]
    added = containers()
    assert sorted(added) == [NAME(1), NAME(2), NAME(3), NAME(4)]
    for sid in (1, 2, 3):
        assert added[NAME(sid)] == after[NAME(sid)], f"slice {sid}'s container was touched"
    assert monitor_pid() == pid, "the monitor was restarted"
    # Two beats, and slack for a shared machine's load (a cycle itself takes time there).
    wait_for_row(4, 0, 2 * INTERVAL + 6)
    # The others' telemetry went on through the deploy: no gap longer than about two beats.
    stamps = [float(x) for x in gateway(
        f"SELECT extract(epoch FROM \"timestamp\") FROM gateway.telemetry WHERE slice_id = 1 "
        f"AND \"timestamp\" >= to_timestamp({t0}) ORDER BY 1")]
    assert len(stamps) >= 2 and stamps[-1] >= done - 2 * INTERVAL, "slice 1's telemetry stopped"
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert max(gaps) <= 3 * INTERVAL, f"a gap in slice 1's telemetry: {max(gaps):.1f} s"

    # And the host is converged: nothing changes on the next deploy.
    again = deploy(make_inventory(INSTANCE, edited + [{"id": 4}], **SECTIONS))
    assert again.totals["changed"] == 0, again.changed_ops
