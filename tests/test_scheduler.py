"""The scheduler owns timeouts, overlap, exception capture and counters."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest

from agent.checks.base import AsyncCheck, BlockingCheck, CheckOptions
from agent.configtypes import Duration
from agent.eventloop import stop_loop_thread
from agent.scheduler import Scheduler
from agent.stats import AgentStats
from agent.wakeup import Wakeup
from agent.wire import Sample

#: The scheduler is tested with a check kind of its own ("probe"), not a catalogued one.
pytestmark = pytest.mark.off_catalogue


class Options(CheckOptions, frozen=True, kw_only=True):
    delay: float = 0.0
    explode: bool = False


class Probe(BlockingCheck[Options]):
    kind: ClassVar[str] = "probe"
    options_type = Options

    def collect(self) -> list[Sample]:
        RELEASE.wait(self.options.delay)
        if self.options.explode:
            raise RuntimeError("boom")
        return [self.sample("ok", ts=self.clock(), fields={"x": 1})]


class LoopProbe(AsyncCheck[Options]):
    """The same on the event loop (SNMP's and Polycom's way)."""

    kind: ClassVar[str] = "probe"
    options_type = Options

    async def collect(self) -> list[Sample]:
        import asyncio

        await asyncio.sleep(self.options.delay)
        if self.options.explode:
            raise RuntimeError("boom")
        return [self.sample("ok", ts=self.clock(), fields={"x": 1})]


#: Ends the blocking probes' waits once a test is over: a run the scheduler abandoned
#: still ends on its thread, and its sample must not fall into the next test.
RELEASE = threading.Event()


@pytest.fixture(autouse=True)
def _nothing_left_running() -> Iterator[None]:
    RELEASE.clear()
    yield
    RELEASE.set()
    for thread in threading.enumerate():
        if thread.name.startswith("run:"):
            thread.join()
    stop_loop_thread()  # started by the tests of async checks


def run_until(
    sched: Scheduler, done: Callable[[], bool], between: Callable[[], None] = lambda: None
) -> None:
    """Run ``sched`` on this thread until ``done`` (asked each time it wakes); at most 30 s."""
    stop = Wakeup()
    guard = threading.Timer(30.0, stop.stop)
    guard.start()

    def each_wake() -> None:
        between()
        if done():
            stop.stop()

    try:
        sched.run(stop, between=each_wake)
    finally:
        guard.cancel()
        stop.close()


def scheduler(
    *checks: BlockingCheck[Options] | AsyncCheck[Options],
) -> tuple[Scheduler, list[tuple[str, list[Sample]]], AgentStats]:
    stored: list[tuple[str, list[Sample]]] = []
    stats = AgentStats()
    sched = Scheduler(
        list(checks), 1.0, lambda c, s: stored.append((c.name, s)), stats, jitter=False
    )
    return sched, stored, stats


@pytest.mark.parametrize("kind", [Probe, LoopProbe])
def test_a_check_that_raises_becomes_an_error_sample(kind: type[Probe]) -> None:
    sched, _, stats = scheduler()
    check = kind(Options(name="bad", explode=True))
    samples = sched.run_once(check)
    assert samples[0].outcome == "error"
    assert "RuntimeError: boom" in samples[0].error
    assert stats.checks["bad"].errors == 1


@pytest.mark.parametrize("kind", [Probe, LoopProbe])
def test_a_check_past_its_timeout_becomes_a_timeout_sample(kind: type[Probe]) -> None:
    sched, _, stats = scheduler()
    check = kind(Options(name="slow", delay=5, timeout=Duration(0.2)))
    samples = sched.run_once(check)
    assert samples[0].outcome == "timeout"
    assert stats.checks["slow"].timeouts == 1
    assert stats.checks["slow"].last_duration_s < 5


@pytest.mark.parametrize("kind", [Probe, LoopProbe])
def test_overlapping_runs_are_skipped_and_a_slow_check_delays_no_other(kind: type[Probe]) -> None:
    slow = kind(Options(name="slow", delay=30, interval=Duration(0.2), timeout=Duration(60)))
    fast = kind(Options(name="fast", interval=Duration(0.05)))
    sched, stored, stats = scheduler(slow, fast)

    def fast_runs() -> int:
        return sum(1 for name, _ in stored if name == "fast")

    run_until(sched, lambda: stats.check("slow").skipped >= 2 and fast_runs() >= 5)
    assert stats.checks["slow"].skipped >= 2 and fast_runs() >= 5  # not within 30 s: blocked
    assert sum(1 for name, _ in stored if name == "slow") == 0  # still running at stop: dropped


def test_a_blocking_run_past_its_timeout_is_reported_and_waited_for() -> None:
    """A thread cannot be cancelled: its timeout is reported when due, its late result
    dropped, and the check runs again once it has ended."""
    slow = Probe(Options(name="slow", delay=0.6, interval=Duration(0.1), timeout=Duration(0.2)))
    sched, stored, stats = scheduler(slow)
    run_until(sched, lambda: len(stored) >= 2)
    assert [samples[0].outcome for _, samples in stored[:2]] == ["timeout", "timeout"]
    assert stats.checks["slow"].timeouts >= 2 and stats.checks["slow"].skipped >= 2
    assert stats.checks["slow"].runs == len(stored)


def test_a_failing_sink_is_counted_and_the_loop_goes_on() -> None:
    stats = AgentStats()
    calls = []

    def sink(_check: object, _samples: object) -> None:
        calls.append(1)
        raise OSError("disk full")

    sched = Scheduler(
        [Probe(Options(name="p", interval=Duration(0.05)))], 1.0, sink, stats, jitter=False
    )
    run_until(sched, lambda: len(calls) >= 3)
    assert len(calls) >= 3
    assert stats.outbox_errors == len(calls)


def test_locked_or_unformatted_volumes_are_skipped_like_cdroms() -> None:
    """BitLocker-locked and unformatted volumes have no file-system type: their usage
    cannot be read, and an error every minute would tell a technician nothing."""
    from agent.checks.host import is_fixed_disk
    from agent.machine import Partition

    def volume(fstype: str, opts: str) -> Partition:
        return Partition(device="D:\\", mountpoint="D:\\", fstype=fstype, opts=opts)

    assert is_fixed_disk(volume("NTFS", "rw,fixed"), windows=True)
    assert not is_fixed_disk(volume("", "rw,fixed"), windows=True)  # locked by BitLocker
    assert not is_fixed_disk(volume("CDFS", "ro,cdrom"), windows=True)
    assert not is_fixed_disk(volume("", "rw"), windows=False)
    assert is_fixed_disk(volume("ext4", "rw"), windows=False)


def test_replace_keeps_unchanged_checks_running_and_swaps_the_others() -> None:
    kept = Probe(Options(name="kept", interval=Duration(0.05)))
    changed = Probe(Options(name="changed", interval=Duration(0.05)))
    removed = Probe(Options(name="removed", interval=Duration(0.05)))
    sched, stored, stats = scheduler(kept, changed, removed)
    swapped: list[tuple[list[str], list[str], int]] = []

    def swap_once() -> None:
        # On the scheduler's thread, as the config follower does.
        if swapped or not all(stats.check(n).runs >= 2 for n in ("kept", "changed", "removed")):
            return
        runs_before = stats.checks["kept"].runs
        retired, started = sched.replace(
            [
                Probe(Options(name="kept", interval=Duration(0.05))),  # equal options
                Probe(Options(name="changed", interval=Duration(0.05), delay=0.01)),
                Probe(Options(name="added", interval=Duration(0.05))),
            ],
            1.0,
        )
        stored.clear()
        swapped.append(([c.name for c in retired], started, runs_before))

    def after_the_swap() -> bool:
        return (
            bool(swapped)
            and stats.check("added").runs >= 2
            and stats.checks["kept"].runs >= swapped[0][2] + 2
        )

    run_until(sched, after_the_swap, between=swap_once)
    retired, started, runs_before = swapped[0]
    assert stats.checks["kept"].runs >= runs_before + 2  # counted on, not started over
    assert sorted(retired) == ["changed", "removed"]
    assert sorted(started) == ["added", "changed"]
    assert [c.name for c in sched.checks] == ["kept", "changed", "added"]
    assert sched.checks[0] is kept  # the same instance runs on
    names = {name for name, _ in stored}
    assert names == {"kept", "changed", "added"}  # nothing from "removed" after the swap
