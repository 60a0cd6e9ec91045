"""The running agent's health, written for the launcher (``state/health/<version>.json``).

The launcher commits a version on trial only when this says: the broker acknowledged
the birth, every check ran at least once without crashing, the version's own files
still match its manifest, and how much memory and CPU it uses (compared with its
predecessor's own record). Written on a thread of its own, now and then every minute
(every few seconds on trial).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import agent
from agent.machine import this_process
from agent.stats import AgentStats
from agent.update import bundle
from agent.update.state import Health, Home

log = logging.getLogger(__name__)


def version_folder() -> Path:
    """Where the running agent's package was loaded from (``versions/<v>`` under the
    launcher: ``MANIFEST.json`` sits there)."""
    return Path(agent.__file__).resolve().parent.parent


class HealthReporter:
    def __init__(
        self,
        home: Home,
        stats: AgentStats,
        checks: Callable[[], list[str]],
        birth_acked: Callable[[], bool],
        verify_every_s: float = 60.0,
        broker_unreachable: Callable[[], bool] = lambda: False,
    ) -> None:
        self.home = home
        self.stats = stats
        self.checks = checks
        self.birth_acked = birth_acked
        self.broker_unreachable = broker_unreachable
        self.verify_every_s = verify_every_s
        self._process = this_process()  # on Linux /proc: no psutil (1.1 MB) for three figures
        self._files_problem = ""
        self._verified_at = -float("inf")

    def _files(self) -> str:
        now = time.monotonic()
        if now - self._verified_at >= self.verify_every_s:
            self._verified_at = now
            problems = bundle.verify_tree(version_folder())
            self._files_problem = problems[0] if problems else ""
        return self._files_problem

    def measure(self) -> Health:
        names = self.checks()
        with self.stats.lock:
            counters = [self.stats.checks.get(n) for n in names]
            sampled = sum(1 for c in counters if c is not None and c.runs > c.errors)
        rss = self._process.rss()
        cpu = self._process.cpu_seconds()
        age = max(1e-3, time.time() - self._process.started())
        return Health(
            version=agent.__version__,
            pid=os.getpid(),
            ts=time.time(),
            birth_acked=self.birth_acked(),
            checks_total=len(names),
            checks_sampled=sampled,
            files_problem=self._files(),
            rss_bytes=rss,
            cpu_fraction=round(cpu / age, 4),
            broker_unreachable=self.broker_unreachable(),
        )

    def write(self) -> None:
        try:
            self.home.write_health(self.measure())
        except Exception as exc:  # OSError, psutil's on Windows: retried next time
            log.warning("could not write the health file: %s", exc)

    def keep_writing(self, every: Callable[[], float], stopping: threading.Event) -> None:
        """On its thread: the health file now, then every ``every()`` seconds, until
        ``stopping`` is set."""
        while not stopping.is_set():
            self.write()
            stopping.wait(every())
