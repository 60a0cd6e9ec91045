"""Refusing clients that keep presenting wrong tokens, for a while.

After ``max_failures`` failed authentications within ``window_s`` from one
address, that address is refused (HTTP 429 with Retry-After) for
``lockout_s``, whatever it presents: guessing tokens becomes hopelessly slow.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class FailureLimiter:
    def __init__(
        self,
        max_failures: int = 10,
        window_s: float = 300.0,
        lockout_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._locked: dict[str, float] = {}
        self._lock = threading.Lock()
        self.lockouts = 0

    def retry_after(self, address: str) -> float:
        """Seconds this address must wait; 0 when it may try."""
        with self._lock:
            until = self._locked.get(address)
            if until is None:
                return 0.0
            left = until - self.clock()
            if left <= 0:
                del self._locked[address]
                return 0.0
            return left

    def failed(self, address: str) -> None:
        now = self.clock()
        with self._lock:
            recent = self._failures.setdefault(address, deque())
            recent.append(now)
            while recent and recent[0] < now - self.window_s:
                recent.popleft()
            if len(recent) >= self.max_failures:
                self._locked[address] = now + self.lockout_s
                self.lockouts += 1
                recent.clear()
            if len(self._failures) > 10_000:  # bounded memory under a spray of addresses
                self._failures = {a: d for a, d in self._failures.items() if d}

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)
