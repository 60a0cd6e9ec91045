"""Housekeeping: the periodic work that keeps the state true and small.

Each round runs the tasks that are due, each on its own: one that fails is logged
once, shown by ``/healthz`` (``housekeeping_<name>: failing``) and tried again the
next round, and it does not keep the others from running. The store's own tasks
(agents gone silent, retention) are here; the composition root adds the others'
(alert timers, restarting the sink) as plain callables, so this module depends
on nothing above the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from collector.state import audit
from collector.state.store import StateStore

log = logging.getLogger("collector.housekeeping")


@dataclass(frozen=True)
class Task:
    name: str
    work: Callable[[float], object]
    """Called with the time (Unix seconds) of the round."""
    every_s: float = 0.0
    """At most this often (monotonic seconds); 0: every round."""


class Housekeeping:
    def __init__(
        self, tasks: Sequence[Task], monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"housekeeping tasks named twice: {names}")
        self.tasks = list(tasks)
        self.monotonic = monotonic
        self._due = dict.fromkeys(names, 0.0)
        self.failing: set[str] = set()

    def run(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for task in self.tasks:
            if self.monotonic() < self._due[task.name]:
                continue
            try:
                task.work(now)
            except Exception:
                if task.name not in self.failing:
                    log.exception("%s failed; trying again at the next round", task.name)
                self.failing.add(task.name)
            else:
                self.failing.discard(task.name)
            if task.every_s:
                self._due[task.name] = self.monotonic() + task.every_s


def mark_silent(
    store: StateStore, offline_after: float, default_interval: float
) -> Callable[[float], object]:
    """Agents silent for ``offline_after`` of their intervals go offline."""

    def work(now: float) -> None:
        silent = store.mark_silent(now, offline_after, default_interval)
        if silent:
            log.info("%d agents silent, marked offline: %s", len(silent), ", ".join(silent[:10]))

    return work


def retention(
    store: StateStore,
    keep_s: float,
    forget_agents_after_s: float,
    max_alerts: int | None = None,
) -> Callable[[float], object]:
    """History older than ``keep_s`` (outages, alerts, the operators' audit: see
    ``StateStore.prune``) and agents gone longer than the other bound go; resolved
    alerts beyond the newest ``max_alerts`` too."""

    def work(now: float) -> None:
        pruned = store.prune(now - keep_s, max_alerts)
        if pruned:
            log.info("forgot %d outages older than the retention", pruned)
        audited = audit.prune(store, now - keep_s)
        if audited:
            log.info("forgot %d audit rows older than the retention", audited)
        gone = store.forget_agents(now - forget_agents_after_s)
        if gone:
            log.info("forgot %d agents gone for good: %s", len(gone), ", ".join(gone[:10]))

    return work
