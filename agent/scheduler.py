"""Runs checks on their intervals: timeouts, no overlap, exception capture, counters.

Checks only observe; everything about *when* and *what if it misbehaves* is here,
so a slow or broken check never delays the others or stops the agent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from agent.checks.base import Check
from agent.stats import AgentStats
from agent.wire import Sample

log = logging.getLogger(__name__)

Sink = Callable[[Check[Any], list[Sample]], None]


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
        self._runs: set[asyncio.Task[None]] = set()
        self._loops: dict[str, asyncio.Task[None]] = {}

    async def run_once(self, check: Check[Any]) -> list[Sample]:
        """One run of one check, always returning samples: a timeout or a crash is a sample."""
        stats = self.stats.check(check.name)
        started = time.monotonic()
        ts = check.clock()
        try:
            samples = await asyncio.wait_for(check.collect(), check.timeout)
        except TimeoutError:
            stats.timeouts += 1
            log.warning("check %s gave no result within %.0f s", check.name, check.timeout)
            samples = [
                check.sample("timeout", ts=ts, error=f"check took longer than {check.timeout:g}s")
            ]
        except Exception as exc:
            stats.errors += 1
            log.exception("check %s failed", check.name)
            samples = [check.sample("error", ts=ts, error=f"{type(exc).__name__}: {exc}")]
        duration = time.monotonic() - started
        stats.runs += 1
        stats.last_duration_s = duration
        stats.max_duration_s = max(stats.max_duration_s, duration)
        return samples

    async def _run_and_store(self, check: Check[Any]) -> None:
        samples = await self.run_once(check)
        try:
            self.sink(check, samples)
        except Exception:
            self.stats.outbox_errors += 1
            log.exception("could not store the results of %s", check.name)

    async def _loop(self, check: Check[Any]) -> None:
        interval = check.interval(self.agent_interval)
        # Spread the first runs so a room of PCs started together does not pulse the line.
        delay = random.uniform(0, min(interval, 10.0)) if self.jitter else 0.0
        next_due = time.monotonic() + delay
        running: asyncio.Task[None] | None = None
        while True:
            await asyncio.sleep(max(0.0, next_due - time.monotonic()))
            if running is not None and not running.done():
                self.stats.check(check.name).skipped += 1
                log.warning("check %s: previous run has not completed; skipped", check.name)
            else:
                running = asyncio.create_task(self._run_and_store(check), name=check.name)
                self._runs.add(running)
                running.add_done_callback(self._runs.discard)
            next_due += interval
            if next_due < time.monotonic():  # the machine slept: do not run a burst
                next_due = time.monotonic() + interval

    def _start(self, check: Check[Any]) -> None:
        self._loops[check.name] = asyncio.create_task(self._loop(check), name=f"loop:{check.name}")

    async def run(self, stop: asyncio.Event) -> None:
        for check in self.checks:
            self._start(check)
        try:
            await stop.wait()
        finally:
            loops = list(self._loops.values())
            for task in loops:
                task.cancel()
            runs = list(self._runs)
            for task in runs:
                task.cancel()
            await asyncio.gather(*loops, *runs, return_exceptions=True)

    async def replace(
        self, checks: list[Check[Any]], agent_interval: float
    ) -> tuple[list[Check[Any]], list[str]]:
        """Run ``checks`` from now on, without a restart: a check whose kind and options
        are unchanged keeps running on its own rhythm; the others stop (a run under way
        is cancelled) and the new ones start. Returns the checks that stopped (for the
        caller to close) and the names of those started."""
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
            task = self._loops.pop(check.name, None)
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._cancel_runs({check.name for check in retired})
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

    def _cancel_runs(self, names: set[str]) -> None:
        for task in list(self._runs):
            if task.get_name() in names:
                task.cancel()
