"""The bounded buffer of cycles not yet written: PostgreSQL being down costs memory
up to a limit, then the oldest cycles, and every drop is logged."""

from __future__ import annotations

import logging
from collections import deque

from .samples import CycleBatch

logger = logging.getLogger(__name__)


class Outbox:
    """Oldest-first queue of unwritten cycles, at most `limit` of them."""

    def __init__(self, limit: int):
        self._queue: deque[CycleBatch] = deque(maxlen=limit)
        self.dropped_cycles = 0
        self.dropped_rows = 0

    @property
    def limit(self) -> int:
        return self._queue.maxlen or 0

    def push(self, batch: CycleBatch) -> CycleBatch | None:
        """Queue batch; returns the oldest batch if it had to be dropped to make room."""
        dropped = None
        if len(self._queue) == self._queue.maxlen:
            # deque(maxlen) would drop it silently; count and say so instead.
            dropped = self._queue[0]
            self.dropped_cycles += 1
            self.dropped_rows += dropped.rows
            logger.warning("buffer full (%d cycles): dropped cycle %d (%d rows) collected at %s",
                           self.limit, dropped.number, dropped.rows, dropped.collected_at.isoformat())
        self._queue.append(batch)
        return dropped

    def oldest(self) -> CycleBatch | None:
        return self._queue[0] if self._queue else None

    def pop_oldest(self) -> CycleBatch:
        return self._queue.popleft()

    def resize(self, limit: int) -> None:
        """New bound (on reload); keeps the newest cycles if it shrinks."""
        if limit == self.limit:
            return
        items = list(self._queue)
        lost = items[:-limit] if len(items) > limit else []
        for batch in lost:
            self.dropped_cycles += 1
            self.dropped_rows += batch.rows
        if lost:
            logger.warning("buffer shrunk to %d cycles: dropped %d cycles", limit, len(lost))
        self._queue = deque(items[-limit:], maxlen=limit)

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def rows(self) -> int:
        return sum(b.rows for b in self._queue)
