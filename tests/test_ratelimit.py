"""The wrong-token limiter under a spray of addresses: memory bounded, work per failure
constant, and a lockout that holds while the bound does."""

from __future__ import annotations

import time

from collector.web.ratelimit import FailureLimiter, counted_as


def sprayed(count: int, prefix: str = "10") -> list[str]:
    return [f"{prefix}.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(count)]


def test_a_spray_of_50000_addresses_stays_within_the_bound_and_a_lockout_holds() -> None:
    now = [0.0]
    limiter = FailureLimiter(
        max_failures=3, window_s=300, lockout_s=600, clock=lambda: now[0],
        max_addresses=10_000, max_lockouts=1_000,
    )  # fmt: skip
    for _ in range(3):
        limiter.failed("203.0.113.7")
    assert limiter.retry_after("203.0.113.7") == 600
    started = time.perf_counter()
    for address in sprayed(50_000):
        now[0] += 0.001
        limiter.failed(address)
    spent = time.perf_counter() - started
    counted, locked = limiter.sizes()
    assert counted == 10_000 and locked == 1
    assert limiter.evicted == 40_000
    assert limiter.retry_after("203.0.113.7") > 500  # still locked, ~50 s later
    # Constant work per failure: the former limiter rebuilt its whole table on each
    # failure past 10,000 addresses (minutes for this spray); this one takes well under
    # a second here, and 10 s would still mean a few hundred microseconds each.
    assert spent < 10, f"{spent:.1f} s for 50,000 failures"


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
