"""A late sample placed in a subject's up/down history as if it had come in order.

The store keeps each subject's changes, not its samples: ``subjects`` (state, since,
last_ts) and ``outages`` (start, end). An envelope the broker lost is sent again on the
collector's receipt (agent/outbox.py), after later ones; its samples are older than
the subject's last one. In order, an outage starts at its first "down" sample and ends
at its first "up" one. To place a late sample the same way, each outage keeps what
bounds it, both known when the change is applied (the subject's ``last_ts`` then):

- ``up_seen``: the last "up" seen before its start. Between it and the start nothing
  was seen: a late "down" there moves the start back, a late "up" narrows the window.
- ``down_seen``: the last "down" seen before its end, likewise for the end.

NULL is unknown (outages of a store before migration 16): the rule before it only, the
current change moved back. A late sample anywhere else falls in a stretch the store
believed steady: it reveals a change the store never saw (the broker lost every sample
of it). A "down" inside an up stretch is an outage, a hidden "up" inside an outage
splits it; the far end is provisional, the last sample of that state seen so far
(``down_seen == end``: the end provisional; ``up_seen == start``: the start), moved on
by the next late samples of the same state and fixed by the first of the other.

The late samples of an agent come in seq order (the agent sends again in creation
order), so a provisional end only grows. Whether the next late sample of the same
state is the next one of that run, or one of a run of its own after samples seen in
order, is told by the gap in the agent's seqs each fills (``SeqRanges.gap_end``,
``late_gap``): within one gap nothing came in order between them, and any sample of
the subject between them, lost too, would have come between them.

The subject's state never changes by a late sample; its ``since`` follows its last
change, its ``monitored_since`` the earliest sample, and its ``revised`` counts the
changes (what the console computed from its outages is computed again). Applying a
sample twice changes nothing the second time: each rule leaves the sample on a bound,
where it is a no-op.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class Held:
    """What the store holds of a subject when a late sample comes."""

    id: int
    state: str
    monitored_since: float


@dataclass(frozen=True)
class _Outage:
    start: float
    end: float | None
    up_seen: float | None
    down_seen: float | None
    late_gap: int | None
    """The gap in the agent's seqs of the late samples that placed a provisional bound."""

    @property
    def start_provisional(self) -> bool:
        return self.up_seen == self.start

    @property
    def end_provisional(self) -> bool:
        return self.end is not None and self.down_seen == self.end


_COLUMNS = "start, end, up_seen, down_seen, late_gap"


class _History:
    """One subject's outages around a late sample, and the writes that place it."""

    def __init__(self, db: sqlite3.Connection, subject: Held, ts: float, gap: int | None) -> None:
        self.db = db
        self.subject = subject
        self.ts = ts
        self.gap = gap
        before = db.execute(
            f"SELECT {_COLUMNS} FROM outages WHERE subject_id = ? AND start <= ? "  # noqa: S608 - fixed columns
            "ORDER BY start DESC LIMIT 1",
            (subject.id, ts),
        ).fetchone()
        after = db.execute(
            f"SELECT {_COLUMNS} FROM outages WHERE subject_id = ? AND start > ? "  # noqa: S608 - fixed columns
            "ORDER BY start LIMIT 1",
            (subject.id, ts),
        ).fetchone()
        self.before = None if before is None else _Outage(*before)
        """The outage starting at or before the sample."""
        self.after = None if after is None else _Outage(*after)
        """The first outage starting after it."""
        self.changed = False

    def is_next(self, outage: _Outage) -> bool:
        """Whether the sample follows the late ones that placed the outage's provisional
        bound, none between them seen in order."""
        return self.gap is not None and outage.late_gap == self.gap

    def set(self, outage: _Outage, **columns: float | None) -> None:
        names = ", ".join(f"{name} = ?" for name in columns)
        self.db.execute(
            f"UPDATE outages SET {names} WHERE subject_id = ? AND start = ?",  # noqa: S608 - our names
            (*columns.values(), self.subject.id, outage.start),
        )
        self.changed = True

    def insert(
        self, start: float, end: float | None, up_seen: float | None, down_seen: float | None
    ) -> None:
        self.db.execute(
            f"INSERT OR IGNORE INTO outages (subject_id, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",  # noqa: S608 - fixed columns
            (self.subject.id, start, end, up_seen, down_seen, self.gap),
        )
        self.changed = True


def place(db: sqlite3.Connection, subject: Held, ts: float, up: bool, gap: int | None) -> None:
    """Place a sample older than the subject's last one (``ts``: its time; ``gap``: the
    one its envelope fills in its agent's seqs, None if it fills none)."""
    history = _History(db, subject, ts, gap)
    if ts < subject.monitored_since:
        _before_watch(history, up)
    elif up:
        _late_up(history)
    else:
        _late_down(history)
    if history.changed:
        _revised(db, subject.id)


def _before_watch(history: _History, up: bool) -> None:
    """Older than the first sample the store had: its history begins earlier."""
    subject, ts, first = history.subject, history.ts, history.after
    began_down = first is not None and first.start == subject.monitored_since
    if not up:
        if first is not None and began_down:
            history.set(first, start=ts)
        else:  # up from the first sample seen: that is where this outage ends
            history.insert(ts, subject.monitored_since, None, ts)
    elif first is not None and began_down and (first.up_seen is None or first.up_seen < ts):
        history.set(first, up_seen=ts)
    history.db.execute("UPDATE subjects SET monitored_since = ? WHERE id = ?", (ts, subject.id))
    history.changed = True


def _late_down(history: _History) -> None:
    ts, before, after = history.ts, history.before, history.after
    if before is not None and (before.end is None or ts < before.end):
        # Within an outage: its start if only an "up" was seen there, else its end's window.
        if ts == before.start:
            return
        if before.start_provisional:
            if history.is_next(before):
                history.set(before, start=ts)
        elif before.down_seen is not None and before.end is not None and before.down_seen < ts:
            history.set(before, down_seen=ts)
        return
    # Within an up stretch: after ``before`` ended (or the first sample), before ``after``.
    if before is not None and ts == before.end:
        return  # an "up" seen at that very time
    if after is not None and after.up_seen is not None and ts >= after.up_seen:
        if ts > after.up_seen:  # in the window of the next change: it happened by ts
            history.set(after, start=ts)
        return
    if before is not None and before.end_provisional and history.is_next(before):
        history.set(before, end=ts, down_seen=ts)
        return
    if after is not None and after.up_seen is None:
        if after.end is None:  # unknown bounds, the current change: moved back as ever
            history.set(after, start=ts)
        return
    if after is None and history.subject.state != "up":
        return  # down with no open outage: nothing to place it against
    history.insert(ts, ts, None, ts)  # an outage the store never saw


def _late_up(history: _History) -> None:
    ts, before, after = history.ts, history.before, history.after
    if after is not None and after.up_seen is not None and after.up_seen < ts:
        history.set(after, up_seen=ts)  # the next change's window narrows
    if before is None:
        return
    if before.end is not None and ts >= before.end:
        if before.end_provisional and history.is_next(before):
            history.set(before, end=ts)  # the run of late "down" ends here
        return
    if ts == before.start:
        return
    if before.end is not None:
        if before.down_seen is not None:
            if ts > before.down_seen:  # in the end's window: it ended by ts
                history.set(before, end=ts)
            if ts >= before.down_seen:
                return
        else:
            if _is_current_up(history, before):  # unknown bounds: as ever
                history.set(before, end=ts)
            return
    if before.start_provisional and history.is_next(before):
        history.set(before, start=ts, up_seen=ts)  # the hidden "up" goes on
        return
    # An "up" the store never saw, inside what it took for one outage: two outages.
    history.set(before, end=ts, down_seen=None)
    history.insert(ts, before.end, ts, before.down_seen)


def _is_current_up(history: _History, outage: _Outage) -> bool:
    """The subject is up since this outage ended: its current change."""
    return history.subject.state == "up" and history.after is None and outage.end is not None


def _revised(db: sqlite3.Connection, subject_id: int) -> None:
    """The subject's outages changed: counted (what was computed from them is stale), and
    ``since`` follows its last change, which a late sample may have moved."""
    db.execute("UPDATE subjects SET revised = revised + 1 WHERE id = ?", (subject_id,))
    row = db.execute(
        "SELECT start, end FROM outages WHERE subject_id = ? ORDER BY start DESC LIMIT 1",
        (subject_id,),
    ).fetchone()
    if row is not None:
        start, end = row
        db.execute(
            "UPDATE subjects SET since = ? WHERE id = ?",
            (start if end is None else end, subject_id),
        )
