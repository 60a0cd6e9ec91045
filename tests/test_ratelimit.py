"""The wrong-token limiter under a spray of addresses: memory bounded, work per failure
constant (counted in steps through its tables; bench/http_abuse_bench.py times it), and a
lockout that holds while the bound does."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from collector.web.ratelimit import FailureLimiter, counted_as


def sprayed(count: int, prefix: str = "10") -> list[str]:
    return [f"{prefix}.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(count)]


class CountedTable(OrderedDict[str, Any]):
    """One of the limiter's tables, counting the steps taken through it: each call to a
    method and each entry an iteration goes through. A scan or a rebuild of the table
    (what made the former limiter O(n)) is as many steps as entries."""

    steps = 0

    def _step(self, count: int = 1) -> None:
        CountedTable.steps += count

    def __getitem__(self, key: str) -> Any:
        self._step()
        return super().__getitem__(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self._step()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._step()
        super().__delitem__(key)

    def __contains__(self, key: object) -> bool:
        self._step()
        return super().__contains__(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self._step()
        return super().get(key, default)

    def pop(self, key: str, *default: Any) -> Any:  # type: ignore[override]
        self._step()
        return super().pop(key, *default)

    def popitem(self, last: bool = True) -> tuple[str, Any]:
        self._step()
        return super().popitem(last)

    def move_to_end(self, key: str, last: bool = True) -> None:
        self._step()
        super().move_to_end(key, last)

    def __iter__(self) -> Iterator[str]:
        for key in super().__iter__():
            self._step()
            yield key

    def keys(self) -> Any:
        return list(iter(self))

    def items(self) -> Any:
        return [(key, super(CountedTable, self).__getitem__(key)) for key in self]

    def values(self) -> Any:
        return [value for _, value in self.items()]

    def copy(self) -> CountedTable:
        return CountedTable(self.items())


def counted(limiter: FailureLimiter) -> FailureLimiter:
    """The limiter with its two tables counted (the same entries, the same order)."""
    limiter._failures = CountedTable(limiter._failures)
    limiter._locked = CountedTable(limiter._locked)
    return limiter


def test_a_spray_of_50000_addresses_stays_within_the_bound_and_a_lockout_holds() -> None:
    now = [0.0]
    limiter = counted(FailureLimiter(
        max_failures=3, window_s=300, lockout_s=600, clock=lambda: now[0],
        max_addresses=10_000, max_lockouts=1_000,
    ))  # fmt: skip
    for _ in range(3):
        limiter.failed("203.0.113.7")
    assert limiter.retry_after("203.0.113.7") == 600
    steps: list[int] = []
    for address in sprayed(50_000):
        now[0] += 0.001
        before = CountedTable.steps
        limiter.failed(address)
        steps.append(CountedTable.steps - before)
    counted_now, locked = limiter.sizes()
    assert counted_now == 10_000 and locked == 1
    assert limiter.evicted == 40_000
    assert limiter.retry_after("203.0.113.7") > 500  # still locked, ~50 s later
    # Constant work per failure: the former limiter rebuilt its whole table on each
    # failure past 10,000 addresses (10,000 steps each here). A failure against the full
    # table takes one eviction more than one against an almost empty table, no more.
    assert max(steps[10_000:]) == max(steps[:100]) + 1 <= 6, (max(steps[:100]), max(steps))
    assert sum(steps) <= 6 * len(steps)


def test_the_count_of_steps_sees_a_scan_of_the_table() -> None:
    """What the bound above relies on: going through the table costs a step an entry."""
    table = CountedTable((address, 0.0) for address in sprayed(1_000))
    for scan in (list, dict, sorted, lambda t: list(t.items()), lambda t: t.copy()):
        before = CountedTable.steps
        scan(table)
        assert CountedTable.steps - before >= 1_000, scan


def test_lockouts_are_bounded_and_the_first_to_go_is_the_nearest_its_end() -> None:
    now = [0.0]
    limiter = FailureLimiter(
        max_failures=1, window_s=60, lockout_s=600, clock=lambda: now[0], max_lockouts=100
    )
    limiter.failed("203.0.113.7")
    for address in sprayed(99):
        now[0] += 0.1
        limiter.failed(address)
    assert limiter.sizes()[1] == 100
    assert limiter.retry_after("203.0.113.7") > 0  # 100 locked: within the bound
    now[0] += 0.1
    limiter.failed("192.0.2.1")  # the 101st: the oldest lockout gives way
    assert limiter.sizes()[1] == 100
    assert limiter.retry_after("203.0.113.7") == 0
    assert limiter.retry_after("192.0.2.1") == 600
    assert limiter.retry_after("10.0.0.0") > 0
    # Expired lockouts leave first, without evicting a live one.
    now[0] += 600
    for address in sprayed(50, "172"):
        limiter.failed(address)
    assert limiter.sizes()[1] == 50 and limiter.retry_after("172.0.0.49") == 600


def test_an_ipv6_client_counts_by_its_64_and_a_mapped_ipv4_as_itself() -> None:
    limiter = FailureLimiter(max_failures=3, window_s=60, lockout_s=60)
    for host in ("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9"):
        limiter.failed(host)
    assert limiter.retry_after("2001:db8:1:2::abcd") > 0
    assert limiter.retry_after("2001:db8:1:3::1") == 0  # another subscriber's /64
    assert counted_as("::ffff:198.51.100.4") == "198.51.100.4"
    assert counted_as("198.51.100.4") == "198.51.100.4"
    assert counted_as("not an address") == "not an address"


def test_a_window_counts_from_its_first_failure() -> None:
    now = [0.0]
    limiter = FailureLimiter(max_failures=3, window_s=60, lockout_s=60, clock=lambda: now[0])
    limiter.failed("a")
    now[0] = 59
    limiter.failed("a")
    now[0] = 61  # the window of the first failure is over: counting starts again
    limiter.failed("a")
    limiter.failed("a")
    assert limiter.retry_after("a") == 0
    limiter.failed("a")
    assert limiter.retry_after("a") == 60
