"""Container memory and CPU from cgroup files, on fake v1 and v2 trees."""

import sys
from pathlib import Path

import pytest


from sliceops_monitor.cgroups import CgroupReader, cpu_percent, memory_limit, stat_value, working_set  # noqa: E402

CID = "b0f891bb22b1ce266cd7b6b735be2b6932113a697bbc788e68e03cdb56de4cdc"
V1_STAT = "cache 12288\nrss 110592\ninactive_file 999\ntotal_cache 12288\ntotal_inactive_file 4096\ntotal_active_file 8192\n"
V2_STAT = "anon 4096\nfile 8192\ninactive_anon 0\nactive_file 4096\ninactive_file 4096\nslab 100\n"


def put(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v1_tree(root: Path, cpu_mount: str = "cpuacct", layout: str = "docker/{id}") -> Path:
    sub = layout.format(id=CID)
    put(root / "memory" / sub / "memory.usage_in_bytes", "716800\n")
    put(root / "memory" / sub / "memory.stat", V1_STAT)
    put(root / cpu_mount / "cpuacct.usage", "123\n")  # the hierarchy root, as on a real mount
    put(root / cpu_mount / sub / "cpuacct.usage", "1619987251\n")
    return root


def v2_tree(root: Path, layout: str) -> Path:
    put(root / "cgroup.controllers", "cpuset cpu io memory pids\n")
    d = root / layout.format(id=CID)
    put(d / "memory.current", "1048576\n")
    put(d / "memory.stat", V2_STAT)
    put(d / "cpu.stat", "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    return root


@pytest.mark.parametrize("cpu_mount", ["cpuacct", "cpu,cpuacct"])
@pytest.mark.parametrize("layout", ["docker/{id}", "system.slice/docker-{id}.scope"])
def test_v1_memory_is_usage_minus_total_inactive_file(tmp_path, cpu_mount, layout):
    reader = CgroupReader(str(v1_tree(tmp_path, cpu_mount, layout)))
    assert reader.version == 1
    sample = reader.read(CID)
    # 716800 - 4096 = 712704 bytes = 696 KiB, what `docker stats` showed for this container.
    assert sample.memory_bytes == 712704
    assert sample.cpu_ns == 1619987251


@pytest.mark.parametrize("layout", ["system.slice/docker-{id}.scope", "docker/{id}"])
def test_v2_memory_is_current_minus_inactive_file(tmp_path, layout):
    reader = CgroupReader(str(v2_tree(tmp_path, layout)))
    assert reader.version == 2
    sample = reader.read(CID)
    assert sample.memory_bytes == 1048576 - 4096
    assert sample.cpu_ns == 2_500_000_000


def test_a_container_without_cgroup_reads_as_none(tmp_path):
    reader = CgroupReader(str(v1_tree(tmp_path)))
    assert reader.read("f" * 64) is None


def test_a_cgroup_that_vanishes_between_cycles_reads_as_none(tmp_path):
    root = v1_tree(tmp_path)
    reader = CgroupReader(str(root))
    assert reader.read(CID) is not None
    (root / "memory" / "docker" / CID / "memory.usage_in_bytes").unlink()
    assert reader.read(CID) is None


def test_memory_is_reported_even_without_a_cpu_controller(tmp_path):
    root = v1_tree(tmp_path)
    (root / "cpuacct" / "docker" / CID / "cpuacct.usage").unlink()
    sample = CgroupReader(str(root)).read(CID)
    assert sample.memory_bytes == 712704 and sample.cpu_ns is None


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
    assert cpu_percent((5_000, 10.0), 1_000, 11.0) is None  # counter reset: a new container
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
    limit_file = root / "memory" / "docker" / CID / "memory.limit_in_bytes"
    put(limit_file, "268435456\n")
    reader = CgroupReader(str(root))
    assert reader.read(CID).memory_limit == 268435456
    put(limit_file, "536870912\n")
    # Cached: a limit changes only with a new container (a new id).
    assert reader.read(CID).memory_limit == 268435456
    reader.forget_except(set())
    assert reader.read(CID).memory_limit == 536870912


def test_the_v2_limit_comes_from_memory_max(tmp_path):
    root = v2_tree(tmp_path, "docker/{id}")
    put(root / "docker" / CID / "memory.max", "max\n")
    assert CgroupReader(str(root)).read(CID).memory_limit is None
    put(root / "docker" / CID / "memory.max", "1073741824\n")
    assert CgroupReader(str(root)).read(CID).memory_limit == 1073741824
