"""The store's packed figures: a day of a line in one row, a histogram in one row."""

from __future__ import annotations

import math
import random

from collector.state import packed


def test_a_histogram_counts_what_a_row_per_bucket_counted() -> None:
    rng = random.Random(5)
    histogram, expected = b"", {}
    for _ in range(3000):
        bucket = rng.randrange(0, 256)
        histogram = packed.histogram_add(histogram, bucket)
        expected[bucket] = expected.get(bucket, 0) + 1
    assert packed.histogram_counts(histogram) == expected
    assert list(packed.histogram_counts(histogram)) == sorted(expected)  # kept in order
    assert len(histogram) == 3 * len(expected)
    merged = packed.histogram_merge(histogram, packed.histogram_add(None, 7, 4))
    assert packed.histogram_counts(merged) == expected | {7: expected.get(7, 0) + 4}


def test_a_count_stops_at_its_bound_rather_than_wrap() -> None:
    full = packed.histogram_add(None, 30, 65_530)
    assert packed.histogram_counts(packed.histogram_add(full, 30, 10)) == {30: 65_535}
    assert packed.histogram_counts(packed.histogram_merge(full, full)) == {30: 65_535}


def test_a_line_day_keeps_the_lowest_value_of_each_slot() -> None:
    day = packed.line_lower(None, 0, 20.0)
    day = packed.line_lower(day, 0, 30.0)  # higher: the slot keeps 20
    day = packed.line_lower(day, 287, 1e9)  # beyond half precision: its largest
    day = packed.line_lower(day, 288, 1.0)  # not a slot of the day: nothing
    day = packed.line_lower(day, 5, None)
    day = packed.line_lower(day, 6, math.nan)
    assert len(day) == 2 * packed.LINE_SLOTS
    assert list(packed.line_values(day)) == [(0, 20.0), (287, 65504.0)]
    assert packed.line_lower(day, 0, 19.99) != day
    assert packed.half(18.37) == 18.375 and packed.half(0.1) != 0.1  # 3 significant digits
