"""The sink's spool: envelopes as they arrived, waiting for the time-series server.

Kept in the state store (its ``spool`` table, and its size and drops in ``meta``:
the collector adds, the sink process takes, each in transactions of its own), and
written in the same transaction as the state a batch changed: once a batch is
committed it is both applied and durably queued, and may be acknowledged. Beyond
``max_bytes`` the oldest rows are dropped and counted.

A batch's envelopes are one row (a frame: a zero byte, then each payload after its
length in four bytes; its ``envelopes`` column says how many): one row per envelope
cost the collector a twentieth of its commit path at the national rate. The sink
takes frames whole and sees their envelopes one by one; a row of one payload (an
earlier release's) reads as before.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from collector.state.store import StateStore

FRAME = b"\x00"
"""The first byte of a frame: an envelope starts with ``{``, line protocol with a letter."""


def frame(payloads: Sequence[bytes]) -> bytes:
    return FRAME + b"".join(len(p).to_bytes(4, "big") + p for p in payloads)


_SIZE = struct.Struct(">I").unpack_from


def unframe(row: bytes) -> list[bytes]:
    """A row's payloads: those of a frame, or the row itself."""
    # The sink reads every spooled envelope through here: one loop building a list,
    # the sizes read in place (no generator, no slice per size).
    if not row.startswith(FRAME):
        return [row]
    payloads = []
    at, last = 1, len(row) - 4
    while at <= last:
        (size,) = _SIZE(row, at)
        at += 4
        payloads.append(row[at : at + size])
        at += size
    return payloads


@dataclass(frozen=True)
class SpoolStats:
    rows: int
    """Envelopes waiting (in frames or alone)."""
    bytes: int
    dropped: int
    """Envelopes dropped over the bound since the store was made."""


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
        if not payloads:
            return
        row = payloads[0] if len(payloads) == 1 else frame(payloads)
        db.execute("INSERT INTO spool (lines, envelopes) VALUES (?, ?)", (row, len(payloads)))
        self._bound(db, len(row))

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
        victims = db.execute(
            "SELECT id, LENGTH(lines), envelopes FROM spool ORDER BY id"
        ).fetchall()
        for row_id, size, envelopes in victims:
            if dropped_bytes + int(size) > excess and int(envelopes) > 1:
                # The last one needed is a frame: its oldest envelopes go, the rest stay.
                freed, gone = self._trim(db, int(row_id), excess - dropped_bytes)
                dropped_bytes += freed
                dropped_rows += gone
                break
            db.execute("DELETE FROM spool WHERE id = ?", (row_id,))
            dropped_bytes += int(size)
            dropped_rows += int(envelopes)
            if dropped_bytes >= excess:
                break
        db.execute("UPDATE meta SET value = value + ? WHERE key = 'spool_dropped'", (dropped_rows,))
        self._add_bytes(db, -dropped_bytes)

    @staticmethod
    def _trim(db: sqlite3.Connection, row_id: int, at_least: int) -> tuple[int, int]:
        """Drop a frame's oldest envelopes until ``at_least`` bytes are freed: (bytes
        freed, envelopes dropped)."""
        (row,) = db.execute("SELECT lines FROM spool WHERE id = ?", (row_id,)).fetchone()
        payloads = unframe(bytes(row))
        gone = 0
        kept_size = len(row)
        while gone < len(payloads) and len(row) - kept_size < at_least:
            gone += 1
            kept_size = len(frame(payloads[gone:])) if gone < len(payloads) else 0
        if gone == len(payloads):
            db.execute("DELETE FROM spool WHERE id = ?", (row_id,))
        else:
            db.execute(
                "UPDATE spool SET lines = ?, envelopes = ? WHERE id = ?",
                (frame(payloads[gone:]), len(payloads) - gone, row_id),
            )
        return len(row) - kept_size, gone

    # the sink's side ---------------------------------------------------------------

    def fetch(self, limit: int) -> list[tuple[int, bytes]]:
        """The oldest envelopes, about ``limit`` of them in whole rows: each with its
        row's id (a frame's share it)."""
        taken: list[tuple[int, bytes]] = []
        with self.store.reading() as db:
            rows = db.execute(
                "SELECT id, lines, envelopes FROM spool ORDER BY id LIMIT ?", (limit,)
            )
            for row_id, lines, envelopes in rows:
                if taken and len(taken) + int(envelopes) > limit:
                    break
                shared_id = int(row_id)
                taken += [(shared_id, payload) for payload in unframe(bytes(lines))]
                if len(taken) >= limit:
                    break
        return taken

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
            rows = db.execute("SELECT COALESCE(SUM(envelopes), 0) FROM spool").fetchone()[0]
            meta = dict(
                db.execute(
                    "SELECT key, value FROM meta WHERE key IN ('spool_dropped', 'spool_bytes')"
                ).fetchall()
            )
        return SpoolStats(int(rows), int(meta["spool_bytes"]), int(meta["spool_dropped"]))
