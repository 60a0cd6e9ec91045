"""The agent's own counters, read by the self-metrics check ("agent")."""

from __future__ import annotations

import threading

import msgspec


class OutboxStats(msgspec.Struct, frozen=True):
    """The outbox's size and what it dropped, for the agent's self-metrics."""

    rows: int
    bytes: int
    oldest_created: float | None
    dropped_age: int
    dropped_size: int
    dropped_error: int

    @property
    def dropped(self) -> int:
        return self.dropped_age + self.dropped_size + self.dropped_error


class CheckStats(msgspec.Struct):
    """One check's runs, errors, timeouts and durations since the agent started."""

    runs: int = 0
    errors: int = 0
    timeouts: int = 0
    skipped: int = 0
    last_duration_s: float = 0.0
    max_duration_s: float = 0.0


class PublishStats(msgspec.Struct):
    """The connection to the broker and what went through it since the start."""

    connected: bool = False
    connects: int = 0
    published: int = 0
    acked: int = 0
    resent: int = 0
    """Envelopes sent again because a receipt of the collector passed over them."""
    last_lag_s: float | None = None
    """Collection-to-PUBACK delay of the last acknowledged envelope."""


class AgentStats(msgspec.Struct):
    """What the agent counts about itself; threads update it under ``lock``."""

    checks: dict[str, CheckStats] = msgspec.field(default_factory=dict)
    publish: PublishStats = msgspec.field(default_factory=PublishStats)
    outbox_errors: int = 0
    lock: threading.Lock = msgspec.field(default_factory=threading.Lock)

    def check(self, name: str) -> CheckStats:
        stats = self.checks.get(name)
        if stats is None:
            stats = self.checks[name] = CheckStats()
        return stats
