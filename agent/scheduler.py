"""Runs checks on their intervals: timeouts, no overlap, exception capture, counters.

Checks only observe; everything about *when* and *what if it misbehaves* is here,
so a slow or broken check never delays the others or stops the agent.

The thread that calls ``run`` keeps the rhythms and stores every result; each run
happens elsewhere: a blocking check's on a thread of its own, which ends with it, an
async check's on the agent's event loop (agent/eventloop.py, started with the first
such check). A blocking run past its timeout is reported as a timeout and abandoned:
a thread cannot be cancelled, so its late result is dropped, and the check's next run
waits for it to end (counted as skipped meanwhile); a blocking check bounds its own
reads with timeouts shorter than the run's.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.checks.base import AsyncCheck, BlockingCheck, Check
from agent.stats import AgentStats
from agent.wakeup import Wakeup
from agent.wire import Sample

if TYPE_CHECKING:
    from concurrent.futures import Future

log = logging.getLogger(__name__)

Sink = Callable[[Check[Any], list[Sample]], None]


class Run:
    """One run of one check, from its start until the scheduler has its samples."""

    __slots__ = ("abandoned", "check", "deadline", "done", "failure", "future", "samples",
                 "started", "timed_out", "ts")  # fmt: skip

    def __init__(self, check: Check[Any]) -> None:
        self.check = check
        self.ts = check.clock()
        self.started = time.monotonic()
        self.deadline = self.started + check.timeout
        self.samples: list[Sample] = []
        self.failure: BaseException | None = None
        self.timed_out = False
        self.done = False
        """Set by the run's thread (or the loop) once its outcome above is in place."""
        self.abandoned = False
        """Its outcome no longer wanted: timed out, its check stopped, the agent stopping."""
        self.future: Future[None] | None = None
        """An async run's, to cancel it."""


class Rhythm:
    """One check's schedule: when it is due next and its run under way."""

    __slots__ = ("check", "interval", "next_due", "running")

    def __init__(self, check: Check[Any], interval: float, first_due: float) -> None:
        self.check = check
        self.interval = interval
        self.next_due = first_due
        self.running: Run | None = None


class Scheduler:
    def __init__(
        self,
        checks: list[Check[Any]],
        agent_interval: float,
        sink: Sink,
        stats: AgentStats,
        jitter: bool = True,
    ) -> None:
        self.checks = checks
        self.agent_interval = agent_interval
        self.sink = sink
        self.stats = stats
        self.jitter = jitter
        self._rhythms: dict[str, Rhythm] = {}
        self._finished: collections.deque[Run] = collections.deque()
        self._wakeup: Wakeup | None = None

    # The runs, on their threads or the loop.

    def _begin(self, check: Check[Any], finished: Callable[[Run], None]) -> Run:
        run = Run(check)
        if isinstance(check, AsyncCheck):
            from agent.eventloop import loop_thread

            run.future = loop_thread().submit(_run_async(check, run, finished))
        elif isinstance(check, BlockingCheck):
            threading.Thread(
                target=_run_blocking, args=(check, run, finished), name=f"run:{check.name}",
                daemon=True,
            ).start()  # fmt: skip
        else:
            raise TypeError(f"{type(check).__name__} is neither a blocking nor an async check")
        return run

    def _settle(self, run: Run) -> list[Sample]:
        """The samples of a run that ended or timed out, counted in the check's stats."""
        check = run.check
        stats = self.stats.check(check.name)
        if run.timed_out or not run.done:
            stats.timeouts += 1
            log.warning("check %s gave no result within %.0f s", check.name, check.timeout)
            samples = [
                check.sample(
                    "timeout", ts=run.ts, error=f"check took longer than {check.timeout:g}s"
                )
            ]
        elif run.failure is not None:
            stats.errors += 1
            failure = run.failure
            samples = [
                check.sample("error", ts=run.ts, error=f"{type(failure).__name__}: {failure}")
            ]
        else:
            samples = run.samples
        duration = time.monotonic() - run.started
        stats.runs += 1
        stats.last_duration_s = duration
        stats.max_duration_s = max(stats.max_duration_s, duration)
        return samples

    def run_all_once(self, checks: list[Check[Any]]) -> list[list[Sample]]:
        """One run of each check, at once, until each has samples: a timeout or a crash
        is a sample."""
        ended = threading.Condition()

        def finished(_run: Run) -> None:
            with ended:
                ended.notify_all()

        runs = [self._begin(check, finished) for check in checks]
        with ended:
            for run in runs:
                ended.wait_for(_done(run), timeout=max(0.0, _wait_until(run) - time.monotonic()))
        for run in runs:
            if not run.done:
                run.abandoned = True
                if run.future is not None:
                    run.future.cancel()
        return [self._settle(run) for run in runs]

    def run_once(self, check: Check[Any]) -> list[Sample]:
        """One run of one check, always returning samples: a timeout or a crash is a sample."""
        return self.run_all_once([check])[0]

    # The rhythms, on the thread that calls ``run``.

    def _start(self, check: Check[Any]) -> None:
        interval = check.interval(self.agent_interval)
        # Spread the first runs so a room of PCs started together does not pulse the line.
        delay = random.uniform(0, min(interval, 10.0)) if self.jitter else 0.0
        self._rhythms[check.name] = Rhythm(check, interval, time.monotonic() + delay)

    def _store(self, run: Run) -> None:
        samples = self._settle(run)
        try:
            self.sink(run.check, samples)
        except Exception:
            self.stats.outbox_errors += 1
            log.exception("could not store the results of %s", run.check.name)

    def _ended(self, run: Run) -> None:
        """From the run's thread or the loop."""
        self._finished.append(run)
        if self._wakeup is not None:
            self._wakeup.wake()

    def _turn(self) -> float:
        """Store what ended, time out what is late, start what is due; the time until
        something is due again."""
        while self._finished:
            run = self._finished.popleft()
            rhythm = self._rhythms.get(run.check.name)
            if rhythm is not None and rhythm.running is run:
                rhythm.running = None
            if not run.abandoned:
                self._store(run)
        now = time.monotonic()
        soonest = now + 3600.0
        for rhythm in list(self._rhythms.values()):
            running = rhythm.running
            if running is not None and not running.done and running.future is None:
                if now >= running.deadline:
                    running.abandoned = True  # its thread ends on its own; its result is dropped
                    self._store(running)
                else:
                    soonest = min(soonest, running.deadline)
            if now >= rhythm.next_due:
                # Ended but not yet stored (it is, above, next time): not in the way.
                if running is not None and not running.done:
                    self.stats.check(rhythm.check.name).skipped += 1
                    log.warning(
                        "check %s: previous run has not completed; skipped", rhythm.check.name
                    )
                else:
                    rhythm.running = self._begin(rhythm.check, self._ended)
                rhythm.next_due += rhythm.interval
                if rhythm.next_due < now:  # the machine slept: do not run a burst
                    rhythm.next_due = now + rhythm.interval
            soonest = min(soonest, rhythm.next_due)
        return soonest - time.monotonic()

    def run(self, stop: Wakeup, between: Callable[[], None] | None = None) -> None:
        """Run the checks until ``stop`` is stopped; ``between``: called on this thread
        each time it wakes (the config follower applies a new config there)."""
        self._wakeup = stop
        for check in self.checks:
            self._start(check)
        try:
            while not stop.stopped:
                if between is not None:
                    between()
                stop.sleep(self._turn())
        finally:
            self._wakeup = None
            for rhythm in self._rhythms.values():
                self._abandon(rhythm)
            self._rhythms.clear()
            self._finished.clear()

    @staticmethod
    def _abandon(rhythm: Rhythm) -> None:
        running = rhythm.running
        if running is not None:
            running.abandoned = True
            if running.future is not None:
                running.future.cancel()

    def replace(
        self, checks: list[Check[Any]], agent_interval: float
    ) -> tuple[list[Check[Any]], list[str]]:
        """Run ``checks`` from now on, without a restart (on ``run``'s thread): a check whose
        kind and options are unchanged keeps running on its own rhythm; the others stop (a
        run under way is abandoned) and the new ones start. Returns the checks that stopped
        (for the caller to close) and the names of those started."""
        interval_changed = agent_interval != self.agent_interval
        self.agent_interval = agent_interval
        old = {check.name: check for check in self.checks}
        kept: list[Check[Any]] = []
        started: list[Check[Any]] = []
        retired: list[Check[Any]] = []
        for check in checks:
            previous = old.pop(check.name, None)
            if previous is not None and self._unchanged(previous, check, interval_changed):
                kept.append(previous)
                continue
            started.append(check)
            if previous is not None:
                retired.append(previous)
        retired.extend(old.values())
        for check in retired:
            rhythm = self._rhythms.pop(check.name, None)
            if rhythm is not None:
                self._abandon(rhythm)
        self.checks = kept + started
        for check in started:
            self._start(check)
        # A check that only changed rhythm (the same instance) runs on: not to be closed.
        retired = [check for check in retired if all(check is not c for c in started)]
        return retired, [check.name for check in started]

    @staticmethod
    def _unchanged(previous: Check[Any], check: Check[Any], interval_changed: bool) -> bool:
        return (
            type(previous) is type(check)
            and previous.options == check.options
            # A check that follows [agent].interval starts over on the new one.
            and not (interval_changed and check.interval(0.0) == 0.0)
        )


def _done(run: Run) -> Callable[[], bool]:
    return lambda: run.done


def _wait_until(run: Run) -> float:
    """An async run times itself out on the loop: a little longer for its own sample."""
    return run.deadline + (5.0 if run.future is not None else 0.0)


def _run_blocking(check: BlockingCheck[Any], run: Run, finished: Callable[[Run], None]) -> None:
    try:
        run.samples = check.collect()
    except Exception as exc:
        run.failure = exc
        if not run.abandoned:
            log.exception("check %s failed", check.name)
    run.done = True
    finished(run)


async def _run_async(check: AsyncCheck[Any], run: Run, finished: Callable[[Run], None]) -> None:
    import asyncio  # the loop this runs on loaded it

    try:
        run.samples = await asyncio.wait_for(check.collect(), check.timeout)
    except TimeoutError:
        run.timed_out = True
    except Exception as exc:
        run.failure = exc
        log.exception("check %s failed", check.name)
    finally:
        # Cancelled (its check stopped, the agent stopping): abandoned, nobody waits.
        run.done = True
        finished(run)
