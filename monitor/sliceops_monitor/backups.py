"""The backup agent's results file (/var/lib/sliceops/<instance>/backups.json, group-readable
by the monitor; backup/README.md), read when Prometheus scrapes: the time of each slice's last
verified backup. Nothing here opens a backup, and the file holds nothing secret."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackupTimes:
    """Unix times of the last verified backups; None where none is recorded."""

    slices: dict[int, float | None] = field(default_factory=dict)
    gateway: float | None = None
    copy_failed: dict[int, bool] = field(default_factory=dict)  # the slice's latest copy off the host failed
    gateway_here: bool = True  # False on a pure slice host of a fleet: the gateway is backed up elsewhere


def _epoch(text) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp()


def parse(data: dict) -> BackupTimes:
    """The results file's document as BackupTimes (keys it does not know are ignored)."""
    slices: dict[int, float | None] = {}
    failed: dict[int, bool] = {}
    for key, entry in (data.get("slices") or {}).items():
        if not (isinstance(key, str) and key.isdigit() and isinstance(entry, dict)):
            continue
        slices[int(key)] = _epoch((entry.get("last_good") or {}).get("at"))
        copy = entry.get("copy")
        if isinstance(copy, dict):
            failed[int(key)] = not copy.get("ok", False)
    gateway = _epoch(((data.get("gateway") or {}).get("last_good") or {}).get("at"))
    return BackupTimes(slices, gateway, failed, data.get("gateway_here") is not False)


class ResultsFile:
    """The file, re-read only when its size or mtime changed (a scrape costs a stat)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._seen: tuple | None = None
        self._times: BackupTimes | None = None
        self._error: str | None = None
        self._mutex = threading.Lock()

    def read(self) -> BackupTimes | None:
        """None when no backup ever ran on the host (no file) or it cannot be read (logged once)."""
        if not self.path:
            return None
        with self._mutex:
            try:
                st = os.stat(self.path)
                seen = (st.st_mtime_ns, st.st_size, st.st_ino)
                if seen != self._seen:
                    with open(self.path, encoding="utf-8") as fh:
                        data = json.load(fh)
                    self._times = parse(data if isinstance(data, dict) else {})
                    self._seen = seen
                self._error = None
                return self._times
            except FileNotFoundError:
                self._seen = self._times = None
                return None
            except (OSError, ValueError) as exc:
                message = f"cannot read the backup results {self.path}: {exc}"
                if message != self._error:
                    logger.warning("%s; backup metrics left out", message)
                self._error = message
                return None
