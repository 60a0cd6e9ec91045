"""What the time-series server accepted lately, kept until it has surely flushed it.

VictoriaMetrics holds what it accepted in memory for up to 5 s; a kill -9 or a power
cut loses it. The sink (collector/outputs/sink.py) keeps each batch it wrote here, and
its rows in the spool, for ``REPLAY_S``, and writes them all again when the server may
have lost them. Three bounds hold what is kept: ``REPLAY_ENVELOPES`` and
``REPLAY_SPOOL_BYTES`` (the spool's disk) and ``REPLAY_BYTES`` (the sink's memory: the
older batches' lines are read back from the spool instead). A batch is never forgotten
before ``FLUSH_S``, whatever the first two say: over them (by a batch or so), the sink
waits (``full``) rather than forget what the server may still hold, while the server
answers its ``/ping``; when it does not, the sink writes on and forgets only what a
later write found the server alive ``FLUSH_S`` after.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

#: Batches written this recently are written again when the server may have lost them:
#: longer than VictoriaMetrics' in-memory flush interval (5 s by default), with room.
REPLAY_S = 15.0
#: Never forgotten sooner, whatever the bounds: the server's flush and a margin.
FLUSH_S = 6.0
#: Kept beyond FLUSH_S only up to these (REPLAY_S at 26,000 envelopes a second, three
#: times the country's rate; a faster drain waits for FLUSH_S instead).
REPLAY_ENVELOPES = 400_000
REPLAY_SPOOL_BYTES = 256 << 20
#: The newest batches' line protocol held in memory up to this many bytes; the older
#: ones are read from the spool again when written again.
REPLAY_BYTES = 16 << 20

Lines = list[tuple[int, bytes]]
"""(spool row id, a payload's line protocol), as the sink writes them."""


class Written:
    """A batch the server accepted: its spool rows, and its lines while held."""

    __slots__ = ("at", "envelopes", "first_row", "last_row", "lines", "rejected", "size",
                 "spool_bytes")  # fmt: skip

    def __init__(
        self, at: float, rows: tuple[int, int], envelopes: int, spool_bytes: int,
        lines: Lines | None, rejected: frozenset[bytes] = frozenset(),
    ) -> None:  # fmt: skip
        self.at = at
        """When written (monotonic), or written again."""
        self.first_row, self.last_row = rows
        self.envelopes, self.spool_bytes = envelopes, spool_bytes
        self.lines = lines
        """None: left in the spool (``REPLAY_BYTES``)."""
        self.size = sum(len(line) for _, line in lines) if lines is not None else 0
        self.rejected = rejected
        """Lines the server refused as bad data (dropped, counted once): never sent again."""


class Recent:
    """The batches written lately, oldest first."""

    def __init__(self) -> None:
        self._batches: collections.deque[Written] = collections.deque()
        self._held: collections.deque[Written] = collections.deque()
        """Those whose lines are in memory, oldest first (the newest always)."""
        self.envelopes = 0
        self.spool_bytes = 0
        self.held_bytes = 0

    def __bool__(self) -> bool:
        return bool(self._batches)

    def __iter__(self) -> Iterator[Written]:
        return iter(list(self._batches))

    def keep(self, written: Written) -> None:
        self._batches.append(written)
        self.envelopes += written.envelopes
        self.spool_bytes += written.spool_bytes
        if written.lines is not None:
            self._held.append(written)
            self.held_bytes += written.size
        while self.held_bytes > REPLAY_BYTES and len(self._held) > 1:
            older = self._held.popleft()  # its lines left to the spool
            self.held_bytes -= older.size
            older.lines, older.size = None, 0

    def _over(self) -> bool:
        return self.envelopes > REPLAY_ENVELOPES or self.spool_bytes > REPLAY_SPOOL_BYTES

    def prune(self, now: float) -> int:
        """Forget what is past the server's flush: older than ``REPLAY_S``, or over the
        bounds and older than ``FLUSH_S``. The last spool row forgotten (0: none)."""
        forgotten = 0
        while self._batches:
            oldest = self._batches[0]
            if oldest.at >= now - REPLAY_S and not (self._over() and oldest.at < now - FLUSH_S):
                break
            self._batches.popleft()
            if self._held and self._held[0] is oldest:
                self._held.popleft()
                self.held_bytes -= oldest.size
            self.envelopes -= oldest.envelopes
            self.spool_bytes -= oldest.spool_bytes
            forgotten = oldest.last_row
        return forgotten

    def full(self) -> bool:
        """Over the bounds with nothing to forget yet: write nothing new until there is."""
        return self._over()

    def touch(self, now: float) -> None:
        """All written again: each kept ``REPLAY_S`` from now."""
        for written in self._batches:
            written.at = now
