"""Refusing clients that keep presenting wrong tokens, for a while.

After ``max_failures`` failed authentications from one address within ``window_s``
of its first one, that address is refused (HTTP 429 with Retry-After) for
``lockout_s``, whatever it presents: guessing tokens becomes hopelessly slow.

Memory is bounded whoever sprays addresses: at most ``max_addresses`` addresses
are counted and ``max_lockouts`` locked out; past either bound the oldest entry
goes, and each failure costs the same few dictionary steps however full the
tables are. What eviction gives an attacker: forgetting a partly counted address
gives it back nothing it could not get from a fresh address anyway; lifting a
lockout early takes ``max_lockouts`` other addresses locked out after it, each
with ``max_failures`` failures of its own, and even then the lockout that goes
is the one nearest its end (every lockout lasts as long). An IPv6 client counts
by its /64, the block one subscriber holds: spraying addresses from it is one
address here.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_ADDRESSES = 10_000
MAX_LOCKOUTS = 10_000


def counted_as(address: str) -> str:
    """The key an address is counted under: itself, or its /64 for IPv6."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


class FailureLimiter:
    def __init__(
        self,
        max_failures: int = 10,
        window_s: float = 300.0,
        lockout_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = MAX_ADDRESSES,
        max_lockouts: int = MAX_LOCKOUTS,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.clock = clock
        self.max_addresses = max_addresses
        self.max_lockouts = max_lockouts
        # address -> [first failure of its window, failures since]; oldest use first.
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        # address -> end of its lockout; in order of ending, as every lockout is as long.
        self._locked: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self.lockouts = 0
        self.evicted = 0
        """Entries dropped over a bound (failures and lockouts alike)."""

    def retry_after(self, address: str) -> float:
        """Seconds this address must wait; 0 when it may try."""
        key = counted_as(address)
        with self._lock:
            until = self._locked.get(key)
            if until is None:
                return 0.0
            left = until - self.clock()
            if left <= 0:
                del self._locked[key]
                return 0.0
            return left

    def failed(self, address: str) -> None:
        key = counted_as(address)
        now = self.clock()
        with self._lock:
            counted = self._failures.get(key)
            if counted is None or now - counted[0] > self.window_s:
                counted = [now, 0.0]
                self._failures[key] = counted
            self._failures.move_to_end(key)
            counted[1] += 1
            if counted[1] >= self.max_failures:
                del self._failures[key]
                self._lock_out(key, now)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)
                self.evicted += 1

    def _lock_out(self, key: str, now: float) -> None:
        self._locked.pop(key, None)
        self._locked[key] = now + self.lockout_s
        self.lockouts += 1
        while self._locked:
            first, until = next(iter(self._locked.items()))
            if until > now and len(self._locked) <= self.max_lockouts:
                break
            del self._locked[first]
            if until > now:
                self.evicted += 1

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(counted_as(address), None)

    def sizes(self) -> tuple[int, int]:
        """(addresses counted, addresses locked out): both within their bounds."""
        with self._lock:
            return len(self._failures), len(self._locked)
