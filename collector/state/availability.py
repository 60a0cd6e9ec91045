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


_FOREVER = float("inf")


def _merged(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    result: list[tuple[float, float]] = []
    for lo, hi in sorted(spans):
        if result and lo <= result[-1][1]:
            result[-1] = (result[-1][0], max(result[-1][1], hi))
        else:
            result.append((lo, hi))
    return result


def _intersection(
    a: list[tuple[float, float]], b: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    result: list[tuple[float, float]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            result.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return result


def all_down(watchers: Iterable[tuple[Iterable[Outage], float]]) -> tuple[list[Outage], float]:
    """Outages of something several probes watch: down only while every probe says so.

    Each watcher is (its outages, when it began watching). Before a probe began it
    says nothing, so it does not vote "up". Returns the combined outages and when
    the first probe began (``inf`` without watchers).
    """
    combined: list[tuple[float, float]] | None = None
    first = _FOREVER
    for outages, since in watchers:
        first = min(first, since)
        not_up = _merged(
            [(-_FOREVER, since)]
            + [(o.start, _FOREVER if o.end is None else o.end) for o in outages]
        )
        combined = not_up if combined is None else _intersection(combined, not_up)
    spans = [(max(lo, first), hi) for lo, hi in combined or [] if hi > first]
    return [Outage(lo, None if hi == _FOREVER else hi) for lo, hi in spans], first
