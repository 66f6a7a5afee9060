"""Container memory and CPU counters read straight from cgroup files (v1 and v2).

`docker stats` costs 1-2 s per container; these are a few small reads each.
Memory is what `docker stats` shows as MEM USAGE: usage minus inactive page
cache (v1: memory.usage_in_bytes - total_inactive_file, v2: memory.current -
inactive_file). CPU is the cumulative counter in nanoseconds (v1
cpuacct.usage, v2 cpu.stat usage_usec * 1000); the caller turns two readings
into a percentage. The memory limit (v1 memory.limit_in_bytes, v2 memory.max) is read
once per container: the deploy changes a limit by recreating the container.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# Where a container's cgroup lives below a hierarchy root, by cgroup driver.
# cgroupfs: docker/<id>; systemd: system.slice/docker-<id>.scope.
LAYOUTS = ("docker/{id}", "system.slice/docker-{id}.scope")


@dataclass(frozen=True)
class CgroupSample:
    """One reading of a container's cgroup; a field is None when its file was unreadable."""

    memory_bytes: int | None
    cpu_ns: int | None
    memory_limit: int | None = None  # None: unlimited or unreadable


# cgroup v1 writes "no limit" as the largest page-aligned 64-bit value; anything at or
# above 2**62 is no real limit on any machine.
_UNLIMITED_V1 = 1 << 62


def read_small(path: str) -> bytes:
    """The contents of a small pseudo-file in one read (cgroup files are generated per read)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def stat_value(data: bytes, key: bytes) -> int | None:
    """Value of `key` in a "key value" per line file such as memory.stat or cpu.stat."""
    # Anchor at a line start: b"inactive_file" also ends b"total_inactive_file".
    if data.startswith(key + b" "):
        start = len(key) + 1
    else:
        pos = data.find(b"\n" + key + b" ")
        if pos < 0:
            return None
        start = pos + len(key) + 2
    end = data.find(b"\n", start)
    try:
        return int(data[start:end if end >= 0 else None])
    except ValueError:
        return None


def memory_limit(raw: bytes) -> int | None:
    """A memory.max / memory.limit_in_bytes value in bytes; None for "max" or no limit."""
    raw = raw.strip()
    if not raw or raw == b"max":
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return None if value >= _UNLIMITED_V1 else value


def working_set(usage: int, inactive_file: int | None) -> int:
    """Usage minus inactive file cache, exactly as the docker CLI computes MEM USAGE."""
    if inactive_file is not None and inactive_file < usage:
        return usage - inactive_file
    return usage


class CgroupReader:
    """Finds each container's cgroup directories once and reads its counters each cycle."""

    def __init__(self, root: str = "/sys/fs/cgroup"):
        self.root = root
        self.version = 2 if os.path.exists(os.path.join(root, "cgroup.controllers")) else 1
        if self.version == 2:
            self._memory_root = self._cpu_root = root
        else:
            self._memory_root = os.path.join(root, "memory")
            # cpuacct is mounted alone or co-mounted with cpu, depending on the distribution.
            self._cpu_root = next(
                (os.path.join(root, d) for d in ("cpuacct", "cpu,cpuacct", "cpuacct,cpu", "cpu")
                 if os.path.exists(os.path.join(root, d, "cpuacct.usage"))),
                os.path.join(root, "cpuacct"),
            )
        self._layout = LAYOUTS[0]
        # container id -> (memory dir, cpu dir); dropped when the container goes away.
        self._dirs: dict[str, tuple[str, str]] = {}
        # container id -> memory limit, read on the container's first reading only.
        self._limits: dict[str, int | None] = {}

    def _find(self, cid: str) -> tuple[str, str] | None:
        # Try the layout that worked last first: on one host every container uses the same.
        for layout in (self._layout, *(lay for lay in LAYOUTS if lay != self._layout)):
            sub = layout.format(id=cid)
            mem = os.path.join(self._memory_root, sub)
            if os.path.isdir(mem):
                self._layout = layout
                return mem, os.path.join(self._cpu_root, sub)
        return None

    def read(self, cid: str) -> CgroupSample | None:
        """Counters of the container with full id cid, or None if it has no cgroup (not running)."""
        dirs = self._dirs.get(cid) or self._find(cid)
        if dirs is None:
            return None
        mem_dir, cpu_dir = dirs
        try:
            if self.version == 2:
                usage = int(read_small(mem_dir + "/memory.current"))
                inactive = stat_value(read_small(mem_dir + "/memory.stat"), b"inactive_file")
            else:
                usage = int(read_small(mem_dir + "/memory.usage_in_bytes"))
                inactive = stat_value(read_small(mem_dir + "/memory.stat"), b"total_inactive_file")
        except (OSError, ValueError):
            # The container stopped between listing and reading: its cgroup went away.
            self._dirs.pop(cid, None)
            self._limits.pop(cid, None)
            return None
        try:
            if self.version == 2:
                usec = stat_value(read_small(cpu_dir + "/cpu.stat"), b"usage_usec")
                cpu = usec * 1000 if usec is not None else None
            else:
                cpu = int(read_small(cpu_dir + "/cpuacct.usage"))
        except (OSError, ValueError):
            cpu = None  # no cpu controller here: memory is still worth reporting
        self._dirs[cid] = dirs
        if cid in self._limits:
            limit = self._limits[cid]
        else:
            try:
                limit = memory_limit(read_small(mem_dir + ("/memory.max" if self.version == 2
                                                          else "/memory.limit_in_bytes")))
            except OSError:
                limit = None
            self._limits[cid] = limit
        return CgroupSample(working_set(usage, inactive), cpu, limit)

    def forget_except(self, live: set[str]) -> None:
        """Drop cached paths of containers no longer listed (bounded memory over container churn)."""
        for cid in [c for c in self._dirs if c not in live]:
            del self._dirs[cid]
        for cid in [c for c in self._limits if c not in live]:
            del self._limits[cid]


def cpu_percent(prev: tuple[int, float] | None, cpu_ns: int | None, now: float) -> float | None:
    """CPU use between two readings (cpu ns, monotonic s) in percent of one core; None if unknown."""
    if prev is None or cpu_ns is None:
        return None
    prev_ns, prev_t = prev
    wall = now - prev_t
    # A counter that went backwards means a new container with the same id slot; a
    # tiny wall interval gives a meaningless ratio.
    if wall < 0.05 or cpu_ns < prev_ns:
        return None
    return round((cpu_ns - prev_ns) / (wall * 1e9) * 100.0, 2)
