"""Availability from recorded up/down intervals, exactly (the LibreNMS formula).

availability(window) = (window - sum of down time inside it) / window, where an
outage still open counts up to ``now`` and the window is clipped to when
monitoring of the subject began: time nobody watched is neither up nor down.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
    """The part of the window during which the subject was monitored, less the time
    excluded (maintenance)."""
    down_s: float
    """Down time outside what is excluded."""
    outages: int
    """Outages overlapping the window (an outage cut by the window counts once)."""
    excluded_s: float = 0.0
    """Time excluded from the figures (maintenance) while monitored."""
    excluded_down_s: float = 0.0
    """Down time inside what is excluded: counted by the figure with maintenance."""
    unwatched_s: float = 0.0
    """Time inside the monitored part of the window when nobody was watching (the probe
    silent): neither up nor down, in no figure."""

    @property
    def percent(self) -> float | None:
        """None when nothing was observed in the window (no data is not 100 %)."""
        if self.observed_s <= 0:
            return None
        return 100.0 * (self.observed_s - self.down_s) / self.observed_s

    @property
    def percent_with_maintenance(self) -> float | None:
        """The same window, maintenance counted like any other time."""
        observed = self.observed_s + self.excluded_s
        if observed <= 0:
            return None
        return 100.0 * (observed - self.down_s - self.excluded_down_s) / observed


def availability(
    outages: Iterable[Outage],
    start: float,
    end: float,
    monitored_since: float,
    now: float,
    excluded: Sequence[tuple[float, float]] = (),
    unwatched: Sequence[tuple[float, float]] = (),
) -> Availability:
    """Availability over [start, end), ``end`` capped at ``now``; ``excluded`` spans
    (maintenance) are left out of both the observed and the down time, and so are the
    ``unwatched`` ones (the probe silent), which count in no figure at all."""
    if unwatched:
        return _with_unwatched(outages, start, end, monitored_since, now, excluded, unwatched)
    end = min(end, now)
    observed_start = max(start, monitored_since)
    if end <= observed_start:
        return Availability(start, end, 0.0, 0.0, 0)
    # Clipped inline (this runs for every probe and window of a province's roll-up).
    clipped: list[tuple[float, float]] = []
    in_order = True
    previous_end = -_FOREVER
    for outage in outages:
        lo = outage.start if outage.start > observed_start else observed_start
        hi = end if outage.end is None or outage.end > end else outage.end
        if hi > lo:
            in_order = in_order and lo >= previous_end
            previous_end = hi
            clipped.append((lo, hi))
    # Overlaps merged so down time is never counted twice; one subject's own history
    # (and all_down's) is already in order and disjoint.
    down = clipped if in_order else merged(clipped)
    down_s = sum(hi - lo for lo, hi in down)
    if not excluded:
        return Availability(start, end, end - observed_start, down_s, len(clipped))
    out = merged(
        (max(lo, observed_start), min(hi, end)) for lo, hi in excluded if hi > observed_start
    )
    out = [(lo, hi) for lo, hi in out if hi > lo]
    out_s = sum(hi - lo for lo, hi in out)
    down_out = sum(hi - lo for lo, hi in _intersection(down, out))
    return Availability(
        start,
        end,
        end - observed_start - out_s,
        down_s - down_out,
        len(clipped),
        excluded_s=out_s,
        excluded_down_s=down_out,
    )


_FOREVER = float("inf")


def _with_unwatched(
    outages: Iterable[Outage],
    start: float,
    end: float,
    monitored_since: float,
    now: float,
    excluded: Sequence[tuple[float, float]],
    unwatched: Sequence[tuple[float, float]],
) -> Availability:
    """Both kinds of time left out at once (never twice where they overlap); what is
    unwatched is then taken back out of the excluded figures."""
    found = list(outages)
    both = availability(found, start, end, monitored_since, now, [*excluded, *unwatched])
    silent = availability(found, start, end, monitored_since, now, unwatched)
    return Availability(
        both.window_start,
        both.window_end,
        both.observed_s,
        both.down_s,
        both.outages,
        excluded_s=both.excluded_s - silent.excluded_s,
        excluded_down_s=both.excluded_down_s - silent.excluded_down_s,
        unwatched_s=silent.excluded_s,
    )


def merged(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Spans sorted, empty ones dropped, merged where they overlap or touch."""
    result: list[tuple[float, float]] = []
    for lo, hi in sorted(spans):
        if hi <= lo:
            continue
        if result and lo <= result[-1][1]:
            result[-1] = (result[-1][0], max(result[-1][1], hi))
        else:
            result.append((lo, hi))
    return result


def overlap(
    a: list[tuple[float, float]], b: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The time in both (each sorted and disjoint, as ``merged`` gives them)."""
    return _intersection(a, b)


def _intersection(
    a: list[tuple[float, float]], b: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Both lists sorted and disjoint; written for speed (50 probes of each commune)."""
    result: list[tuple[float, float]] = []
    append = result.append
    i = j = 0
    count_a, count_b = len(a), len(b)
    while i < count_a and j < count_b:
        a_lo, a_hi = a[i]
        b_lo, b_hi = b[j]
        lo = a_lo if a_lo > b_lo else b_lo
        hi = a_hi if a_hi < b_hi else b_hi
        if hi > lo:
            append((lo, hi))
        if a_hi < b_hi:
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
        not_up = merged(
            [(-_FOREVER, since)]
            + [(o.start, _FOREVER if o.end is None else o.end) for o in outages]
        )
        combined = not_up if combined is None else _intersection(combined, not_up)
    spans = [(max(lo, first), hi) for lo, hi in combined or [] if hi > first]
    return [Outage(lo, None if hi == _FOREVER else hi) for lo, hi in spans], first
