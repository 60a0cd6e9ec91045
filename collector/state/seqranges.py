"""Which of an agent's envelopes the store has applied, by seq, in a few ranges.

A redelivered envelope (the collector killed between commit and acknowledge, the
outbox sending again after a lost PUBACK) changes no state, but spooled again it
would be written to the time-series server twice, and VictoriaMetrics keeps both
copies of a point unless deduplication is configured. So the store remembers, per
agent, the seqs it has applied as ranges (``agents.seqs``, ``"lo-hi lo-hi"``):
an agent's envelopes arrive in order, so this is one range, extended by each
envelope; a gap (envelopes the outbox dropped by its bounds) starts another. Only
the newest ``MAX_RANGES`` are kept: a seq older than all of them is taken as new
(written twice at worst, never lost).
"""

from __future__ import annotations

import bisect

#: Ranges kept per agent: each gap in an agent's seqs (an outbox bound) adds one.
MAX_RANGES = 16


def _start(span: list[int]) -> int:
    return span[0]


class SeqRanges:
    def __init__(self, ranges: list[list[int]]) -> None:
        self.ranges = ranges
        """Disjoint, not adjacent, ascending [lo, hi] (both included)."""

    @classmethod
    def parse(cls, text: str) -> SeqRanges:
        ranges: list[list[int]] = []
        for part in text.split():
            lo, _, hi = part.partition("-")
            ranges.append([int(lo), int(hi)])
        return cls(ranges)

    def text(self) -> str:
        return " ".join(f"{lo}-{hi}" for lo, hi in self.ranges)

    def gap_end(self, seq: int) -> int | None:
        """The first seq applied after ``seq`` when ``seq`` fills a gap (an envelope sent
        again after later ones); None for the newest, or one applied already.

        Two envelopes of one gap have the same end: nothing between them came in order,
        so a subject's samples in them are consecutive (collector/state/latesamples.py).
        """
        ranges = self.ranges
        if not ranges or seq > ranges[-1][1]:
            return None
        at = bisect.bisect_right(ranges, seq, key=_start)
        if at and ranges[at - 1][1] >= seq:
            return None
        return ranges[at][0]

    def add(self, seq: int) -> bool:
        """Record ``seq`` as applied; False when it was applied already."""
        ranges = self.ranges
        if ranges:
            last = ranges[-1]
            if seq == last[1] + 1:  # the common case: the next envelope
                last[1] = seq
                return True
            if last[0] <= seq <= last[1]:
                return False
        at = bisect.bisect_right(ranges, seq, key=_start)
        # ranges[at - 1] starts at or before seq; ranges[at] starts after it.
        if at and ranges[at - 1][1] >= seq:
            return False
        joins_left = at > 0 and ranges[at - 1][1] == seq - 1
        joins_right = at < len(ranges) and ranges[at][0] == seq + 1
        if joins_left and joins_right:
            ranges[at - 1][1] = ranges[at][1]
            del ranges[at]
        elif joins_left:
            ranges[at - 1][1] = seq
        elif joins_right:
            ranges[at][0] = seq
        else:
            ranges.insert(at, [seq, seq])
            if len(ranges) > MAX_RANGES:
                del ranges[0]
        return True
