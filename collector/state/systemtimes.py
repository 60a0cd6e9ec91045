"""Response times of the shared systems, kept as histograms a month's percentiles come from.

Every commune probes every system each interval: keeping each answer's time would be
millions of rows a month. Each answer goes instead into a bucket of a logarithmic
scale (a quarter of a doubling: 19 % wide, so a percentile read back is within
±9.1 % of the truth), counted per probe and hour for the last two days and per
probe and day (Vietnam's) for as long as the outages are kept. The median and
95th percentile of any set of probes over any hours or days add their counts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping

#: Buckets per doubling of the time.
STEPS = 4
#: The longest time kept (10 minutes; longer than any probe's timeout).
MAX_MS = 600_000.0
HOUR_S = 3600
DAY_S = 86400
#: Vietnam keeps +07:00 all year: its days start at 17:00 UTC.
VIETNAM_OFFSET_S = 7 * HOUR_S
#: Hourly counts are kept this long (the last 24 hours' figures).
HOURLY_KEEP_S = 2 * DAY_S


def bucket_of(ms: float) -> int:
    """The bucket of a time in milliseconds (below 1 ms: bucket 0, as 1 ms)."""
    if not ms > 1.0:  # also NaN
        return 0
    return int(math.log2(min(ms, MAX_MS)) * STEPS)


def value_of(bucket: int) -> float:
    """The time a bucket stands for: its geometric middle."""
    return float(2.0 ** ((bucket + 0.5) / STEPS))


def hour_of(ts: float) -> int:
    return int(ts // HOUR_S)


def day_of(ts: float) -> int:
    """The day in Vietnam's time a moment falls in, as a number."""
    return int((ts + VIETNAM_OFFSET_S) // DAY_S)


def day_start(day: int) -> float:
    return float(day * DAY_S - VIETNAM_OFFSET_S)


def merged_counts(histograms: Iterable[Mapping[int, int]]) -> Counter[int]:
    total: Counter[int] = Counter()
    for histogram in histograms:
        total.update(histogram)
    return total


def percentile(counts: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0 < q <= 1) of the times counted; None without any."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return round(value_of(bucket), 1)
    return round(value_of(max(counts)), 1)
