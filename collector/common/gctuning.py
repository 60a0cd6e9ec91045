"""The garbage collector's pace for a process that ingests.

Ingest makes and drops thousands of containers a second (envelopes, samples, their
dicts), nearly all freed at once by their reference counts: a young collection every
700 of them (Python's default) cost ~4 us a message at the national rate, every
20,000 under 1 us. The older generations keep their defaults: what start builds is
frozen out of every pass once warm (``gc.freeze`` in the collector's start).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
"""Allocations between two young collections (700 by default)."""


def pace_for_ingest() -> None:
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
