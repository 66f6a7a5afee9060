"""What one cycle measured: the rows it will write, kept apart from how they are
collected (collect.py) and how they are stored (database.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# States the monitor writes when the backend itself could not say.
CONTAINER_STOPPED = "CONTAINER_STOPPED"
CONTAINER_MISSING = "CONTAINER_MISSING"


@dataclass(slots=True)
class SliceSample:
    """One gateway.telemetry row plus what the gateway.slices update needs."""

    slice_id: int
    wa_state: str
    rss_bytes: int | None = None
    cpu_percent: float | None = None
    disk_bytes: int | None = None
    wa_phone: str | None = None
    answered: bool = False  # /health answered: refresh last_health_at and wa_phone
    # For the metrics endpoint only (not written to the database):
    cpu_ns: int | None = None  # the container's cumulative CPU time
    memory_limit_bytes: int | None = None  # its cgroup memory limit; None when unlimited


@dataclass(slots=True)
class ServerSample:
    """One gateway.server_telemetry row (slice counts are taken from gateway.slices at write time)."""

    ram_used_bytes: int
    ram_total_bytes: int
    swap_used_bytes: int
    swap_total_bytes: int
    cpu_percent: float | None
    disk_used_bytes: int | None
    disk_total_bytes: int | None
    host: str | None = None  # the inventory's name of this host (server_telemetry.host)


@dataclass(slots=True)
class CycleBatch:
    """Everything one cycle writes, stamped with the time it was collected."""

    number: int
    collected_at: datetime
    slices: list[SliceSample] = field(default_factory=list)
    server: ServerSample | None = None

    @property
    def rows(self) -> int:
        return len(self.slices) + (1 if self.server is not None else 0)
