"""A cycle's measurements with fake engine, cgroups and backends; the disk walker on tmp_path."""

import logging
import os
import sys
import time
from pathlib import Path

import pytest


from sliceops_monitor.cgroups import CgroupSample  # noqa: E402
from sliceops_monitor.collect import Collector  # noqa: E402
from sliceops_monitor.config import parse  # noqa: E402
from sliceops_monitor.disk import DiskWorker, du  # noqa: E402
from sliceops_monitor.docker_api import ContainerInfo, name_filter  # noqa: E402
from sliceops_monitor.errors import DockerError  # noqa: E402
from sliceops_monitor.health import Health  # noqa: E402


def config(**extra):
    slices = [
        {"id": 1, "port": 5001, "container": "wa-slice-1", "data_dir": "/srv/1"},
        {"id": 2, "port": 5003, "container": "wa-slice-2", "data_dir": "/srv/2"},
        {"id": 3, "port": 5005, "container": "wa-slice-3", "data_dir": "/srv/3"},
        {"id": 4, "port": 5007, "container": "wa-slice-4", "data_dir": "/srv/4", "status": "suspended"},
    ]
    return parse({"interval": 10, "slices": slices, **extra})


class FakeDocker:
    def __init__(self, containers):
        self.containers = containers
        self.calls = 0
        self.down = False

    def list_containers(self, names=None):
        self.calls += 1
        if self.down:
            raise DockerError("connection refused")
        return {c.name: c for c in self.containers}


class FakeCgroups:
    def __init__(self):
        self.cpu = {}

    def read(self, cid):
        if cid == "gone":
            return None
        return CgroupSample(memory_bytes=1000, cpu_ns=self.cpu.get(cid, 0))

    def forget_except(self, live):
        pass


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


def collector(containers, cfg=None, values=None):
    clock = Clock()
    disk = DiskWorker(300, measure=lambda p, errors: (values or {}).get(p, 4096), clock=clock)
    c = Collector(cfg or config(), docker=FakeDocker(containers), cgroups=FakeCgroups(), health=FakeHealth(),
                  disk=disk, clock=clock)
    return c, clock


RUNNING = [ContainerInfo("id1", "wa-slice-1", "running"), ContainerInfo("id2", "wa-slice-2", "exited")]


def by_id(batch):
    return {s.slice_id: s for s in batch.slices}


def test_every_slice_in_service_gets_a_row_that_says_why():
    c, _ = collector(RUNNING)
    batch, notes = c.collect(1)
    rows = by_id(batch)
    assert sorted(rows) == [1, 2, 3]  # the suspended slice 4 is not measured
    assert (rows[1].wa_state, rows[1].answered, rows[1].wa_phone, rows[1].rss_bytes) == ("CONNECTED", True, "+1", 1000)
    assert rows[1].cpu_percent is None  # no baseline yet
    assert (rows[2].wa_state, rows[2].rss_bytes) == ("CONTAINER_STOPPED", None)
    assert (rows[3].wa_state, rows[3].rss_bytes) == ("CONTAINER_MISSING", None)
    assert c.health.asked == [[5001]]  # only running containers are asked
    assert c.docker.calls == 1
    assert batch.server is not None and batch.server.ram_total_bytes > 0
    assert notes.answered == 1


def test_cpu_percent_comes_from_two_cycles():
    c, clock = collector(RUNNING)
    c.collect(1)
    clock.now += 10
    c.cgroups.cpu["id1"] = 5_000_000_000  # 5 s of CPU in 10 s
    batch, _ = c.collect(2)
    assert by_id(batch)[1].cpu_percent == 50.0


def test_docker_down_falls_back_to_the_last_listing(caplog):
    c, _ = collector(RUNNING)
    c.collect(1)
    c.docker.down = True
    with caplog.at_level(logging.WARNING):
        batch, notes = c.collect(2)
        c.collect(3)
    assert notes.docker_error
    assert caplog.text.count("Docker engine unavailable") == 1
    rows = by_id(batch)
    assert rows[1].wa_state == "CONNECTED" and rows[1].rss_bytes == 1000
    assert rows[2].wa_state == "CONTAINER_STOPPED"
    # Unknown to the last listing: the backend itself is asked instead of guessing "missing".
    assert rows[3].wa_state == "BACKEND_UNREACHABLE"


def test_a_container_removed_mid_cycle_is_left_to_the_health_check():
    c, _ = collector([ContainerInfo("gone", "wa-slice-1", "running")])
    rows = by_id(c.collect(1)[0])
    assert rows[1].rss_bytes is None and rows[1].wa_state == "CONNECTED"


def test_disk_figures_are_the_workers_last_values_and_stale_ones_are_reported(caplog):
    c, clock = collector(RUNNING, values={"/srv/1": 8192})
    assert by_id(c.collect(1)[0])[1].disk_bytes is None  # not walked yet
    c.disk.measure_all_now()
    assert by_id(c.collect(2)[0])[1].disk_bytes == 8192
    clock.now += 601  # beyond 2 * disk_interval
    with caplog.at_level(logging.WARNING):
        batch, notes = c.collect(3)
    assert by_id(batch)[1].disk_bytes == 8192
    assert len(notes.stale_disk) == 3 and "disk figures stale for 3 slice(s)" in caplog.text


def test_name_filter_is_one_literal_prefix():
    assert name_filter(["wa-slice-1", "wa-slice-2", "wa-slice-10"]) == "^/?wa-slice-"
    assert name_filter(["staging-wa-slice-1"]) == "^/?staging-wa-slice-1"
    assert name_filter(["a.b-1", "a.b-2"]) == "^/?a"  # a dot would be a regexp wildcard
    assert name_filter(["x", "y"]) is None and name_filter([]) is None


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


# --------------------------------------------------------------------------- Docker API client

def serve_unix_once(path: str, response: bytes, seen: list) -> None:
    import socket
    import threading

    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def run():
        conn, _ = srv.accept()
        seen.append(conn.recv(65536))
        conn.sendall(response)
        conn.close()
        srv.close()

    threading.Thread(target=run, daemon=True).start()


def test_docker_client_lists_containers_with_one_filtered_call(tmp_path):
    import json
    import urllib.parse

    from sliceops_monitor.docker_api import DockerClient

    body = json.dumps([
        {"Id": "a" * 64, "Names": ["/wa-slice-1"], "State": "running"},
        {"Id": "b" * 64, "Names": ["/wa-slice-2"], "State": "exited"},
        {"Id": "c" * 64, "Names": None, "State": "removing"},
    ]).encode()
    # Chunked, as the engine answers.
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    seen = []
    sock = str(tmp_path / "docker.sock")
    serve_unix_once(sock, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + chunked, seen)
    found = DockerClient(sock, 2).list_containers(["wa-slice-1", "wa-slice-2"])
    assert found["wa-slice-1"].running and not found["wa-slice-2"].running
    assert found["wa-slice-2"].id == "b" * 64 and len(found) == 2
    request_line = seen[0].split(b"\r\n")[0].decode()
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(request_line.split()[1]).query)
    assert query["all"] == ["1"] and json.loads(query["filters"][0]) == {"name": ["^/?wa-slice-"]}


def test_docker_client_errors_are_docker_errors(tmp_path):
    from sliceops_monitor.docker_api import DockerClient

    with pytest.raises(DockerError, match="Docker API"):
        DockerClient(str(tmp_path / "absent.sock"), 1).list_containers(["x"])
    sock = str(tmp_path / "d.sock")
    serve_unix_once(sock, b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboom", [])
    with pytest.raises(DockerError, match="HTTP 500"):
        DockerClient(sock, 2).list_containers(["x"])
