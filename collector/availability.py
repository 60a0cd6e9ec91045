"""Availability from recorded up/down intervals, exactly (the LibreNMS formula).

availability(window) = (window - sum of down time inside it) / window, where an
outage still open counts up to ``now`` and the window is clipped to when
monitoring of the subject began: time nobody watched is neither up nor down.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Outage:
    start: float
    end: float | None
    """None while the outage is still open."""

    def clipped(self, start: float, end: float) -> tuple[float, float] | None:
        """The part of this outage inside [start, end), or None."""
        lo = max(self.start, start)
        hi = min(self.end if self.end is not None else end, end)
        return (lo, hi) if hi > lo else None


@dataclass(frozen=True)
class Availability:
    window_start: float
    window_end: float
    observed_s: float
    """The part of the window during which the subject was monitored."""
    down_s: float
    outages: int
    """Outages overlapping the window (an outage cut by the window counts once)."""

    @property
    def percent(self) -> float | None:
        """None when nothing was observed in the window (no data is not 100 %)."""
        if self.observed_s <= 0:
            return None
        return 100.0 * (self.observed_s - self.down_s) / self.observed_s


def availability(
    outages: Iterable[Outage], start: float, end: float, monitored_since: float, now: float
) -> Availability:
    """Availability over [start, end), ``end`` capped at ``now``."""
    end = min(end, now)
    observed_start = max(start, monitored_since)
    if end <= observed_start:
        return Availability(start, end, 0.0, 0.0, 0)
    # Merge overlaps so that down time is never counted twice.
    spans = sorted(
        span for outage in outages if (span := outage.clipped(observed_start, end)) is not None
    )
    down = 0.0
    count = 0
    current: tuple[float, float] | None = None
    for lo, hi in spans:
        count += 1
        if current is None or lo > current[1]:
            if current is not None:
                down += current[1] - current[0]
            current = (lo, hi)
        else:
            current = (current[0], max(current[1], hi))
    if current is not None:
        down += current[1] - current[0]
    return Availability(start, end, end - observed_start, down, count)
