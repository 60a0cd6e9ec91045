"""Compact encodings of the store's figures over time, and the SQL functions that write them.

A national collector (3,321 communes) would otherwise keep one row per value:

- a commune's line (RTT and loss, the best probe per 5 minutes): 956,448 rows a day
  for each. One row per commune and day holds instead the day's 288 values of each as
  half-precision floats (``line_*``): 3 significant digits (18.37 ms reads 18.38),
  NaN where nothing was measured;
- a shared system's response times, one row per histogram bucket a probe answered in,
  per hour and per day: one row per probe and hour (and day) holds instead its
  ``(bucket, count)`` pairs, 3 bytes each (``histogram_*``); a count stops at 65,535
  (a probe answering every 1.3 s all day long).

The store registers these functions on its connection (``register``) before it
migrates: a shipped migration calls some of them, so none ever changes meaning.
"""

from __future__ import annotations

import math
import sqlite3
import struct
from collections.abc import Iterator
from typing import Any, cast

#: A commune's line history keeps one value per this many seconds (the best of them).
SLOT_S = 300
DAY_S = 86400
LINE_SLOTS = DAY_S // SLOT_S
_HALF = struct.Struct("<e")
_HALF_MAX = 65504.0
#: A day with nothing measured yet: every slot NaN.
EMPTY_DAY = _HALF.pack(math.nan) * LINE_SLOTS
_PAIR = struct.Struct("<BH")
_COUNT = struct.Struct("<H")
_COUNT_MAX = 0xFFFF


def half(value: float) -> float:
    """``value`` as the line history keeps it (half precision, at most 65,504)."""
    return float(_HALF.unpack(_HALF.pack(min(value, _HALF_MAX)))[0])


def line_lower(day: bytes | None, slot: int, value: float | None) -> bytes:
    """The day's values with ``slot`` lowered to ``value`` (set where it was empty); the
    day unchanged for a ``value`` of None or a slot outside the day."""
    values = day if day is not None and len(day) == len(EMPTY_DAY) else EMPTY_DAY
    if value is None or not 0 <= slot < LINE_SLOTS or math.isnan(value):
        return values
    offset = 2 * slot
    (held,) = _HALF.unpack_from(values, offset)
    new = half(value)
    if not math.isnan(held) and held <= new:
        return values
    return values[:offset] + _HALF.pack(new) + values[offset + 2 :]


def line_values(day: bytes | None) -> Iterator[tuple[int, float]]:
    """(slot, value) of the slots measured, in order."""
    if not day:
        return
    for slot, (value,) in enumerate(_HALF.iter_unpack(day)):
        if not math.isnan(value):
            yield slot, float(value)


class LineGather:
    """Aggregate: (slot, value) rows into a day, the lowest value per slot."""

    def __init__(self) -> None:
        self.day = EMPTY_DAY

    def step(self, slot: int, value: float | None) -> None:
        self.day = line_lower(self.day, slot, value)

    def finalize(self) -> bytes:
        return self.day


def histogram_counts(packed: bytes | None) -> dict[int, int]:
    """Bucket -> answers."""
    if not packed:
        return {}
    return {bucket: count for bucket, count in _PAIR.iter_unpack(packed)}


def _pack(counts: dict[int, int]) -> bytes:
    return b"".join(
        _PAIR.pack(bucket, min(count, _COUNT_MAX)) for bucket, count in sorted(counts.items())
    )


def histogram_add(packed: bytes | None, bucket: int, count: int = 1) -> bytes:
    """The histogram with ``count`` more answers in ``bucket`` (0-255)."""
    # Every answer of every probe comes here: the pairs are walked in place.
    held = packed or b""
    for offset in range(0, len(held), _PAIR.size):
        found = held[offset]
        if found == bucket:
            (before,) = _COUNT.unpack_from(held, offset + 1)
            count = min(before + count, _COUNT_MAX)
            return held[: offset + 1] + _COUNT.pack(count) + held[offset + _PAIR.size :]
        if found > bucket:
            return held[:offset] + _PAIR.pack(bucket, min(count, _COUNT_MAX)) + held[offset:]
    return held + _PAIR.pack(bucket, min(count, _COUNT_MAX))


def histogram_merge(first: bytes | None, second: bytes | None) -> bytes:
    counts = histogram_counts(first)
    for bucket, count in histogram_counts(second).items():
        counts[bucket] = counts.get(bucket, 0) + count
    return _pack(counts)


class HistogramGather:
    """Aggregate: (bucket, count) rows into one histogram."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def step(self, bucket: int, count: int) -> None:
        self.counts[bucket] = self.counts.get(bucket, 0) + count

    def finalize(self) -> bytes:
        return _pack(self.counts)


def register(db: sqlite3.Connection) -> None:
    """The functions the store's statements and migrations call, on this connection."""
    db.create_function("line_lower", 3, line_lower, deterministic=True)
    db.create_function("histogram_add", 3, histogram_add, deterministic=True)
    db.create_function("histogram_merge", 2, histogram_merge, deterministic=True)
    # typeshed knows aggregates of one argument only.
    db.create_aggregate("line_gather", 2, cast(Any, LineGather))
    db.create_aggregate("histogram_gather", 2, cast(Any, HistogramGather))
