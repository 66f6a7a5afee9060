"""A cycle's measurements with fake cgroups and backends; the disk walker on tmp_path."""

import logging
import os
import sys
import time
from pathlib import Path

import pytest


from sliceops_monitor.cgroups import MISSING, RUNNING, STOPPED, SliceReading  # noqa: E402
from sliceops_monitor.collect import Collector  # noqa: E402
from sliceops_monitor.config import parse  # noqa: E402
from sliceops_monitor.disk import DiskWorker, du  # noqa: E402
from sliceops_monitor.health import Health  # noqa: E402


def config(**extra):
    slices = [
        {"id": 1, "port": 5001, "container": "wa-slice-1", "cgroup": "s1", "data_dir": "/srv/1"},
        {"id": 2, "port": 5003, "container": "wa-slice-2", "cgroup": "s2", "data_dir": "/srv/2"},
        {"id": 3, "port": 5005, "container": "wa-slice-3", "cgroup": "s3", "data_dir": "/srv/3"},
        {"id": 4, "port": 5007, "container": "wa-slice-4", "cgroup": "s4", "data_dir": "/srv/4", "status": "suspended"},
    ]
    return parse({"interval": 10, "slices": slices, **extra})


class FakeCgroups:
    """Slice cgroups by path: a state each (absent: missing), CPU counters set by the test."""

    def __init__(self, states):
        self.states = dict(states)
        self.cpu = {}
        self.reads = 0

    def read(self, cgroup):
        self.reads += 1
        state = self.states.get(cgroup, MISSING)
        if state != RUNNING:
            return SliceReading(state)
        return SliceReading(RUNNING, memory_bytes=1000, cpu_ns=self.cpu.get(cgroup, 0))


class FakeHealth:
    def __init__(self):
        self.asked = []

    def check_all(self, ports):
        self.asked.append(list(ports))
        return [Health("CONNECTED", "+1", True) if p == 5001 else Health("BACKEND_UNREACHABLE") for p in ports]

    def close(self):
        pass


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def collector(states, cfg=None, values=None):
    clock = Clock()
    disk = DiskWorker(300, measure=lambda p, errors: (values or {}).get(p, 4096), clock=clock)
    c = Collector(cfg or config(), cgroups=FakeCgroups(states), health=FakeHealth(), disk=disk, clock=clock)
    return c, clock


# Slice 1 runs, slice 2's container is stopped, slice 3 never ran.
STATES = {"s1": RUNNING, "s2": STOPPED}


def by_id(batch):
    return {s.slice_id: s for s in batch.slices}


def test_every_slice_in_service_gets_a_row_that_says_why():
    c, _ = collector(STATES)
    batch, notes = c.collect(1)
    rows = by_id(batch)
    assert sorted(rows) == [1, 2, 3]  # the suspended slice 4 is not measured
    assert (rows[1].wa_state, rows[1].answered, rows[1].wa_phone, rows[1].rss_bytes) == ("CONNECTED", True, "+1", 1000)
    assert rows[1].cpu_percent is None  # no baseline yet
    assert (rows[2].wa_state, rows[2].rss_bytes) == ("CONTAINER_STOPPED", None)
    assert (rows[3].wa_state, rows[3].rss_bytes) == ("CONTAINER_MISSING", None)
    assert c.health.asked == [[5001]]  # only running containers are asked
    assert c.cgroups.reads == 3  # one read per slice in service, no engine involved
    assert batch.server is not None and batch.server.ram_total_bytes > 0
    assert notes.answered == 1


def test_cpu_percent_comes_from_two_cycles():
    c, clock = collector(STATES)
    c.collect(1)
    clock.now += 10
    c.cgroups.cpu["s1"] = 5_000_000_000  # 5 s of CPU in 10 s
    batch, _ = c.collect(2)
    assert by_id(batch)[1].cpu_percent == 50.0


def test_cpu_goes_on_across_a_recreated_container():
    # The slice cgroup's counter spans the containers it ran: a new container id costs no figure.
    c, clock = collector(STATES)
    c.cgroups.cpu["s1"] = 1_000_000_000
    c.collect(1)
    c.cgroups.states["s1"] = STOPPED  # removed and run again between two cycles, never seen stopped
    c.cgroups.states["s1"] = RUNNING
    clock.now += 10
    c.cgroups.cpu["s1"] = 3_000_000_000
    assert by_id(c.collect(2)[0])[1].cpu_percent == 20.0


def test_a_stopped_slice_loses_its_cpu_baseline():
    c, clock = collector(STATES)
    c.collect(1)
    c.cgroups.states["s1"] = STOPPED
    assert by_id(c.collect(2)[0])[1].wa_state == "CONTAINER_STOPPED"
    c.cgroups.states["s1"] = RUNNING
    clock.now += 10
    assert by_id(c.collect(3)[0])[1].cpu_percent is None


def test_disk_figures_are_the_workers_last_values_and_stale_ones_are_reported(caplog):
    c, clock = collector(STATES, values={"/srv/1": 8192})
    assert by_id(c.collect(1)[0])[1].disk_bytes is None  # not walked yet
    c.disk.measure_all_now()
    assert by_id(c.collect(2)[0])[1].disk_bytes == 8192
    clock.now += 601  # beyond 2 * disk_interval
    with caplog.at_level(logging.WARNING):
        batch, notes = c.collect(3)
    assert by_id(batch)[1].disk_bytes == 8192
    assert len(notes.stale_disk) == 3 and "disk figures stale for 3 slice(s)" in caplog.text


# --------------------------------------------------------------------------- disk walker

def test_du_counts_allocated_blocks_hard_links_once_and_no_symlink_targets(tmp_path):
    root = tmp_path / "slice"
    (root / "media" / "deep").mkdir(parents=True)
    (root / "media" / "deep" / "a.bin").write_bytes(os.urandom(10000))
    (root / "b.bin").write_bytes(os.urandom(5000))
    os.link(root / "b.bin", root / "media" / "b-again.bin")
    outside = tmp_path / "outside.bin"
    outside.write_bytes(os.urandom(50000))
    os.symlink(outside, root / "link")
    expected = sum(os.lstat(p).st_blocks * 512 for p in
                   [root, root / "media", root / "media" / "deep", root / "media" / "deep" / "a.bin",
                    root / "b.bin", root / "link"])
    assert du(str(root)) == expected
    assert du(str(tmp_path / "absent")) is None


def test_the_worker_measures_in_the_background(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 10000)
    worker = DiskWorker(refresh=60)
    worker.set_dirs({1: str(tmp_path)})
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while worker.get(1)[0] is None and time.monotonic() < deadline:
            time.sleep(0.01)
        value, age = worker.get(1)
        assert value == du(str(tmp_path)) and 0 <= age < 5
    finally:
        worker.stop()


def test_the_worker_logs_a_missing_directory_once(tmp_path, caplog):
    worker = DiskWorker(refresh=60)
    worker.set_dirs({7: str(tmp_path / "absent")})
    with caplog.at_level(logging.WARNING):
        worker.measure_all_now()
        worker.measure_all_now()
    assert caplog.text.count("slice 7: data_dir") == 1
    assert worker.get(7)[0] is None


def test_a_moved_data_dir_forgets_the_old_figure(tmp_path):
    worker = DiskWorker(refresh=60, measure=lambda p, errors: 1)
    worker.set_dirs({1: "/a"})
    worker.measure_all_now()
    worker.set_dirs({1: "/b"})
    assert worker.get(1) == (None, None)


def test_unreadable_directories_are_reported_once(tmp_path, caplog):
    if os.geteuid() == 0:
        pytest.skip("root reads every directory")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        worker = DiskWorker(refresh=60)
        worker.set_dirs({1: str(tmp_path)})
        with caplog.at_level(logging.WARNING):
            worker.measure_all_now()
            worker.measure_all_now()
        assert caplog.text.count("could not be read") == 1
    finally:
        locked.chmod(0o755)


def test_du_lists_unreadable_directories(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    real = os.scandir

    def scandir(path):
        if str(path).endswith("sub"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    errors = []
    assert du(str(tmp_path), errors) is not None
    assert errors == [f"{tmp_path / 'sub'}: Permission denied"]


def test_a_data_dir_that_cannot_be_listed_is_unknown_not_4096_bytes(tmp_path, monkeypatch, caplog):
    real = os.scandir

    def scandir(path):
        if str(path) == str(tmp_path):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    worker = DiskWorker(refresh=60)
    worker.set_dirs({3: str(tmp_path)})
    with caplog.at_level(logging.WARNING):
        worker.measure_all_now()
    assert worker.get(3)[0] is None
    assert f"slice 3: cannot list data_dir {tmp_path} (Permission denied); disk_bytes stays unknown" in caplog.text
