"""Each slice's state, memory and CPU read straight from cgroup files (v1 and v2), with no
Docker API: the deploy runs every slice container under a cgroup parent of its own
(`--cgroup-parent`), the same relative path with either cgroup driver
(`sliceops.slice/sliceops-<instance>.slice/sliceops-<instance>-s<id>.slice`), named in the
monitor's configuration. The container is the one child cgroup below it while it runs.

State: no slice cgroup at all means the container never ran (MISSING); a slice cgroup with
no child means it is not running (STOPPED: stopped or removed; the engine removes a
container's cgroup when it stops); a child means it runs. A recreated container (new id)
is simply the new child: nothing to relearn, no cycle lost.

Memory is what `docker stats` shows as MEM USAGE, read from the container's own cgroup:
usage minus inactive page cache (v1: memory.usage_in_bytes - total_inactive_file, v2:
memory.current - inactive_file). CPU is the slice cgroup's cumulative counter in
nanoseconds (v1 cpuacct.usage, v2 cpu.stat usage_usec * 1000): it spans container
recreations, so the CPU figure goes on across them (and a Prometheus counter never resets
on a recreate); the caller turns two readings into a percentage. The memory limit (v1
memory.limit_in_bytes, v2 memory.max) is the container's, read once per container cgroup:
the deploy changes a limit by recreating the container.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

RUNNING, STOPPED, MISSING = "running", "stopped", "missing"


@dataclass(frozen=True)
class SliceReading:
    """One reading of a slice's cgroup; a counter is None when its file was unreadable."""

    state: str
    memory_bytes: int | None = None
    cpu_ns: int | None = None
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


def _children(path: str) -> list[str] | None:
    """Child cgroup directories of path, or None when path does not exist."""
    try:
        with os.scandir(path) as entries:
            return [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return None


def _has_procs(path: str) -> bool:
    try:
        return bool(read_small(path + "/cgroup.procs").strip())
    except OSError:
        return False


class CgroupReader:
    """Reads slice cgroups below one hierarchy root (v1: one mount per controller)."""

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
        # The container cgroup whose limit was read last, per slice cgroup, and that limit.
        self._limits: dict[str, tuple[str, int | None]] = {}

    def read(self, cgroup: str) -> SliceReading:
        """State and counters of the slice whose cgroup parent is `cgroup` (relative to the root)."""
        children = _children(os.path.join(self._memory_root, cgroup))
        if children is None:
            return SliceReading(MISSING)
        # While a container is being replaced the old child may linger a moment: take the one with processes.
        if len(children) > 1:
            children = [c for c in children if _has_procs(c)] or children
        if not children:
            return SliceReading(STOPPED)
        container = children[0]
        try:
            if self.version == 2:
                usage = int(read_small(container + "/memory.current"))
                inactive = stat_value(read_small(container + "/memory.stat"), b"inactive_file")
            else:
                usage = int(read_small(container + "/memory.usage_in_bytes"))
                inactive = stat_value(read_small(container + "/memory.stat"), b"total_inactive_file")
        except (OSError, ValueError):
            # The container stopped between listing and reading: its cgroup went away.
            return SliceReading(STOPPED)
        return SliceReading(RUNNING, working_set(usage, inactive), self._cpu_ns(cgroup),
                            self._limit(cgroup, container))

    def _limit(self, cgroup: str, container: str) -> int | None:
        known = self._limits.get(cgroup)
        if known is not None and known[0] == container:
            return known[1]
        try:
            limit = memory_limit(read_small(container + ("/memory.max" if self.version == 2
                                                          else "/memory.limit_in_bytes")))
        except OSError:
            limit = None
        self._limits[cgroup] = (container, limit)  # one entry per slice: bounded
        return limit

    def _cpu_ns(self, cgroup: str) -> int | None:
        path = os.path.join(self._cpu_root, cgroup)
        try:
            if self.version == 2:
                usec = stat_value(read_small(path + "/cpu.stat"), b"usage_usec")
                return usec * 1000 if usec is not None else None
            return int(read_small(path + "/cpuacct.usage"))
        except (OSError, ValueError):
            return None  # no cpu controller here: memory is still worth reporting


def cpu_percent(prev: tuple[int, float] | None, cpu_ns: int | None, now: float) -> float | None:
    """CPU use between two readings (cpu ns, monotonic s) in percent of one core; None if unknown."""
    if prev is None or cpu_ns is None:
        return None
    prev_ns, prev_t = prev
    wall = now - prev_t
    # A counter that went backwards means the slice cgroup was recreated (a reboot of the
    # engine's hierarchy); a tiny wall interval gives a meaningless ratio.
    if wall < 0.05 or cpu_ns < prev_ns:
        return None
    return round((cpu_ns - prev_ns) / (wall * 1e9) * 100.0, 2)
