"""Slice data directory sizes, measured by a background thread so a slow disk never
stalls a cycle: the cycle reports the last figure and how old it is."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

logger = logging.getLogger(__name__)


def du(path: str, errors: list[str] | None = None) -> int | None:
    """Allocated bytes under path like `du -s --block-size=1` (hard links once, no symlinks followed).

    None if path does not exist or cannot be listed. Entries that vanish or
    cannot be read during the walk are skipped, as du would report and go on;
    unreadable directories are appended to errors.
    """
    try:
        top = os.lstat(path)
    except OSError:
        return None
    total = top.st_blocks * 512
    seen: set[tuple[int, int]] = set()
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            it = os.scandir(current)
        except FileNotFoundError:
            continue  # removed while we walked
        except OSError as exc:
            if errors is not None:
                errors.append(f"{current}: {exc.strerror}")
            if current == path:
                return None  # the directory's own entry says nothing about its contents
            continue
        with it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_nlink > 1 and not entry.is_dir(follow_symlinks=False):
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return total


class DiskWorker:
    """Walks each slice's data_dir at most once per refresh interval, oldest figure first."""

    def __init__(self, refresh: float, measure: Callable[..., int | None] = du,
                 clock: Callable[[], float] = time.monotonic):
        self.refresh = refresh
        self._measure = measure
        self._clock = clock
        self._lock = threading.Lock()
        self._dirs: dict[int, str] = {}
        # slice id -> (bytes or None, monotonic time measured, dir it was measured for)
        self._values: dict[int, tuple[int | None, float, str]] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._logged: set[str] = set()

    def set_dirs(self, dirs: dict[int, str]) -> None:
        with self._lock:
            self._dirs = dict(dirs)
            for sid in [s for s in self._values if s not in dirs]:
                del self._values[sid]
        self._wake.set()

    def get(self, slice_id: int) -> tuple[int | None, float | None]:
        """(last figure, its age in seconds); (None, None) if never measured for the current dir."""
        with self._lock:
            value = self._values.get(slice_id)
            path = self._dirs.get(slice_id)
        if value is None or value[2] != path:
            return None, None
        return value[0], self._clock() - value[1]

    def measure_all_now(self) -> None:
        """Measure every directory in the calling thread (for `once`)."""
        with self._lock:
            dirs = dict(self._dirs)
        for sid, path in dirs.items():
            self._store(sid, path)

    def _store(self, sid: int, path: str) -> None:
        errors: list[str] = []
        try:
            value = self._measure(path, errors)
        except Exception:  # one bad directory must not end the worker
            logger.exception("measuring %s failed", path)
            value = None
        if path not in self._logged:
            # Once per directory, not at every walk: the cause (usually permissions) persists.
            if value is None and errors:
                self._logged.add(path)
                logger.warning("slice %d: cannot list data_dir %s (%s); disk_bytes stays unknown",
                               sid, path, errors[0].rsplit(": ", 1)[-1])
            elif value is None:
                self._logged.add(path)
                logger.warning("slice %d: data_dir %s does not exist", sid, path)
            elif errors:
                self._logged.add(path)
                logger.warning("slice %d: %d directories under %s could not be read (%s); "
                               "disk_bytes is a lower bound", sid, len(errors), path, errors[0])
        with self._lock:
            if self._dirs.get(sid) == path:
                self._values[sid] = (value, self._clock(), path)

    def _next_due(self) -> tuple[int, str] | None | float:
        now = self._clock()
        with self._lock:
            best, best_t = None, None
            for sid, path in self._dirs.items():
                value = self._values.get(sid)
                t = value[1] if value is not None and value[2] == path else float("-inf")
                if best_t is None or t < best_t:
                    best, best_t = (sid, path), t
        if best is None:
            return self.refresh
        wait = best_t + self.refresh - now
        return best if wait <= 0 else wait

    def _run(self) -> None:
        while not self._stop.is_set():
            due = self._next_due()
            if isinstance(due, tuple):
                self._store(*due)
                continue
            self._wake.wait(due)
            self._wake.clear()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="disk-usage", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
