"""Each subject's newest observation, held in memory between the store's writes of it.

Most samples only say that a subject's state still holds (a line still up, a PC's
anti-malware still working): its history gains nothing but a newer ``last_ts``.
Written at once, that was one UPDATE a sample, the commit path's largest share of
statements at the national rate: a search by the subject's four-part key, and a page
of ``subjects`` made dirty, for each. Held here, the store writes a subject's
``last_ts`` at most once in ``lag`` seconds, many in one statement, by id.

What the store holds of a subject's ``last_ts`` can so be behind by ``lag`` (and a
batch) if the collector stops without closing the store (a crash, a kill -9):
everything else of the history (a change of state, an outage, a gap) is written in
the transaction of the sample that made it, and a sample that is not the common case
has its subject's held ``last_ts`` written before its history is read.
"""

from __future__ import annotations

import collections
from typing import Final

import msgspec

#: How far behind its newest observation a subject's ``last_ts`` may be in the store.
#: A probe's samples come every minute or so: five minutes writes about one in five.
LAST_TS_LAG_S: Final = 300.0
#: Subjects held at most; full, they are written and forgotten together. The country
#: has about two a PC (330,000); one costs about 300 bytes held.
HELD_SUBJECTS_MAX: Final = 1_000_000

SubjectKey = tuple[str, str, str, str]
"""(agent key, kind, name, target): the subject's unique key in the store."""


class Held(msgspec.Struct, gc=False):
    """A subject as the store has it, with its newest observation."""

    id: int
    state: str
    last_ts: float
    """The newest sample applied."""
    written: float
    """``last_ts`` as the store holds it."""


class HeldSubjects:
    """The subjects the ingest has seen, by key, and which of them the store holds
    behind (``due``: what to write now)."""

    def __init__(self, lag: float = LAST_TS_LAG_S, limit: int = HELD_SUBJECTS_MAX) -> None:
        self.lag = lag
        self.limit = limit
        self._held: dict[SubjectKey, Held] = {}
        self._behind: collections.deque[tuple[float, Held]] = collections.deque()
        """(when first behind, subject), oldest first; a subject written since is skipped."""

    def __len__(self) -> int:
        return len(self._held)

    @property
    def full(self) -> bool:
        return len(self._held) >= self.limit

    def get(self, key: SubjectKey) -> Held | None:
        return self._held.get(key)

    def hold(self, key: SubjectKey, subject_id: int, state: str, last_ts: float) -> None:
        """A subject as the store has just written it (nothing behind)."""
        self._held[key] = Held(subject_id, state, last_ts, last_ts)

    def drop(self, key: SubjectKey) -> None:
        """Not held any more: its next sample reads the store (the store is up to date)."""
        self._held.pop(key, None)

    def advance(self, held: Held, ts: float, now: float) -> None:
        """A newer observation of the same state, to be written by ``due``."""
        if held.written == held.last_ts:
            self._behind.append((now, held))
        held.last_ts = ts

    @staticmethod
    def written(held: Held) -> tuple[float, int] | None:
        """Its row for the store when it is behind, now counted as written."""
        if held.written == held.last_ts:
            return None
        held.written = held.last_ts
        return (held.last_ts, held.id)

    def due(self, now: float) -> list[tuple[float, int]]:
        """(last_ts, id) of the subjects behind for ``lag`` by ``now``, counted as written."""
        rows: list[tuple[float, int]] = []
        behind = self._behind
        while behind and behind[0][0] <= now - self.lag:
            row = self.written(behind.popleft()[1])
            if row is not None:
                rows.append(row)
        return rows

    def everything(self) -> list[tuple[float, int]]:
        """(last_ts, id) of every subject behind, counted as written."""
        rows = [row for _, held in self._behind if (row := self.written(held)) is not None]
        self._behind.clear()
        return rows

    def forget(self) -> None:
        """Nothing held: after a rollback, whatever it held may not be the store's."""
        self._held.clear()
        self._behind.clear()
