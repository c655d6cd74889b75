"""When to restart a dead worker, and when to stop trying."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class RestartPolicy:
    """Restart after a backoff that doubles with each recent crash; give up at `max_crashes` crashes within
    `window_seconds`, so a model that dies on every start does not spin forever."""

    def __init__(
        self,
        max_crashes: int,
        window_seconds: float,
        first_backoff: float = 0.5,
        max_backoff: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_crashes < 1:
            raise ValueError(f"Expected max_crashes >= 1; received {max_crashes}.")
        self.max_crashes = max_crashes
        self.window_seconds = window_seconds
        self.first_backoff = first_backoff
        self._first = first_backoff
        self._max = max_backoff
        self._clock = clock
        self._crashes: deque[float] = deque()

    def crashed(self) -> float | None:
        """Record a crash now: the seconds to wait before restarting, or None to give up."""
        now = self._clock()
        self._crashes.append(now)
        while self._crashes and self._crashes[0] < now - self.window_seconds:
            self._crashes.popleft()
        recent = len(self._crashes)
        if recent >= self.max_crashes:
            return None
        return float(min(self._max, self._first * 2 ** (recent - 1)))

    @property
    def recent(self) -> int:
        return len(self._crashes)
