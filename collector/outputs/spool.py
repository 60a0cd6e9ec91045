"""The sink's spool: envelopes as they arrived, waiting for the time-series server.

Kept in the state store (its ``spool`` table, and its size and drops in ``meta``:
the collector adds, the sink process takes, each in transactions of its own), and
written in the same transaction as the state a batch changed: once a batch is
committed it is both applied and durably queued, and may be acknowledged. Beyond
``max_bytes`` the oldest rows waiting are dropped and counted, but those the sink is
writing (``take``: ``meta.spool_writing``).

A batch's envelopes are one row (a frame: a zero byte, then each payload after its
length in four bytes; its ``envelopes`` column says how many): one row per envelope
cost the collector a twentieth of its commit path at the national rate. The sink
takes frames whole and sees their envelopes one by one; a row of one payload (an
earlier release's) reads as before.

Rows the server accepted are not forgotten at once: the server may still lose them
(VictoriaMetrics holds accepted points in memory for seconds), and a sink killed
meanwhile would no longer know what to write again. ``meta.spool_sent`` marks the last
row accepted; the rows up to it stay until the sink says they are past the server's
flush, and a sink starting again writes them again first (written twice is kept once).
They are neither waiting nor counted in the spool's size, and never dropped by the bound.
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


WAITING = (
    "SELECT COALESCE(SUM(envelopes), 0) FROM spool "
    "WHERE id > COALESCE((SELECT value FROM meta WHERE key = 'spool_sent'), 0)"
)
"""Envelopes waiting for the server, for a reader of the store (a check, a test)."""


def _sent(db: sqlite3.Connection) -> int:
    """The last row the server accepted (0: none yet, or a store of an earlier release,
    whose spool holds only rows waiting)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'spool_sent'").fetchone()
    return int(row[0]) if row else 0


def _taken(db: sqlite3.Connection) -> int:
    """The last row the sink has taken to write (``writing``), or accepted."""
    row = db.execute(
        "SELECT MAX(value) FROM meta WHERE key IN ('spool_sent', 'spool_writing')"
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


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
        # Not the rows being written: the server may accept them, and a replay must
        # find them as they were written. The oldest few at a time: a full spool holds
        # thousands of rows, a batch frees about one.
        after = _taken(db)
        while dropped_bytes < excess:
            victims = db.execute(
                "SELECT id, LENGTH(lines), envelopes FROM spool WHERE id > ? ORDER BY id LIMIT 8",
                (after,),
            ).fetchall()
            if not victims:
                break
            for row_id, size, envelopes in victims:
                after = int(row_id)
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
        # A frame is its marker, then each payload after its 4-byte size: what stays is
        # counted down, not framed again for every envelope dropped.
        while gone < len(payloads) and len(row) - kept_size < at_least:
            kept_size -= 4 + len(payloads[gone])
            gone += 1
        if gone == len(payloads):
            kept_size = 0
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
        with self.store.reading() as db:
            return self._oldest(db, limit)

    @staticmethod
    def _oldest(db: sqlite3.Connection, limit: int) -> list[tuple[int, bytes]]:
        taken: list[tuple[int, bytes]] = []
        rows = db.execute(
            "SELECT id, lines, envelopes FROM spool WHERE id > ? ORDER BY id LIMIT ?",
            (_sent(db), limit),
        )
        for row_id, lines, envelopes in rows:
            if taken and len(taken) + int(envelopes) > limit:
                break
            shared_id = int(row_id)
            taken += [(shared_id, payload) for payload in unframe(bytes(lines))]
            if len(taken) >= limit:
                break
        return taken

    def take(self, limit: int) -> list[tuple[int, bytes]]:
        """``fetch``, the rows marked as being written in the same transaction: until the
        server accepts them (``done``), the bound drops newer rows first (the server may
        accept these, and a replay reads them back as they were written)."""
        with self.store.transaction() as db:
            rows = self._oldest(db, limit)
            if rows:
                db.execute(
                    "INSERT INTO meta VALUES ('spool_writing', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (rows[-1][0],),
                )
        return rows

    def done(self, up_to_id: int, forget_up_to: int | None = None) -> None:
        """The server accepted everything up to this row; the rows up to ``forget_up_to``
        (all of them by default) are past its flush and go."""
        forget = up_to_id if forget_up_to is None else min(forget_up_to, up_to_id)
        with self.store.transaction() as db:
            sent = _sent(db)
            size = db.execute(
                "SELECT COALESCE(SUM(LENGTH(lines)), 0) FROM spool WHERE id > ? AND id <= ?",
                (sent, up_to_id),
            ).fetchone()[0]
            db.execute(
                "INSERT INTO meta VALUES ('spool_sent', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
                (up_to_id,),
            )
            db.execute("DELETE FROM spool WHERE id <= ?", (forget,))
            self._add_bytes(db, -int(size))

    def forget(self, up_to_id: int) -> None:
        """The rows accepted up to this one are past the server's flush: they go."""
        with self.store.transaction() as db:
            db.execute("DELETE FROM spool WHERE id <= MIN(?, ?)", (up_to_id, _sent(db)))

    def accepted(self, limit: int) -> list[tuple[int, bytes]]:
        """The rows the server accepted and the sink has not yet said are past its flush,
        newest last, about the newest ``limit`` envelopes."""
        taken: list[list[tuple[int, bytes]]] = []
        count = 0
        with self.store.reading() as db:
            rows = db.execute(
                "SELECT id, lines FROM spool WHERE id <= ? ORDER BY id DESC", (_sent(db),)
            )
            for row_id, lines in rows:
                payloads = unframe(bytes(lines))
                taken.append([(int(row_id), payload) for payload in payloads])
                count += len(payloads)
                if count >= limit:
                    break
        return [entry for row in reversed(taken) for entry in row]

    def accepted_batches(self, size: int, limit: int = 1 << 62) -> list[tuple[int, int, int, int]]:
        """The rows ``accepted`` holds, as (first row, last row, envelopes, bytes) of whole
        rows of about ``size`` envelopes each, oldest first, the newest ``limit``
        envelopes (all by default): what a sink starting again writes first, read when
        written (``accepted_between``)."""
        batches: list[tuple[int, int, int, int]] = []
        count = 0
        with self.store.reading() as db:
            rows = db.execute(
                "SELECT id, envelopes, LENGTH(lines) FROM spool WHERE id <= ? ORDER BY id DESC",
                (_sent(db),),
            )
            for row_id, envelopes, length in rows:
                if count >= limit:
                    break
                count += int(envelopes)
                if batches and batches[-1][2] + int(envelopes) <= size:
                    _first, last, held, size_held = batches[-1]
                    batches[-1] = (int(row_id), last, held + int(envelopes), size_held + length)
                else:
                    batches.append((int(row_id), int(row_id), int(envelopes), int(length)))
        return batches[::-1]

    def accepted_between(self, first: int, last: int) -> list[tuple[int, bytes]]:
        """The accepted envelopes of the rows ``first`` to ``last``, each with its row's id."""
        with self.store.reading() as db:
            rows = db.execute(
                "SELECT id, lines FROM spool WHERE id >= ? AND id <= MIN(?, ?) ORDER BY id",
                (first, last, _sent(db)),
            ).fetchall()
        return [
            (int(row_id), payload) for row_id, lines in rows for payload in unframe(bytes(lines))
        ]

    def stats(self) -> SpoolStats:
        with self.store.reading() as db:
            rows = db.execute(
                "SELECT COALESCE(SUM(envelopes), 0) FROM spool WHERE id > ?", (_sent(db),)
            ).fetchone()[0]
            meta = dict(
                db.execute(
                    "SELECT key, value FROM meta WHERE key IN ('spool_dropped', 'spool_bytes')"
                ).fetchall()
            )
        return SpoolStats(int(rows), int(meta["spool_bytes"]), int(meta["spool_dropped"]))
