"""The local outbox: every envelope is committed here before it is published.

A row is kept until the broker's PUBACK, so a line outage, a broker restart or a
kill -9 of the agent loses nothing (delivery is at-least-once). An enrolled agent,
whose collector sends receipts (agent/wire.py ``Receipt``), keeps a row the broker
acknowledged further, marked acknowledged, until a receipt says the collector
committed it: a broker killed before it saved its queues loses what it held, and a
receipt that passes over a seq brings it back to be sent again. With no receipt for
``RECEIPTS_LAPSE_S`` (a collector of a release before receipts, or one down that
long), what was acknowledged before then is trusted to the broker and forgotten.

The outbox is bounded by age and size; beyond the bound the oldest rows are
dropped, and every drop is counted in the file itself so the count survives
restarts and is reported in the agent's self-metrics.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from agent.stats import OutboxStats

if TYPE_CHECKING:
    from agent.ledger import CreationLedger

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    seq INTEGER,
    acked REAL,
    resent INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
# An outbox made by an earlier release lacks the receipt columns: its rows (no seq)
# are deleted on PUBACK as they were then.
_RECEIPT_COLUMNS = (
    "ALTER TABLE outbox ADD COLUMN seq INTEGER",
    "ALTER TABLE outbox ADD COLUMN acked REAL",
    "ALTER TABLE outbox ADD COLUMN resent INTEGER NOT NULL DEFAULT 0",
)
_COUNTERS = ("dropped_age", "dropped_size", "dropped_error", "receipt_at")

#: With no receipt for this long, rows the broker acknowledged before then are forgotten.
RECEIPTS_LAPSE_S = 86400.0

#: Times a row a receipt passed over is sent again before it is given up (counted as
#: ``dropped_error``): an envelope this collector cannot read at all, say, would
#: otherwise go round with every receipt until the age bound.
MAX_RESENDS = 5


#: SQLite's page cache for the outbox, KiB: the pages a put, a fetch and an acknowledgement
#: touch (the tree's root and edges) fit in it; at 256 a PC agent kept 0.2 MB more of pages
#: it had read once, and draining a 72-hour backlog took no longer at 64.
CACHE_KIB = 64

#: The most ids one statement takes (SQLite before 3.32 allows 999 parameters).
MAX_IDS = 256


def id_lists(ids: list[int]) -> list[list[int]]:
    """``ids`` in lists of a power-of-two length up to ``MAX_IDS``, the last id repeated to
    fill (an id twice in ``IN (...)`` matches its row once).

    sqlite3 keeps the last 128 statements prepared, each the size of its parameter list:
    one statement per batch size (1 to the broker's inflight window) filled that cache
    over hours, 0.6 MB of a PC agent's memory that looked like a leak. Nine lengths,
    nine statements of each kind, serve every batch.
    """
    lists = []
    for start in range(0, len(ids), MAX_IDS):
        chunk = ids[start : start + MAX_IDS]
        width = 1 << (len(chunk) - 1).bit_length()
        lists.append(chunk + chunk[-1:] * (width - len(chunk)))
    return lists


class Row(msgspec.Struct, frozen=True):
    """One envelope waiting in the outbox for the broker's PUBACK."""

    id: int
    created: float
    topic: str
    payload: bytes


class OutboxError(Exception):
    """The outbox could not store an envelope (disk full, file unwritable)."""


class Outbox:
    def __init__(
        self, path: Path, max_age: float, max_size: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.max_age = max_age
        self.max_size = max_size
        self.clock = clock
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            if exc.sqlite_errorcode not in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                raise OutboxError(f"cannot open outbox {path}: {exc}") from None
            # A power cut can leave the file damaged. Refusing to start would stop
            # all reporting for good; set it aside for inspection and go on.
            aside = self._set_aside()
            log.error(
                "outbox %s is damaged (%s): moved to %s; starting a new one", path, exc, aside
            )
            try:
                self._db = self._open()
            except sqlite3.Error as again:
                raise OutboxError(f"cannot open outbox {path}: {again}") from None
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open outbox {path}: {exc}") from None
        self._bytes = self._total_bytes()
        self._ledger: CreationLedger | None = None
        if os.environ.get("COMMUNE_MONITOR_LEDGER"):
            # The chaos soak's seam (agent/ledger.py): imported only when asked for.
            from agent.ledger import from_environment

            self._ledger = from_environment()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit survives power loss too, not only a crash of the agent;
            # commune offices lose power, and one fsync per check run is cheap.
            db.execute("PRAGMA synchronous=FULL")
            # SQLite keeps its page cache for the connection's life: at its default, 2 MB,
            # the agent kept an outage's backlog's pages after draining it, for good. The
            # file stays in the system's cache: a page read again costs a system call.
            db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            db.executescript(_SCHEMA)
            columns = {str(row[1]) for row in db.execute("PRAGMA table_info(outbox)")}
            if "seq" not in columns:
                for statement in _RECEIPT_COLUMNS:
                    db.execute(statement)
            # A new outbox (first start, reinstall, a damaged file replaced) numbers
            # from its creation time in ms, so an agent's sequence never goes back.
            db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('next_seq', ?)", (int(self.clock() * 1000),)
            )
            for key in _COUNTERS:
                db.execute("INSERT OR IGNORE INTO meta VALUES (?, 0)", (key,))
            db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _set_aside(self) -> Path:
        aside = self.path.with_name(f"{self.path.name}.damaged-{int(self.clock())}")
        self.path.rename(aside)
        for suffix in ("-wal", "-shm"):
            companion = self.path.with_name(self.path.name + suffix)
            if companion.exists():
                companion.rename(aside.with_name(aside.name + suffix))
        return aside

    def _total_bytes(self) -> int:
        row = self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()
        return int(row[0])

    def _counter(self, key: str) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    def _bump(self, key: str, amount: int) -> None:
        if amount:
            self._db.execute("UPDATE meta SET value = value + ? WHERE key = ?", (amount, key))

    def put(self, topic: str, make_payload: Callable[[int], bytes]) -> int:
        """Store one envelope; ``make_payload`` receives the next sequence number.

        Returns the sequence number. Raises OutboxError if nothing could be stored
        (the loss is counted).
        """
        with self._lock:
            now = self.clock()
            try:
                return self._put(topic, make_payload, now)
            except sqlite3.Error as first:
                log.error("outbox write failed (%s); dropping the oldest tenth and retrying", first)
                try:
                    self._db.execute("ROLLBACK") if self._db.in_transaction else None
                    self._drop_oldest_fraction(0.1)
                    return self._put(topic, make_payload, now)
                except sqlite3.Error as second:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    # If even the counter cannot be written, the log line stands.
                    with contextlib.suppress(sqlite3.Error):
                        self._bump("dropped_error", 1)
                    raise OutboxError(f"outbox {self.path} cannot store: {second}") from None

    def _put(self, topic: str, make_payload: Callable[[int], bytes], now: float) -> int:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            seq = self._counter("next_seq")
            payload = make_payload(seq)
            self._enforce_bounds(now, len(payload))
            self._db.execute(
                "INSERT INTO outbox (created, topic, payload, seq) VALUES (?, ?, ?, ?)",
                (now, topic, payload, seq),
            )
            self._bump("next_seq", 1)
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._bytes = self._total_bytes()
            raise
        self._bytes += len(payload)
        if self._ledger is not None:
            # Under the outbox's lock: the publisher cannot read the row before its line
            # is written, so the ledger holds every envelope that can reach the broker.
            try:
                self._ledger.record(seq, payload, now)
            except (OSError, ValueError) as exc:
                log.error("creation ledger: cannot record seq %d: %s", seq, exc)
        return seq

    def _enforce_bounds(self, now: float, incoming: int) -> None:
        old = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox WHERE created < ?",
            (now - self.max_age,),
        ).fetchone()
        if old[0]:
            self._db.execute("DELETE FROM outbox WHERE created < ?", (now - self.max_age,))
            self._bump("dropped_age", int(old[0]))
            self._bytes -= int(old[1])
            log.warning("outbox: dropped %d envelopes older than %.0f s", old[0], self.max_age)
        if self._bytes + incoming <= self.max_size:
            return
        dropped = 0
        while self._bytes + incoming > self.max_size:
            batch = self._db.execute(
                "SELECT id, LENGTH(payload) FROM outbox ORDER BY id LIMIT 256"
            ).fetchall()
            if not batch:
                break
            removed: list[int] = []
            for row_id, size in batch:
                removed.append(row_id)
                self._bytes -= int(size)
                if self._bytes + incoming <= self.max_size:
                    break
            self._db.execute("DELETE FROM outbox WHERE id <= ?", (removed[-1],))
            dropped += len(removed)
        self._bump("dropped_size", dropped)
        log.warning(
            "outbox: full (%d bytes max); dropped the %d oldest envelopes", self.max_size, dropped
        )

    def _drop_oldest_fraction(self, fraction: float) -> None:
        rows = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        victims = max(1, int(rows * fraction)) if rows else 0
        if victims:
            self._db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)",
                (victims,),
            )
            self._bump("dropped_error", victims)
        self._bytes = self._total_bytes()

    def fetch_after(self, after_id: int, limit: int) -> list[Row]:
        """The oldest rows with id > after_id not yet acknowledged by the broker, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, created, topic, payload FROM outbox"
                " WHERE id > ? AND acked IS NULL ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [Row(int(r[0]), float(r[1]), str(r[2]), bytes(r[3])) for r in rows]

    def acknowledged(self, ids: Iterable[int]) -> None:
        """The broker acknowledged these rows: kept until a receipt covers them while the
        collector sends receipts (one came within ``RECEIPTS_LAPSE_S``), else forgotten
        (as are rows from an outbox made before receipts, which have no seq)."""
        batch = list(ids)
        if not batch:
            return
        if not self.receipts_live():
            self.delete(batch)
            return
        now = self.clock()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for chunk in id_lists(batch):
                    where = f"WHERE id IN ({','.join('?' * len(chunk))})"
                    self._db.execute(
                        "UPDATE outbox SET acked = ? " + where + " AND seq IS NOT NULL",  # noqa: S608
                        [now, *chunk],
                    )
                    size = self._db.execute(
                        "SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox "  # noqa: S608
                        + where
                        + " AND seq IS NULL",
                        chunk,
                    ).fetchone()[0]
                    self._db.execute("DELETE FROM outbox " + where + " AND seq IS NULL", chunk)  # noqa: S608
                    self._bytes -= int(size)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._bytes = self._total_bytes()
                # Rows stay unacknowledged and are sent again later: a duplicate, no loss.
                log.error("outbox: cannot mark acknowledged rows: %s", exc)

    def receipts_live(self) -> bool:
        """Whether the collector sends receipts: one came within ``RECEIPTS_LAPSE_S``."""
        with self._lock:
            return self._counter("receipt_at") > self.clock() - RECEIPTS_LAPSE_S

    def confirm(self, ranges: list[list[int]]) -> list[Row]:
        """Apply a receipt: acknowledged rows whose seq it covers are forgotten; those it
        passed over (below its last seq, in none of its ranges) are returned to be sent
        again, up to ``MAX_RESENDS`` times each. ``ranges``: ascending [first, last]; none
        (the receipt the collector leaves at enrollment) says receipts will come."""
        last = ranges[-1][1] if ranges else -1
        starts = [first for first, _ in ranges]
        covered: list[int] = []
        again: list[Row] = []
        given_up: list[int] = []
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'receipt_at'", (int(self.clock()),)
                )
                held = self._db.execute(
                    "SELECT id, seq, created, topic, payload, resent FROM outbox"
                    " WHERE acked IS NOT NULL AND seq <= ? ORDER BY id",
                    (last,),
                ).fetchall()
                for row_id, seq, created, topic, payload, resent in held:
                    at = bisect.bisect_right(starts, seq) - 1
                    if at >= 0 and seq <= ranges[at][1]:
                        covered.append(int(row_id))
                    elif int(resent) >= MAX_RESENDS:
                        given_up.append(int(row_id))
                    else:
                        again.append(Row(int(row_id), float(created), str(topic), bytes(payload)))
                gone = covered + given_up
                for chunk in id_lists(gone) if gone else []:
                    where = f"WHERE id IN ({','.join('?' * len(chunk))})"
                    size = self._db.execute(
                        "SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox " + where,  # noqa: S608
                        chunk,
                    ).fetchone()[0]
                    self._db.execute("DELETE FROM outbox " + where, chunk)  # noqa: S608
                    self._bytes -= int(size)
                self._bump("dropped_error", len(given_up))
                for chunk in id_lists([row.id for row in again]) if again else []:
                    where = f"WHERE id IN ({','.join('?' * len(chunk))})"
                    self._db.execute(
                        "UPDATE outbox SET acked = NULL, resent = resent + 1 " + where,  # noqa: S608
                        chunk,
                    )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._bytes = self._total_bytes()
                log.error("outbox: cannot apply a receipt: %s", exc)
                return []
        if given_up:
            log.error(
                "outbox: gave up %d envelopes the collector passed over %d times",
                len(given_up),
                MAX_RESENDS,
            )
        if again:
            log.warning(
                "the collector's receipt passed over %d envelopes the broker had taken "
                "(a broker that lost its queues?); sending them again",
                len(again),
            )
        return again

    def delete(self, ids: Iterable[int]) -> None:
        """Forget acknowledged rows (one transaction for the whole batch)."""
        batch = list(ids)
        if not batch:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                size = 0
                for chunk in id_lists(batch):
                    # Only "?" placeholders are formatted in; the ids are bound parameters.
                    where = f"WHERE id IN ({','.join('?' * len(chunk))})"
                    size += self._db.execute(
                        "SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox " + where,  # noqa: S608
                        chunk,
                    ).fetchone()[0]
                    self._db.execute("DELETE FROM outbox " + where, chunk)  # noqa: S608
                self._db.execute("COMMIT")
                self._bytes -= int(size)
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                # Rows stay and are sent again later: a duplicate, never a loss.
                log.error("outbox: cannot delete acknowledged rows: %s", exc)

    def release_unconfirmed(self, lapse_s: float = RECEIPTS_LAPSE_S) -> int:
        """With no receipt for ``lapse_s``, forget the rows the broker acknowledged before
        then (not counted as dropped: the broker took them). Returns how many."""
        now = self.clock()
        with self._lock:
            if self._counter("receipt_at") > now - lapse_s:
                return 0
            try:
                gone = self._db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox"
                    " WHERE acked IS NOT NULL AND acked < ?",
                    (now - lapse_s,),
                ).fetchone()
                if gone[0]:
                    self._db.execute(
                        "DELETE FROM outbox WHERE acked IS NOT NULL AND acked < ?",
                        (now - lapse_s,),
                    )
                    self._bytes -= int(gone[1])
            except sqlite3.Error as exc:
                log.error("outbox: cannot forget unconfirmed rows: %s", exc)
                return 0
        if gone[0]:
            log.warning(
                "no receipt from the collector for %.0f h: %d envelopes the broker took "
                "before then are trusted to it",
                lapse_s / 3600,
                gone[0],
            )
        return int(gone[0])

    def stats(self) -> OutboxStats:
        with self._lock:
            rows, oldest = self._db.execute("SELECT COUNT(*), MIN(created) FROM outbox").fetchone()
            counters = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        return OutboxStats(
            rows=int(rows),
            bytes=self._bytes,
            oldest_created=float(oldest) if oldest is not None else None,
            dropped_age=int(counters.get("dropped_age", 0)),
            dropped_size=int(counters.get("dropped_size", 0)),
            dropped_error=int(counters.get("dropped_error", 0)),
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()
