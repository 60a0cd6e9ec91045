"""agent: the agent's own health — outbox depth, drops, check errors and durations, publish lag.

Built in (not configured): every agent reports it at ``[agent].interval``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

from agent import __version__
from agent.checks.base import BlockingCheck, CheckOptions
from agent.machine import this_process
from agent.stats import AgentStats, OutboxStats
from agent.wire import Sample


class SelfOptions(CheckOptions, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class SelfMetricsCheck(BlockingCheck[SelfOptions]):
    kind: ClassVar[str] = "agent"
    default_timeout = 10.0

    def __init__(
        self,
        stats: AgentStats,
        outbox_stats: Callable[[], OutboxStats] | None,
        clock: Callable[[], float] = time.time,
        extra: Callable[[], dict[str, float | int | bool | str | None]] | None = None,
    ) -> None:
        super().__init__(SelfOptions(name="agent"), clock)
        self.stats = stats
        self.extra = extra
        """More fields of the agent's own (the collector's config it runs)."""
        self.outbox_stats = outbox_stats
        self._process = this_process()
        self._process.cpu_percent()
        # The outbox's drop counter survives restarts; what it held at start was
        # reported before. Each sample tells the drops new since the previous one, so a
        # rule can fire on "data was lost" without remembering counters.
        self._dropped_reported = outbox_stats().dropped if outbox_stats is not None else 0

    def collect(self) -> list[Sample]:
        now = self.clock()
        with self.stats.lock:
            publish = self.stats.publish
            fields: dict[str, float | int | bool | str | None] = {
                "version": __version__,
                "connected": publish.connected,
                "connects": publish.connects,
                "published": publish.published,
                "acked": publish.acked,
                "publish_lag_s": publish.last_lag_s,
                "outbox_errors": self.stats.outbox_errors,
            }
        if self.outbox_stats is not None:
            outbox = self.outbox_stats()
            fields.update(
                outbox_rows=outbox.rows,
                outbox_bytes=outbox.bytes,
                outbox_oldest_age_s=None
                if outbox.oldest_created is None
                else max(0.0, now - outbox.oldest_created),
                dropped_envelopes=outbox.dropped,
                # A new (replaced) outbox starts counting at 0 again.
                dropped_new=max(0, outbox.dropped - self._dropped_reported),
                dropped_age=outbox.dropped_age,
                dropped_size=outbox.dropped_size,
                dropped_error=outbox.dropped_error,
            )
            self._dropped_reported = outbox.dropped
        if self.extra is not None:
            fields.update(self.extra())
        fields.update(rss_bytes=self._process.rss(), cpu_percent=self._process.cpu_percent())
        samples = [self.sample("ok", ts=now, fields=fields)]
        # The scheduler's thread counts on meanwhile: a copy (one step under the GIL).
        for name, check in sorted(dict(self.stats.checks).items()):
            samples.append(
                self.sample(
                    "ok",
                    ts=now,
                    item="check",
                    target=name,
                    fields={
                        "runs": check.runs,
                        "errors": check.errors,
                        "timeouts": check.timeouts,
                        "skipped": check.skipped,
                        "duration_s": check.last_duration_s,
                        "max_duration_s": check.max_duration_s,
                    },
                )
            )
        return samples
