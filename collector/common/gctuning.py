"""The garbage collector's pace for a process that ingests.

Ingest makes and drops thousands of containers a second (envelopes, samples, their
dicts), nearly all freed at once by their reference counts: a young collection every
700 of them (Python's default) cost ~4 us a message at the national rate, every
20,000 under 1 us. The older generations keep their defaults: what start builds is
frozen out of every pass once warm (``gc.freeze`` in the collector's start).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

YOUNG_THRESHOLD = 20_000
"""Allocations between two young collections (700 by default)."""


def pace_for_ingest() -> None:
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])


#: ``FreezeAsItAges``: a full collection as soon as what is frozen has grown by this much
#: since the last one (cyclic garbage frozen with the rest waits for it: what it may hold
#: is bounded by this)...
FULL_GROWTH = 1.25
#: ...and at least this often. It walks everything (for the country, the millions of
#: objects warming built as well): most of a second or more, so rarely.
FULL_EVERY_S = 86400.0
#: How often the growth is looked at: counting what is frozen walks all of it (Python
#: keeps no count: 55 ms for 1.2 million objects), with every other thread waiting.
GROWTH_CHECKED_EVERY_S = 600.0


class FreezeAsItAges:
    """Keeps the garbage collector's passes short in a process that holds a large model
    it keeps replacing: the read process's health model.

    Freezing what start built is not enough there: under the country's ingest every
    held sample is replaced within a minute or two, and each new one survives. With
    young collections every 20,000 allocations (``pace_for_ingest``) the middle
    generation's passes walked up to a few hundred thousand of them (140-160 ms on a
    slow machine), and the full collections, whenever a quarter more had reached the
    oldest generation, walked them all: 130,000 objects for 300 communes, so about 1.4
    million for the country (500,000 held samples alone took a full pass 114 ms there),
    during which no request is answered.

    ``step``, every second or so, collects the young generations and freezes what
    survived them: every later pass sees only what arrived since the last step. Frozen
    objects are still freed by their reference counts (almost all of the model's);
    only cyclic garbage frozen with them waits for the full collection ``step`` makes
    (everything unfrozen, collected, frozen again) when what is frozen has grown by a
    quarter since the last (looked at every ten minutes), or every ``full_every_s`` (a
    day) at least: one long pass a day, not two a minute.
    """

    def __init__(
        self,
        full_every_s: float = FULL_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        growth: float = FULL_GROWTH,
        growth_checked_every_s: float = GROWTH_CHECKED_EVERY_S,
    ) -> None:
        self.full_every_s = full_every_s
        self.growth = growth
        self.growth_checked_every_s = growth_checked_every_s
        self._clock = clock
        self._last_full = self._last_check = clock()
        self._after_full: int | None = None
        """What was frozen after the last full collection (or the first step)."""

    def step(self, collect: bool = True) -> float | None:
        """Freeze what survived since the last step; when a full collection is due, it
        too: how long that took (s), else None.

        ``collect=False``: freeze without a pass first, right after work that built many
        objects meant to last (the model's refresh). A pass then walked all it kept,
        every thread waiting, to find nothing: 38-174 ms after each refresh of the
        country's figures, nothing collected, in the middle generation or (the same
        length) the youngest alone (``reads_bench.py``). Freezing costs no walk; a
        cycle that became garbage meanwhile is frozen too, freed by the full pass."""
        if collect:
            gc.collect(1)
        gc.freeze()
        now = self._clock()
        if now - self._last_full < self.full_every_s and not self._grown(now):
            return None
        started = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._last_full = self._last_check = now
        self._after_full = gc.get_freeze_count()
        return time.perf_counter() - started

    def _grown(self, now: float) -> bool:
        """Whether what is frozen grew by ``growth`` since the last full collection
        (looked at on the first step, then every ``growth_checked_every_s``)."""
        if self._after_full is not None and now - self._last_check < self.growth_checked_every_s:
            return False
        self._last_check = now
        frozen = gc.get_freeze_count()
        if self._after_full is None:
            self._after_full = frozen
        return frozen > self._after_full * self.growth


class LongestPass:
    """The garbage collector's longest pass since it was last taken: every thread of
    the process waits one out (a request's answer too)."""

    def __init__(self) -> None:
        self._began = 0.0
        self._longest = (0.0, 0)
        gc.callbacks.append(self._seen)

    def _seen(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        took = time.perf_counter() - self._began
        if took > self._longest[0]:
            self._longest = (took, info["generation"])

    def take(self) -> tuple[float, int]:
        """(seconds, generation) of the longest pass since the last ``take``."""
        found, self._longest = self._longest, (0.0, 0)
        return found

    def close(self) -> None:
        gc.callbacks.remove(self._seen)
