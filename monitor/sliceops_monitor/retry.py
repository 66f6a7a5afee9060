"""The one retry helper (after patroni's utils.Retry): exponential backoff with
jitter, bounded by a deadline, so no caller scatters its own sleeps."""

from __future__ import annotations

import logging
import random
import time
from typing import Callable, TypeVar

from .errors import RetryFailed

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Retry:
    """Call a function until it succeeds or the deadline would pass during the next pause."""

    def __init__(self, *, deadline: float, delay: float = 0.2, max_delay: float = 2.0, backoff: float = 2.0,
                 jitter: float = 0.25, retry_on: tuple[type[BaseException], ...] = (Exception,),
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random, what: str = "operation"):
        self.deadline = deadline
        self.delay = delay
        self.max_delay = max_delay
        self.backoff = backoff
        self.jitter = jitter
        self.retry_on = retry_on
        self.sleep = sleep
        self.clock = clock
        self.rng = rng
        self.what = what

    def __call__(self, func: Callable[..., T], *args, **kwargs) -> T:
        start = self.clock()
        delay = self.delay
        attempt = 0
        while True:
            attempt += 1
            try:
                return func(*args, **kwargs)
            except self.retry_on as exc:
                # Jitter spreads reconnects of many monitors after a shared outage.
                pause = min(delay, self.max_delay) * (1 + self.jitter * (2 * self.rng() - 1))
                elapsed = self.clock() - start
                if elapsed + pause > self.deadline:
                    raise RetryFailed(f"{self.what} failed {attempt} times in {elapsed:.1f}s: {exc}") from exc
                logger.debug("%s failed (attempt %d, %s); retrying in %.2fs", self.what, attempt, exc, pause)
                self.sleep(pause)
                delay *= self.backoff
