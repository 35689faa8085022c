"""When to try again: exponential backoff with jitter, capped.

The jitter keeps a team's laptops from retrying one collector in lockstep after
it comes back: each delay is drawn between half and all of the exponential step.
A collector's Retry-After is honoured (up to 10 minutes).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

MAX_RETRY_AFTER = 600.0


class Backoff:
    def __init__(
        self,
        cap: float,
        base: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ):
        self.cap, self.base, self.clock, self.rand = max(cap, 0.05), base, clock, rand
        self.failures = 0
        self.next_try = 0.0
        self.delay = 0.0

    def ready(self) -> bool:
        return self.clock() >= self.next_try

    def wait_time(self) -> float:
        return max(0.0, self.next_try - self.clock())

    def failed(self, retry_after: float | None = None) -> float:
        """One more failure: the delay until the next try, and from when it counts."""
        self.failures += 1
        step = min(self.cap, self.base * float(2 ** min(self.failures, 20)))
        delay = step * (0.5 + 0.5 * self.rand())
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
        self.delay = delay
        self.next_try = self.clock() + delay
        return delay

    def ok(self) -> None:
        self.failures = 0
        self.next_try = 0.0
        self.delay = 0.0
