"""Which requests are sampled, and when sampling backs off.

The choice is deterministic per model version: request k is sampled when floor((k + 1) * rate) passes an
integer, so a rate of 0.05 samples exactly every 20th request (no randomness a test or an operator has to
average over, and no bursts). A sample costs its request what a summary capture costs, so sampling backs
off while the server is busy: when other calls wait on the same model, or when sampled calls took more than
`cpu_budget` of the last `BUDGET_SECONDS` of wall time. What it skips is counted by reason.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

BUDGET_SECONDS = 10.0


class Sampler:
    """Deterministic sampling of one model version's requests at `rate` (0..1)."""

    def __init__(self, rate: float) -> None:
        self.rate = min(max(rate, 0.0), 1.0)
        self._seen = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            k = self._seen
            self._seen += 1
        return math.floor((k + 1) * self.rate) > math.floor(k * self.rate)


class Budget:
    """The share of recent wall time spent in sampled calls, against a limit."""

    def __init__(self, share: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.share = share
        self._clock = clock
        self._spent: deque[tuple[float, float]] = deque()
        self._total = 0.0
        self._lock = threading.Lock()

    def allows(self) -> bool:
        with self._lock:
            self._expire(self._clock())
            return self._total < self.share * BUDGET_SECONDS

    def spend(self, seconds: float) -> None:
        with self._lock:
            now = self._clock()
            self._spent.append((now, seconds))
            self._total += seconds
            self._expire(now)

    def _expire(self, now: float) -> None:
        while self._spent and self._spent[0][0] < now - BUDGET_SECONDS:
            self._total -= self._spent.popleft()[1]
