"""The sink's spool: envelopes as they arrived, waiting for the time-series server.

Kept in the state store (its ``spool`` table, and its size and drops in ``meta``:
the collector adds, the sink process takes, each in transactions of its own), and
written in the same transaction as the state a batch changed: once a batch is
committed it is both applied and durably queued, and may be acknowledged. Beyond
``max_bytes`` the oldest rows are dropped and counted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from collector.state.store import StateStore


@dataclass(frozen=True)
class SpoolStats:
    rows: int
    bytes: int
    dropped: int
    """Rows dropped over the bound since the store was made."""


class Spool:
    def __init__(self, store: StateStore, max_bytes: int = 1024**3) -> None:
        self.store = store
        self.max_bytes = max_bytes

    def attach(self) -> Spool:
        """Take every batch the store applies from now on (the collector's side); a store
        has one spool."""
        if not any(isinstance(queue, Spool) for queue in self.store.queues):
            self.store.queues.append(self)
        return self

    # inside a batch's transaction --------------------------------------------------

    def enqueue(self, db: sqlite3.Connection, payloads: Sequence[bytes]) -> None:
        db.executemany("INSERT INTO spool (lines) VALUES (?)", [(p,) for p in payloads])
        self._bound(db, sum(len(p) for p in payloads))

    @staticmethod
    def _add_bytes(db: sqlite3.Connection, change: int) -> int:
        """Change the spool's recorded size; the new size."""
        return int(
            db.execute(
                "UPDATE meta SET value = value + ? WHERE key = 'spool_bytes' RETURNING value",
                (change,),
            ).fetchone()[0]
        )

    def _bound(self, db: sqlite3.Connection, incoming: int) -> None:
        """Drop the oldest points beyond the bound and count them."""
        excess = self._add_bytes(db, incoming) - self.max_bytes
        if excess <= 0:
            return
        dropped_bytes = dropped_rows = 0
        victims = db.execute("SELECT id, LENGTH(lines) FROM spool ORDER BY id").fetchall()
        for row_id, size in victims:
            db.execute("DELETE FROM spool WHERE id = ?", (row_id,))
            dropped_bytes += int(size)
            dropped_rows += 1
            if dropped_bytes >= excess:
                break
        db.execute("UPDATE meta SET value = value + ? WHERE key = 'spool_dropped'", (dropped_rows,))
        self._add_bytes(db, -dropped_bytes)

    # the sink's side ---------------------------------------------------------------

    def fetch(self, limit: int) -> list[tuple[int, bytes]]:
        with self.store.reading() as db:
            rows = db.execute(
                "SELECT id, lines FROM spool ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [(int(row_id), bytes(lines)) for row_id, lines in rows]

    def done(self, up_to_id: int) -> None:
        """The server accepted everything up to this row."""
        with self.store.transaction() as db:
            size = db.execute(
                "SELECT COALESCE(SUM(LENGTH(lines)), 0) FROM spool WHERE id <= ?", (up_to_id,)
            ).fetchone()[0]
            db.execute("DELETE FROM spool WHERE id <= ?", (up_to_id,))
            self._add_bytes(db, -int(size))

    def stats(self) -> SpoolStats:
        with self.store.reading() as db:
            rows = db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
            meta = dict(
                db.execute(
                    "SELECT key, value FROM meta WHERE key IN ('spool_dropped', 'spool_bytes')"
                ).fetchall()
            )
        return SpoolStats(int(rows), int(meta["spool_bytes"]), int(meta["spool_dropped"]))
