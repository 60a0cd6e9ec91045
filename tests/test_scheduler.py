"""The scheduler owns timeouts, overlap, exception capture and counters."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from agent.checks.base import Check, CheckOptions
from agent.configtypes import Duration
from agent.scheduler import Scheduler
from agent.stats import AgentStats
from agent.wire import Sample

#: The scheduler is tested with a check kind of its own ("probe"), not a catalogued one.
pytestmark = pytest.mark.off_catalogue


class Options(CheckOptions, frozen=True, kw_only=True):
    delay: float = 0.0
    explode: bool = False


class Probe(Check[Options]):
    kind: ClassVar[str] = "probe"
    options_type = Options

    async def collect(self) -> list[Sample]:
        await asyncio.sleep(self.options.delay)
        if self.options.explode:
            raise RuntimeError("boom")
        return [self.sample("ok", ts=self.clock(), fields={"x": 1})]


def scheduler(
    *checks: Check[Options],
) -> tuple[Scheduler, list[tuple[str, list[Sample]]], AgentStats]:
    stored: list[tuple[str, list[Sample]]] = []
    stats = AgentStats()
    sched = Scheduler(
        list(checks), 1.0, lambda c, s: stored.append((c.name, s)), stats, jitter=False
    )
    return sched, stored, stats


def test_a_check_that_raises_becomes_an_error_sample() -> None:
    sched, _, stats = scheduler()
    check = Probe(Options(name="bad", explode=True))
    samples = asyncio.run(sched.run_once(check))
    assert samples[0].outcome == "error"
    assert "RuntimeError: boom" in samples[0].error
    assert stats.checks["bad"].errors == 1


def test_a_check_past_its_timeout_becomes_a_timeout_sample() -> None:
    sched, _, stats = scheduler()
    check = Probe(Options(name="slow", delay=5, timeout=Duration(0.2)))
    samples = asyncio.run(sched.run_once(check))
    assert samples[0].outcome == "timeout"
    assert stats.checks["slow"].timeouts == 1
    assert stats.checks["slow"].last_duration_s < 1


def test_overlapping_runs_are_skipped_and_a_slow_check_delays_no_other() -> None:
    slow = Probe(Options(name="slow", delay=1.2, interval=Duration(0.3), timeout=Duration(5)))
    fast = Probe(Options(name="fast", interval=Duration(0.1)))
    sched, stored, stats = scheduler(slow, fast)

    async def go() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.0, stop.set)
        await sched.run(stop)

    asyncio.run(go())
    assert stats.checks["slow"].skipped >= 2
    assert sum(1 for name, _ in stored if name == "fast") >= 5  # ~10 expected; 0 if blocked
    assert sum(1 for name, _ in stored if name == "slow") == 0  # still running at stop: cancelled


def test_a_failing_sink_is_counted_and_the_loop_goes_on() -> None:
    stats = AgentStats()
    calls = []

    def sink(_check: object, _samples: object) -> None:
        calls.append(1)
        raise OSError("disk full")

    sched = Scheduler(
        [Probe(Options(name="p", interval=Duration(0.1)))], 1.0, sink, stats, jitter=False
    )

    async def go() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.45, stop.set)
        await sched.run(stop)

    asyncio.run(go())
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
    kept = Probe(Options(name="kept", interval=Duration(0.1)))
    changed = Probe(Options(name="changed", interval=Duration(0.1)))
    removed = Probe(Options(name="removed", interval=Duration(0.1)))
    sched, stored, stats = scheduler(kept, changed, removed)

    async def scenario() -> tuple[list[str], list[str], int]:
        stop = asyncio.Event()
        running = asyncio.create_task(sched.run(stop))
        await asyncio.sleep(0.35)
        runs_before = stats.checks["kept"].runs
        retired, started = await sched.replace(
            [
                Probe(Options(name="kept", interval=Duration(0.1))),  # equal options
                Probe(Options(name="changed", interval=Duration(0.1), delay=0.01)),
                Probe(Options(name="added", interval=Duration(0.1))),
            ],
            1.0,
        )
        stored.clear()
        await asyncio.sleep(0.35)
        stop.set()
        await running
        assert stats.checks["kept"].runs > runs_before  # counted on, not started over
        return [c.name for c in retired], started, stats.checks["kept"].runs

    retired, started, _ = asyncio.run(scenario())
    assert sorted(retired) == ["changed", "removed"]
    assert sorted(started) == ["added", "changed"]
    assert [c.name for c in sched.checks] == ["kept", "changed", "added"]
    assert sched.checks[0] is kept  # the same instance runs on
    names = {name for name, _ in stored}
    assert names == {"kept", "changed", "added"}  # nothing from "removed" after the swap
