"""Slice state, container memory and slice CPU from cgroup files, on fake v1 and v2 trees
laid out as the engine lays them out under a slice's --cgroup-parent."""

import pytest

from sliceops_monitor.cgroups import (  # noqa: E402
    MISSING, RUNNING, STOPPED, CgroupReader, cpu_percent, memory_limit, stat_value, working_set,
)

CID = "b0f891bb22b1ce266cd7b6b735be2b6932113a697bbc788e68e03cdb56de4cdc"
SLICE = "sliceops.slice/sliceops-main.slice/sliceops-main-s1.slice"
# The container's cgroup below the slice's: cgroupfs names it by id, systemd a scope.
CHILDREN = ("{id}", "docker-{id}.scope")
V1_STAT = "cache 12288\nrss 110592\ninactive_file 999\ntotal_cache 12288\ntotal_inactive_file 4096\ntotal_active_file 8192\n"
V2_STAT = "anon 4096\nfile 8192\ninactive_anon 0\nactive_file 4096\ninactive_file 4096\nslab 100\n"


def put(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v1_tree(root, cpu_mount: str = "cpuacct", child: str = "{id}"):
    sub = f"{SLICE}/{child.format(id=CID)}"
    put(root / "memory" / sub / "memory.usage_in_bytes", "716800\n")
    put(root / "memory" / sub / "memory.stat", V1_STAT)
    put(root / "memory" / SLICE / "memory.usage_in_bytes", "9999999\n")  # includes dead children's cache
    put(root / cpu_mount / "cpuacct.usage", "123\n")  # the hierarchy root, as on a real mount
    put(root / cpu_mount / SLICE / "cpuacct.usage", "1619987251\n")  # the slice: every container it ran
    put(root / cpu_mount / sub / "cpuacct.usage", "42\n")
    return root


def v2_tree(root, child: str = "{id}"):
    put(root / "cgroup.controllers", "cpuset cpu io memory pids\n")
    d = root / SLICE / child.format(id=CID)
    put(d / "memory.current", "1048576\n")
    put(d / "memory.stat", V2_STAT)
    put(d / "cgroup.procs", "4242\n")
    put(root / SLICE / "cpu.stat", "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    return root


@pytest.mark.parametrize("cpu_mount", ["cpuacct", "cpu,cpuacct"])
@pytest.mark.parametrize("child", CHILDREN)
def test_v1_memory_is_the_containers_usage_minus_total_inactive_file(tmp_path, cpu_mount, child):
    reader = CgroupReader(str(v1_tree(tmp_path, cpu_mount, child)))
    assert reader.version == 1
    reading = reader.read(SLICE)
    # 716800 - 4096 = 712704 bytes = 696 KiB, what `docker stats` showed for this container.
    assert (reading.state, reading.memory_bytes) == (RUNNING, 712704)
    assert reading.cpu_ns == 1619987251  # the slice's counter, not the container's


@pytest.mark.parametrize("child", CHILDREN)
def test_v2_memory_is_current_minus_inactive_file(tmp_path, child):
    reader = CgroupReader(str(v2_tree(tmp_path, child)))
    assert reader.version == 2
    reading = reader.read(SLICE)
    assert (reading.state, reading.memory_bytes, reading.cpu_ns) == (RUNNING, 1048576 - 4096, 2_500_000_000)


def test_a_slice_without_cgroup_is_missing(tmp_path):
    reader = CgroupReader(str(v1_tree(tmp_path)))
    assert reader.read("sliceops.slice/sliceops-main.slice/sliceops-main-s9.slice").state == MISSING


def test_a_slice_cgroup_without_a_container_is_stopped(tmp_path):
    root = v1_tree(tmp_path)
    for sub in (root / "memory" / SLICE / CID).iterdir():
        sub.unlink()
    (root / "memory" / SLICE / CID).rmdir()  # the engine removes a container's cgroup when it stops
    reading = CgroupReader(str(root)).read(SLICE)
    assert (reading.state, reading.memory_bytes, reading.cpu_ns) == (STOPPED, None, None)


def test_a_cgroup_that_vanishes_while_read_is_stopped(tmp_path):
    root = v1_tree(tmp_path)
    (root / "memory" / SLICE / CID / "memory.usage_in_bytes").unlink()
    assert CgroupReader(str(root)).read(SLICE).state == STOPPED


def test_a_recreated_container_is_the_one_with_processes(tmp_path):
    root = v2_tree(tmp_path)
    old = root / SLICE / ("0" * 64)  # the replaced container's cgroup, not yet removed
    put(old / "memory.current", "5\n")
    put(old / "memory.stat", V2_STAT)
    put(old / "cgroup.procs", "")
    assert CgroupReader(str(root)).read(SLICE).memory_bytes == 1048576 - 4096


def test_memory_is_reported_even_without_a_cpu_controller(tmp_path):
    root = v1_tree(tmp_path)
    (root / "cpuacct" / SLICE / "cpuacct.usage").unlink()
    reading = CgroupReader(str(root)).read(SLICE)
    assert reading.memory_bytes == 712704 and reading.cpu_ns is None


def test_stat_value_matches_whole_keys_only():
    data = V1_STAT.encode()
    assert stat_value(data, b"inactive_file") == 999
    assert stat_value(data, b"total_inactive_file") == 4096
    assert stat_value(data, b"cache") == 12288
    assert stat_value(data, b"missing") is None
    assert stat_value(b"usage_usec 5", b"usage_usec") == 5  # no trailing newline


def test_working_set_never_goes_negative():
    assert working_set(100, 40) == 60
    assert working_set(100, 100) == 100  # the CLI only subtracts a smaller cache
    assert working_set(100, None) == 100


def test_cpu_percent_is_per_core_and_none_without_a_baseline():
    # 1.5 s of CPU in 1 s of wall time: one and a half cores.
    assert cpu_percent((1_000_000_000, 10.0), 2_500_000_000, 11.0) == 150.0
    assert cpu_percent(None, 5, 1.0) is None
    assert cpu_percent((5_000, 10.0), 1_000, 11.0) is None  # counter reset: a new slice cgroup
    assert cpu_percent((5_000, 10.0), 6_000, 10.01) is None  # too short to mean anything


# --------------------------------------------------------------------------- memory limit

@pytest.mark.parametrize("raw, expected", [
    (b"268435456\n", 268435456),
    (b"max\n", None),                      # v2: no limit
    (b"9223372036854771712\n", None),      # v1: no limit (the largest page-aligned value)
    (b"", None),
    (b"garbage", None),
])
def test_memory_limit_reads_bytes_and_unlimited_as_none(raw, expected):
    assert memory_limit(raw) == expected


def test_the_limit_is_read_once_per_container_v1(tmp_path):
    root = v1_tree(tmp_path)
    limit_file = root / "memory" / SLICE / CID / "memory.limit_in_bytes"
    put(limit_file, "268435456\n")
    reader = CgroupReader(str(root))
    assert reader.read(SLICE).memory_limit == 268435456
    put(limit_file, "536870912\n")
    # Cached: a limit changes only with a new container (a new child cgroup).
    assert reader.read(SLICE).memory_limit == 268435456
    new = root / "memory" / SLICE / ("1" * 64)
    (root / "memory" / SLICE / CID).rename(new)
    assert reader.read(SLICE).memory_limit == 536870912


def test_the_v2_limit_comes_from_memory_max(tmp_path):
    root = v2_tree(tmp_path)
    put(root / SLICE / CID / "memory.max", "max\n")
    assert CgroupReader(str(root)).read(SLICE).memory_limit is None
    put(root / SLICE / CID / "memory.max", "1073741824\n")
    assert CgroupReader(str(root)).read(SLICE).memory_limit == 1073741824
