"""Each subject's newest observation, held in memory between the store's writes of it.

Most samples only say that a subject's state still holds (a line still up, a PC's
anti-malware still working): its history gains nothing but a newer ``last_ts``.
Written at once, that was one UPDATE a sample, searched by the subject's four-part
key. Held here, the store writes a subject's ``last_ts`` when it is ``lag`` behind
its newest observation, or has been behind for ``lag`` seconds of the collector's
clock (a subject gone quiet), many in one statement by id.

What the store holds of a subject's ``last_ts`` can so be behind by up to ``lag``
(and a batch) if the collector stops without closing the store (a crash, a kill -9).
Everything else of the history (a change of state, an outage, a gap) is written in
the transaction of the sample that made it, and a sample that is not the common case
has its subject's ``last_ts`` written before its history is read.

What is held follows the store's transactions: changes made in one are logged and
undone if it rolls back (or back to a savepoint), so what is held is always the
committed store's, plus what it holds behind.
"""

from __future__ import annotations

import collections
import functools
import math
import sys
from collections.abc import Callable
from typing import Final

import msgspec

#: How far behind its newest observation a subject's ``last_ts`` may be in the store.
#: A probe's samples come every minute or so: five minutes writes about one in five.
LAST_TS_LAG_S: Final = 300.0
#: Subjects held at most; full, they are written and forgotten together. The country
#: has about three a PC (500,000); one costs about 300 bytes held (150 MB).
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
    behind_since: float = -math.inf
    """The collector's time of its newest record in ``_behind``; -inf: none queued."""


_Behind = collections.deque[tuple[float, list[Held]]]


class HeldSubjects:
    """The subjects the ingest has seen, by key, and which of them the store holds
    behind (``due``: what to write now)."""

    def __init__(self, lag: float = LAST_TS_LAG_S, limit: int = HELD_SUBJECTS_MAX) -> None:
        self.lag = lag
        self.limit = limit
        self._held: dict[SubjectKey, Held] = {}
        self._behind: _Behind = collections.deque()
        """(a batch's time, the subjects it left behind), oldest first; a subject
        written since is passed over."""
        self._overdue: list[Held] = []
        """Subjects whose newest observation is ``lag`` past what the store holds (a
        backlog applied after an outage moves hours of samples in minutes)."""
        self._undo: list[tuple[Held, float] | Callable[[], None]] = []
        """What the open transaction changed, to undo it if it rolls back: a newer
        observation as (subject, its observation before), the rarer changes as calls."""

    def __len__(self) -> int:
        return len(self._held)

    @property
    def full(self) -> bool:
        return len(self._held) >= self.limit

    def get(self, key: SubjectKey) -> Held | None:
        return self._held.get(key)

    # Changes, inside a transaction --------------------------------------------------

    def hold(self, key: SubjectKey, subject_id: int, state: str, last_ts: float) -> None:
        """A subject as the store has just written it (nothing behind)."""
        agent, kind, name, target = key
        # An agent's key repeats in its subjects (each from an envelope of its own), a
        # probe's name and target across a commune's PCs (its line's gateway) and the
        # country's (the line's name): one string each, not one a subject. Bounded as
        # the subjects are (``max_subjects`` an agent).
        key = (sys.intern(agent), kind, sys.intern(name), sys.intern(target))
        self._undo.append(functools.partial(self._put, key, self._held.get(key)))
        self._held[key] = Held(subject_id, state, last_ts, last_ts)

    def drop(self, key: SubjectKey) -> None:
        """Not held any more: its next sample reads the store (written up to date first)."""
        if (held := self._held.pop(key, None)) is not None:
            self._undo.append(functools.partial(self._put, key, held))

    def advance(self, held: Held, ts: float, now: float) -> None:
        """A newer observation of the same state, to be written by ``due``."""
        self._undo.append((held, held.last_ts))
        # Queued each time it falls behind: a record it left when written since by
        # sample time is passed over. So the queue holds at most a record for each
        # sample applied in ``lag`` seconds of the collector's clock.
        if held.written == held.last_ts:
            behind = self._behind
            if not behind or behind[-1][0] != now:
                behind.append((now, []))
            behind[-1][1].append(held)
            held.behind_since = now
        held.last_ts = ts
        if ts - held.written >= self.lag:
            self._overdue.append(held)

    def written(self, held: Held) -> tuple[float, int] | None:
        """Its row for the store when it is behind, now counted as written."""
        if held.written == held.last_ts:
            return None
        self._undo.append(functools.partial(self._behind_again, held, held.written))
        held.written = held.last_ts
        return (held.last_ts, held.id)

    def due(self, now: float) -> list[tuple[float, int]]:
        """(last_ts, id) of the subjects ``lag`` behind their newest observation, or
        behind for ``lag`` by ``now``; counted as written."""
        rows = [row for held in self._overdue if (row := self.written(held)) is not None]
        self._overdue.clear()
        behind = self._behind
        # A record later than now: the collector's clock went back; due all the same.
        while behind and not now - self.lag < behind[0][0] <= now:
            since, helds = behind.popleft()
            for held in helds:
                if held.behind_since != since:
                    continue  # written since, and behind again later: its later record says
                held.behind_since = -math.inf
                if (row := self.written(held)) is not None:
                    rows.append(row)
        return rows

    def everything(self) -> list[tuple[float, int]]:
        """(last_ts, id) of every subject behind, counted as written."""
        return [row for held in self._held.values() if (row := self.written(held)) is not None]

    def forget(self) -> None:
        """Nothing held (what is behind written first: ``everything``)."""
        self._undo.append(functools.partial(setattr, self, "_held", self._held))
        self._held = {}

    # The transaction's end --------------------------------------------------------

    def mark(self) -> int:
        """Where a savepoint starts, for ``undo``."""
        return len(self._undo)

    def committed(self) -> None:
        self._undo.clear()

    def undo(self, mark: int = 0) -> None:
        """Back to what was held at ``mark`` (0: the transaction's start): it rolled back."""
        log = self._undo
        while len(log) > mark:
            change = log.pop()
            if isinstance(change, tuple):
                held, last_ts = change
                held.last_ts = last_ts
            else:
                change()
        self._overdue.clear()

    def _put(self, key: SubjectKey, held: Held | None) -> None:
        if held is None:
            self._held.pop(key, None)
        else:
            self._held[key] = held

    def _behind_again(self, held: Held, written: float) -> None:
        """A write rolled back: behind again, and due at the next batch."""
        held.written = written
        held.behind_since = -math.inf
        self._behind.appendleft((-math.inf, [held]))
