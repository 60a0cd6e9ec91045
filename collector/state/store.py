"""The collector's state store (SQLite, WAL): agents, latest samples, outages.

Everything is applied by the samples' own timestamps, idempotently:
- a sample not newer than what a subject already holds changes nothing, so a
  redelivered envelope (at-least-once) is harmless;
- a backlog replayed after a line outage arrives in order with its original
  times and so becomes a closed outage in history, exactly where it happened.

Up/down history is kept for subjects whose availability is reported, as the
wire contract's catalogue declares (``agent.catalogue.histories``): link
targets (``up``), Polycom readiness (``ready``) and each PC's anti-malware
protection and signature freshness (``verdict``, for the monthly report). Only outages are stored;
the up time is their complement within the time a subject was monitored.

What a batch admitted is handed to the store's queues in the same transaction
(the sink's spool, ``outputs/spool.py``): once a batch is committed it is both
applied and durably queued for InfluxDB, and may be acknowledged. An envelope the
store has applied before (by agent and seq, ``state/seqranges.py``) is applied again,
harmlessly, but not queued again: VictoriaMetrics keeps every copy of a point.

What one agent can make the store hold is bounded (``AgentLimits``): series
(latest rows: check name, item and target) and subjects with history. A sample
beyond the bound is refused alone, by reason, counted in ``agent_refusals``
(the ``agent_over_limit`` alert reads it); the rest of its envelope is applied.
One message that cannot be applied (whatever the exception) does not hold up
the others: ``apply_each`` applies a batch message by message, each in a
savepoint of one transaction, and reports the ones that failed.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec

from agent.catalogue import LINK, SNMP_INTERFACE, SYSTEM, histories
from agent.wire import Envelope, Sample, Status, UpdateReport, encode
from collector.state import latesamples, packed, systemtimes
from collector.state.availability import Outage
from collector.state.fifolock import FifoLock
from collector.state.heldsubjects import HeldSubjects, SubjectKey
from collector.state.migrations import migrate
from collector.state.seqranges import SeqRanges
from collector.state.silence import SilenceWatch

_encode = msgspec.json.Encoder().encode


#: The RTT history keeps one value (the best) per commune per this many seconds, 8 days.
RTT_BUCKET_S = 300
#: A shared system's probe silent longer than this, or than three of its agent's
#: intervals, was not watching (collector/state/systemhealth.py).
GAP_MIN_S = 900.0


#: Pages of write-ahead log between two automatic checkpoints (SQLite's default 1,000).
WAL_CHECKPOINT_PAGES = 10_000


def silence_bound(interval: float) -> float:
    """How long an agent's probe may be silent before nobody watched: three of its
    intervals (``interval``: its birth's, 0 when unsaid), and at least ``GAP_MIN_S``."""
    return max(GAP_MIN_S, 3 * interval)


def silence_bound_hold(bound: float) -> float:
    """How long a probe's last word holds once it falls silent: one interval."""
    return bound / 3


RTT_KEEP_S = 8 * 86400
#: The line history's upserts (place, bucket, value), lowering a commune's best RTT or
#: loss of a 5-minute bucket in its day's row (collector/state/packed.py).
_RTT_UPSERT = """INSERT INTO line_history (place, day, rtt)
    VALUES (?1, ?2 / 86400, line_lower(NULL, ?2 % 86400 / 300, ?3))
    ON CONFLICT (place, day) DO UPDATE SET rtt = line_lower(rtt, ?2 % 86400 / 300, ?3)"""
_LOSS_UPSERT = """INSERT INTO line_history (place, day, loss)
    VALUES (?1, ?2 / 86400, line_lower(NULL, ?2 % 86400 / 300, ?3))
    ON CONFLICT (place, day) DO UPDATE SET loss = line_lower(loss, ?2 % 86400 / 300, ?3)"""
#: Buckets remembered at most: two values of the current bucket for every commune of
#: the country (3,321) several times over.
_LINE_BEST_ENTRIES = 50_000

log = logging.getLogger(__name__)

Observer = Callable[[sqlite3.Connection, Sequence[Envelope], float], None]


class Watcher(Protocol):
    """Told of what changes the agents' state outside a batch's envelopes, of the
    subjects the prune deletes, and of a write transaction rolled back (the live health
    model, ``state/livehealth.py``)."""

    def agents_changed(
        self, db: sqlite3.Connection, keys: Sequence[str], forgotten: bool = False
    ) -> None:
        """Inside the transaction that changed these agents (a status applied, marked
        silent, forgotten): ``db`` reads them as they will be committed. ``forgotten``:
        they were forgotten, their latest samples and ports gone with them (one read
        later than this transaction may find an agent back already, not what it lost)."""

    def subjects_deleted(self, subjects: Sequence[tuple[int, str, str, str, str]]) -> None:
        """Inside the transaction that deleted these subjects, each (id, agent key, kind,
        name, target): the prune's, silent beyond the retention, their history with them."""

    def rolled_back(self) -> None:
        """A write transaction was rolled back: what the observers saw in it never was."""

    def committed(self) -> None:
        """A write transaction committed: what the observers and watchers saw in it is
        what other connections now read."""


class Queue(Protocol):
    """Takes the payloads a batch admitted, in its transaction (outputs/spool.py)."""

    def enqueue(self, db: sqlite3.Connection, payloads: Sequence[bytes]) -> None: ...


"""(connection in the transaction, the batch's envelopes, when it was received)."""


#: Refusals of an agent's samples this recent make its ``samples_refused`` (alerts).
REFUSALS_WINDOW_S = 900.0


def agent_key(province: str, commune: str, agent: str) -> str:
    return f"{province}/{commune}/{agent}"


@dataclass(frozen=True)
class AgentLimits:
    """What one agent may make the store hold; beyond, its new samples are refused."""

    max_series: int = 5000
    """Latest rows (check name, item, target): a poller of ten 48-port switches
    holds about 600."""
    max_subjects: int = 100
    """Subjects with up/down history (probed targets, Polycoms, anti-malware)."""


@dataclass(frozen=True, slots=True)
class Port:
    """A router/switch port's operating state, and whether it was ever seen up."""

    agent_key: str
    device: str
    port: str
    state: str
    since: float
    first_up: float | None


@dataclass
class Applied:
    """What a batch did besides committing."""

    refused: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    """Samples refused, by (agent key, reason): over the agent's series or subjects."""
    failed_envelopes: dict[int, str] = field(default_factory=dict)
    """``apply_each``: envelopes (by index) that could not be applied, and why."""
    failed_statuses: dict[int, str] = field(default_factory=dict)
    seqs: dict[str, str] = field(default_factory=dict)
    """Agent key -> its seqs applied, as ``agents.seqs`` holds them after the batch (what
    a receipt tells the agent)."""


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


@dataclass(frozen=True, slots=True)
class Subject:
    id: int
    agent_key: str
    kind: str
    name: str
    target: str
    network: str
    monitored_since: float
    state: str
    since: float
    last_ts: float
    """The newest sample applied: an agent gone silent leaves its subject's state stale."""
    revised: int = 0
    """Changes of its outages by late samples (collector/state/latesamples.py), counted:
    with its state and ``since``, what says its outages are as they were."""


@dataclass(frozen=True, slots=True)
class AgentState:
    agent_key: str
    province: str
    commune: str
    agent: str
    state: str
    state_since: float | None
    reason: str
    version: str
    last_seen: float | None
    last_seq: int | None
    interval: float = 0.0
    """Its reporting interval in seconds, as its birth said (0: not said)."""


@dataclass(frozen=True)
class UpdateStanding:
    """An agent's last update report (``Status.update``)."""

    state: str
    version: str
    reason: str
    ts: float
    failures: int
    """Reports in a row that said refused or failed for the same version."""


@dataclass(frozen=True)
class RolloutStanding:
    id: str
    version: str
    state: str
    breach: bool
    """Paused by a breach of its gate."""
    why: str


class LatestSample(msgspec.Struct, frozen=True, gc=False):
    """A series' newest sample as the store keeps it. A struct the garbage collector
    does not track (it holds strings, numbers and two dicts of them: no cycle): the
    health model holds one per held series, replaced every minute or so under ingest,
    and builds it ~15 times faster than a frozen dataclass."""

    agent_key: str
    check: str
    name: str
    item: str
    target: str
    ts: float
    outcome: str
    fields: dict[str, Any]
    tags: dict[str, str]
    error: str

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> LatestSample:
        fields = msgspec.json.decode(row[7])
        tags = msgspec.json.decode(row[8])
        key, check, name, item, target, ts, outcome = row[:7]
        return cls(key, check, name, item, target, ts, outcome, fields, tags, row[9])


def _key_range(place: str) -> tuple[str, str]:
    """Agent keys under a place prefix, as a range an index can use."""
    return place, (place + "\U0010ffff") if place else "\U0010ffff"


class StateStore:
    def __init__(
        self,
        path: Path,
        clock: Callable[[], float] = time.time,
        limits: AgentLimits = AgentLimits(),
    ) -> None:
        self.path = path
        self.clock = clock
        self.limits = limits
        self._series_bound: dict[str, int] = {}
        """Per agent, a number of latest rows it holds at most: exact when read, then
        raised by every envelope's samples, read again only once it nears the limit. A
        rolled-back transaction leaves it too high, never too low."""
        self._latest_rows: list[tuple[Any, ...]] = []
        """The batch's samples for ``latest``, written together (``_write_latest``)."""
        self._line_best: dict[tuple[str, str, int], float] = {}
        """(table, commune, bucket) -> the lowest value this process has written to the
        line's RTT or loss history: a commune's 50 PCs probe one line, and their samples
        rarely lower the bucket's best, so only those that do are written. Forgotten
        with a rolled-back batch (what it said was written may not be)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # Handed out in turn: the live model loading provinces one after another would
        # otherwise take it again before a waiting batch (``state/fifolock.py``).
        self._lock = FifoLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a crash of the collector (kill -9);
        # acknowledged messages are only acknowledged after that commit.
        self._db.execute("PRAGMA synchronous=NORMAL")
        # A checkpoint copies each page the log holds once: at the default (1,000 pages)
        # the national rate checkpointed after nearly every batch, copying the same hot
        # pages again and again. 10,000 pages (a 40 MB log) copies them once for several
        # batches.
        self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        packed.register(self._db)
        try:
            # The schema's owner brings the file to this collector's version (or refuses).
            self.migrated = migrate(self._db)
        except BaseException:
            self._db.close()
            raise
        # Opened after the migrations: it never writes (read-only), so never waits for
        # the writer's lock; WAL lets it read while a batch commits.
        self._read_lock = threading.Lock()
        self._reader = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            check_same_thread=False,
            isolation_level=None,
        )
        self.queues: list[Queue] = []
        """Given what each batch admitted, as it is to be sent on, inside its transaction
        (the sink's spool)."""
        self.observers: list[Observer] = []
        """Called inside each batch's transaction (the alert engine): what they write
        commits, or rolls back, with the state."""
        self.watchers: list[Watcher] = []
        """Told of agents changed outside envelopes and of rollbacks (``Watcher``)."""
        self._silence = SilenceWatch()
        """Where agents may have fallen silent (``mark_silent``)."""
        self._subjects = HeldSubjects()
        """Each subject's newest observation, its ``last_ts`` written behind it
        (``state/heldsubjects.py``)."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The store's connection inside one write transaction (for other tables of the store)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._roll_back()
                raise
            self._committed()

    def _roll_back(self) -> None:
        """After a failure inside a transaction: rolled back, and what it changed of the
        held subjects and the watchers undone. SQLite may have rolled it back itself (a
        full disk, an I/O error): a second ROLLBACK would raise in place of the failure,
        and skip the undoing."""
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        finally:
            self._rolled_back()

    def _rolled_back(self) -> None:
        self._subjects.undo()  # what it held is the committed store's again
        for watcher in self.watchers:
            watcher.rolled_back()

    def _committed(self) -> None:
        self._subjects.committed()
        for watcher in self.watchers:
            try:
                watcher.committed()
            except Exception:  # the transaction stands: its caller must not think otherwise
                log.exception("a watcher failed after a commit")

    def _agents_changed(self, keys: Sequence[str], forgotten: bool = False) -> None:
        for watcher in self.watchers:
            watcher.agents_changed(self._db, keys, forgotten)

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection of its own: a read (the IOC's, a console's, a round of
        the alert rules over every agent of the country) waits neither for a batch
        being committed nor holds one back; it sees what was last committed."""
        with self._read_lock:
            yield self._reader

    @contextlib.contextmanager
    def reading_between_batches(self) -> Iterator[sqlite3.Connection]:
        """The writer's connection, for reading only, while no transaction is open or can
        open: what is read is the store as the next transaction will find it, and no
        observer or watcher call falls between (what holds the store's facts in memory
        loads through it). Writers wait for the reading; the API's reads do not (the
        read-only connection is not taken: a long read there would hold ingest too)."""
        with self._lock:
            yield self._db

    def close(self) -> None:
        with self._read_lock:
            self._reader.close()
        with self._lock:
            if rows := self._subjects.everything():
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    self._write_held_subjects(rows)
                    self._db.execute("COMMIT")
                except sqlite3.Error:  # left as a crash leaves them: at most the lag behind
                    log.exception("the subjects' newest observations could not be written")
                self._subjects.committed()
            self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # writing -------------------------------------------------------------------

    def apply(
        self,
        envelopes: Iterable[Envelope] = (),
        statuses: Iterable[tuple[Status, float]] = (),
        received: float | None = None,
        spool: Sequence[bytes | None] | None = None,
    ) -> Applied:
        """Apply a batch in one transaction; when this returns, it is committed.

        ``spool``: each envelope's payload, in order, queued for the time-series sink
        in the same transaction (the sink turns them into points); None for one that
        was changed on the way (it is encoded again), and so is one whose samples the
        store refused in part. Raises whatever stopped the batch; nothing is applied.
        """
        now = self.clock() if received is None else received
        envelopes = list(envelopes)
        statuses = list(statuses)
        applied = Applied()
        with self._batch():
            for status, status_received in statuses:
                self._apply_status(status, status_received)
            self._apply_envelopes(envelopes, spool, now, applied)
        return applied

    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """A batch's transaction; rolled back, it leaves the series bounds to be read again."""
        try:
            with self.transaction():
                yield
        except BaseException:
            self._series_bound.clear()
            self._line_best.clear()
            self._latest_rows = []
            raise

    def apply_each(
        self,
        envelopes: Sequence[Envelope] = (),
        statuses: Sequence[tuple[Status, float]] = (),
        received: float | None = None,
        spool: Sequence[bytes | None] | None = None,
    ) -> Applied:
        """Like ``apply``, one message at a time, each in a savepoint of one transaction:
        a message that raises is rolled back alone and reported in ``failed_*``.

        The store itself failing (``sqlite3.OperationalError``: locked, disk full, I/O)
        is not a message's fault: raised as in ``apply`` when no message could be applied.
        """
        now = self.clock() if received is None else received
        applied = Applied()
        operational: list[sqlite3.OperationalError] = []

        def attempt(work: Callable[[], None]) -> str | None:
            self._db.execute("SAVEPOINT one")
            held = self._subjects.mark()
            try:
                work()
            except Exception as exc:
                self._db.execute("ROLLBACK TO one")
                self._db.execute("RELEASE one")
                self._subjects.undo(held)
                self._latest_rows = []
                self._series_bound.clear()
                self._line_best.clear()
                if isinstance(exc, sqlite3.OperationalError):
                    operational.append(exc)
                return _failure(exc)
            self._db.execute("RELEASE one")
            return None

        with self._batch():
            for index, (status, status_received) in enumerate(statuses):
                failed = attempt(functools.partial(self._apply_status, status, status_received))
                if failed:
                    applied.failed_statuses[index] = failed
            for index, envelope in enumerate(envelopes):
                payloads = None if spool is None else [spool[index]]
                failed = attempt(
                    functools.partial(self._apply_envelopes, [envelope], payloads, now, applied)
                )
                if failed:
                    applied.failed_envelopes[index] = failed
            # What a message rolled back had written of the subjects' observations.
            self._write_held_subjects(self._subjects.due(now))
            if operational and len(operational) == len(envelopes) + len(statuses):
                raise operational[0]
        return applied

    def _apply_envelopes(
        self,
        envelopes: Sequence[Envelope],
        spool: Sequence[bytes | None] | None,
        now: float,
        applied: Applied,
    ) -> None:
        """Inside a transaction: admit each envelope's samples, apply them, let the
        observers see what was admitted, and spool it."""
        fresh, seqs, gaps = self._first_applications(envelopes)
        self._touch_agents(envelopes, now, seqs)
        refused: collections.Counter[tuple[str, str]] = collections.Counter()
        admitted = [
            self._apply_envelope(envelope, refused, now, gap)
            for envelope, gap in zip(envelopes, gaps, strict=True)
        ]
        self._write_latest()
        self._write_held_subjects(self._subjects.due(now))
        for observer in self.observers:
            observer(self._db, admitted, now)
        if spool is not None and self.queues:
            # An envelope applied before (redelivered) changes no state, but its points
            # sent again would be kept twice by a time-series server without dedup.
            payloads = [
                payload if payload is not None and kept is envelope else encode(kept)
                for envelope, kept, payload, first in zip(
                    envelopes, admitted, spool, fresh, strict=True
                )
                if first
            ]
            for queue in self.queues:
                queue.enqueue(self._db, payloads)
        if refused:
            self._record_refusals(refused, now)
            applied.refused.update(refused)
        applied.seqs.update(seqs)

    def _write_latest(self) -> None:
        """The batch's latest samples in one statement: a newer sample of a series wins,
        whatever order they come in (one executemany per envelope cost more than the
        rows)."""
        if not self._latest_rows:
            return
        rows, self._latest_rows = self._latest_rows, []
        self._db.executemany(
            """INSERT INTO latest VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (agent_key, name, item, target) DO UPDATE SET
                 check_kind = excluded.check_kind, ts = excluded.ts,
                 outcome = excluded.outcome, fields = excluded.fields,
                 tags = excluded.tags, error = excluded.error
               WHERE excluded.ts > latest.ts""",
            rows,
        )

    def _write_held_subjects(self, rows: list[tuple[float, int]]) -> None:
        """Subjects' ``last_ts`` the store holds behind, (last_ts, id) each."""
        if rows:
            self._db.executemany("UPDATE subjects SET last_ts = MAX(last_ts, ?) WHERE id = ?", rows)

    def _quiet_subjects(
        self, db: sqlite3.Connection, before: float
    ) -> list[tuple[int, str, str, str, str]]:
        """Inside a transaction: the subjects not heard from since ``before``, by their
        newest observation (the store's may be behind it), no longer held; (id, agent
        key, kind, name, target) each."""
        quiet: list[tuple[int, str, str, str, str]] = []
        for subject_id, *key in db.execute(
            "SELECT id, agent_key, kind, name, target FROM subjects WHERE last_ts < ?", (before,)
        ):
            subject = (str(key[0]), str(key[1]), str(key[2]), str(key[3]))
            if (known := self._subjects.get(subject)) is not None and known.id == subject_id:
                if known.last_ts >= before:
                    continue
                self._subjects.written(known)  # deleted: nothing to write
                self._subjects.drop(subject)
            quiet.append((int(subject_id), *subject))
        return quiet

    def release_subjects(self, db: sqlite3.Connection) -> None:
        """Inside a transaction, before another writer moves or deletes subjects (a
        rename): each one's newest observation written, none held."""
        assert db is self._db, "the store's own transaction"
        self._write_held_subjects(self._subjects.everything())
        self._subjects.forget()

    def _record_refusals(self, refused: collections.Counter[tuple[str, str]], now: float) -> None:
        """Count refused samples per agent and reason: over the last window for the
        alert (a count older than the window starts again), and in total."""
        self._db.executemany(
            """INSERT INTO agent_refusals VALUES (?1, ?2, ?3, ?3, ?4, ?4)
               ON CONFLICT (agent_key, reason) DO UPDATE SET
                 samples = CASE WHEN last_at < ?4 - ?5 THEN ?3 ELSE samples + ?3 END,
                 total = total + ?3, last_at = MAX(last_at, ?4)""",
            [
                (key, reason, count, now, REFUSALS_WINDOW_S)
                for (key, reason), count in refused.items()
            ],
        )

    def _ensure_agent(self, key: str, province: str, commune: str, agent: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO agents (agent_key, province, commune, agent) "
            "VALUES (?, ?, ?, ?)",
            (key, province, commune, agent),
        )

    def _apply_status(self, status: Status, received: float) -> None:
        key = agent_key(status.province, status.commune, status.agent)
        self._ensure_agent(key, status.province, status.commune, status.agent)
        # A Last Will carries no time (it was written at connect): it happened on arrival.
        ts = status.ts or received
        self._db.execute(
            """UPDATE agents SET
                 state = ?1, reason = ?2, status_ts = ?3,
                 state_since = CASE WHEN state = ?1 THEN state_since ELSE ?3 END,
                 version = CASE WHEN ?4 != '' THEN ?4 ELSE version END,
                 checks = CASE WHEN ?5 != '[]' THEN ?5 ELSE checks END,
                 interval = CASE WHEN ?7 > 0 THEN ?7 ELSE interval END,
                 config_version = CASE WHEN ?1 = 'online' THEN ?8 ELSE config_version END,
                 config_hash = CASE WHEN ?1 = 'online' THEN ?9 ELSE config_hash END
               WHERE agent_key = ?6 AND status_ts <= ?3""",
            (
                status.state,
                status.reason,
                ts,
                status.version,
                _encode(status.checks).decode(),
                key,
                status.interval,
                status.config_version,
                status.config_hash,
            ),
        )
        if status.state == "online" and status.update is not None and status.update.state:
            self._apply_update(key, status.update, ts, received)
        self._agents_changed((key,))

    def _apply_update(self, key: str, report: UpdateReport, ts: float, received: float) -> None:
        """The update report of a birth, kept per agent; a report no newer than the one
        kept (a birth replayed late, or the same one again) changes nothing. ``failures``
        counts the reports in a row that said refused or failed for the same version."""
        self._db.execute(
            """INSERT INTO agent_updates VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,
                 CASE WHEN ?2 IN ('refused', 'failed') THEN 1 ELSE 0 END)
               ON CONFLICT (agent_key) DO UPDATE SET
                 failures = CASE
                   WHEN ?2 NOT IN ('refused', 'failed') THEN 0
                   WHEN state IN ('refused', 'failed') AND version = ?3 THEN failures + 1
                   ELSE 1 END,
                 state = ?2, version = ?3, previous = ?4, reason = ?5, ts = ?6,
                 launcher = ?7, received = ?8
               WHERE ?6 > ts""",
            (
                key,
                report.state,
                report.version,
                report.previous,
                report.reason,
                report.ts or ts,
                report.launcher,
                received,
            ),
        )

    def _first_applications(
        self, envelopes: Sequence[Envelope]
    ) -> tuple[list[bool], dict[str, str], list[int | None]]:
        """Whether each envelope is applied for the first time (by agent and seq), each
        agent's seqs applied with the batch's (``agents.seqs``, state/seqranges.py), and
        the gap each envelope fills in them (``SeqRanges.gap_end``)."""
        keys = list({agent_key(e.province, e.commune, e.agent) for e in envelopes})
        ranges: dict[str, SeqRanges] = {}
        for offset in range(0, len(keys), 500):  # SQLite's bound on parameters
            chunk = keys[offset : offset + 500]
            marks = ",".join("?" * len(chunk))
            for key, text in self._db.execute(
                f"SELECT agent_key, seqs FROM agents WHERE agent_key IN ({marks})",  # noqa: S608 - placeholders only
                chunk,
            ):
                ranges[key] = SeqRanges.parse(text)
        fresh = []
        gaps: list[int | None] = []
        for envelope in envelopes:
            key = agent_key(envelope.province, envelope.commune, envelope.agent)
            seen = ranges.get(key)
            if seen is None:
                seen = ranges[key] = SeqRanges([])
            gaps.append(seen.gap_end(envelope.seq))
            fresh.append(seen.add(envelope.seq))
        return fresh, {key: seen.text() for key, seen in ranges.items()}, gaps

    def mark_handled(
        self, db: sqlite3.Connection, envelopes: Sequence[tuple[str, int]]
    ) -> dict[str, str]:
        """Inside a transaction: envelopes the ingest refused for good, by (agent key, seq),
        counted among their agent's seqs, so that a receipt does not ask for them again;
        an agent the store does not know is left out. Returns the agents' seqs after."""
        ranges: dict[str, SeqRanges] = {}
        for key, seq in envelopes:
            seen = ranges.get(key)
            if seen is None:
                row = db.execute("SELECT seqs FROM agents WHERE agent_key = ?", (key,)).fetchone()
                if row is None:
                    continue
                seen = ranges[key] = SeqRanges.parse(str(row[0]))
            seen.add(seq)
        texts = {key: seen.text() for key, seen in ranges.items()}
        db.executemany(
            "UPDATE agents SET seqs = ? WHERE agent_key = ?",
            [(text, key) for key, text in texts.items()],
        )
        return texts

    def _touch_agents(
        self, envelopes: Sequence[Envelope], received: float, seqs: dict[str, str]
    ) -> None:
        """Each agent of the batch exists, its last sign of life and seq move forward, and
        data brings back an agent marked offline for silence: one row per agent, not per
        envelope (an agent's check runs arrive together)."""
        newest: dict[str, tuple[str, str, str, float, int]] = {}
        for envelope in envelopes:
            key = agent_key(envelope.province, envelope.commune, envelope.agent)
            seen = newest.get(key)
            if seen is None or envelope.seq > seen[4]:
                newest[key] = (
                    envelope.province,
                    envelope.commune,
                    envelope.agent,
                    received,
                    envelope.seq,
                )
        self._db.executemany(
            """INSERT INTO agents (agent_key, province, commune, agent, last_seen, last_seq, seqs)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
               ON CONFLICT (agent_key) DO UPDATE SET
                 last_seen = MAX(COALESCE(last_seen, 0), ?5),
                 last_seq = MAX(COALESCE(last_seq, -1), ?6),
                 seqs = ?7,
                 state_since = CASE WHEN state = 'offline' AND reason = 'silent'
                                    THEN ?5 ELSE state_since END,
                 state = CASE WHEN state = 'offline' AND reason = 'silent'
                              THEN 'online' ELSE state END,
                 reason = CASE WHEN state = 'offline' AND reason = 'silent'
                               THEN '' ELSE reason END""",
            [(key, *row, seqs[key]) for key, row in newest.items()],
        )

    def _admit_series(self, key: str, samples: list[Sample]) -> tuple[list[Sample], int]:
        """The samples within the agent's bound of series, and how many were refused.

        The common case costs no query: while the bound (what the agent holds at
        most) leaves room for every sample of the envelope being new, all are in.
        """
        limit = self.limits.max_series
        bound = self._series_bound.get(key)
        if bound is not None and bound + len(samples) <= limit:
            self._series_bound[key] = bound + len(samples)
            return samples, 0
        self._write_latest()  # what this batch holds already counts
        held = {
            (str(name), str(item), str(target))
            for name, item, target in self._db.execute(
                "SELECT name, item, target FROM latest WHERE agent_key = ?", (key,)
            )
        }
        kept: list[Sample] = []
        for sample in samples:
            series = (sample.name, sample.item, sample.target)
            if series not in held:
                if len(held) >= limit:
                    continue
                held.add(series)
            kept.append(sample)
        self._series_bound[key] = len(held)
        return kept, len(samples) - len(kept)

    def _apply_envelope(
        self,
        envelope: Envelope,
        refused: collections.Counter[tuple[str, str]],
        now: float,
        gap: int | None = None,
    ) -> Envelope:
        """Apply what the agent's bounds admit of an envelope; the envelope as admitted
        (the same object when nothing was refused). ``now``: the batch's time. ``gap``:
        the one it fills in its agent's seqs, if sent again after later ones."""
        key = agent_key(envelope.province, envelope.commune, envelope.agent)
        samples, over = self._admit_series(key, envelope.samples)
        if over:
            refused[(key, "series_limit")] += over
        # Answers newer than what their history holds: counted once, however often the
        # envelope comes again.
        timed: dict[tuple[str, str, float], tuple[Sample, int | None]] = {}
        for sample in samples:
            if sample.check != "system" or sample.outcome != "ok":
                continue
            answer = (sample.name, sample.target, sample.ts)
            if answer not in timed:
                fresh, subject_id = self._new_system_answer(key, sample)
                if fresh:  # the same answer twice in one envelope counts once
                    timed[answer] = (sample, subject_id)
        kept: list[Sample] = []
        for sample in samples:
            # Every sample passes here, most moving no history: a plain loop, no generator.
            for kind, state in histories(sample):
                if not self._apply_updown(key, sample, kind, state, now, gap):
                    refused[(key, "subject_limit")] += 1
                    break
            else:
                kept.append(sample)
        self._latest_rows.extend(
            (
                key,
                sample.name,
                sample.item,
                sample.target,
                sample.check,
                sample.ts,
                sample.outcome,
                _encode(sample.fields).decode(),
                _encode(sample.tags).decode() if sample.tags else "{}",
                sample.error,
            )
            for sample in kept
        )
        ports = [
            (key, sample.name, sample.target, "up" if up else "down", sample.ts)
            for sample in kept
            if sample.check == "snmp"
            and sample.item == "interface"
            and (up := SNMP_INTERFACE.flag(sample.fields, "oper_up")) is not None
        ]
        if ports:
            # Whether a port was ever seen operating decides if its being down is news
            # (a port never used is not a problem); its state since when, for the console.
            self._db.executemany(
                """INSERT INTO ports VALUES (?1, ?2, ?3, ?4, ?5, IIF(?4 = 'up', ?5, NULL), ?5)
                   ON CONFLICT (agent_key, device, port) DO UPDATE SET
                     since = IIF(excluded.state = ports.state, ports.since, excluded.since),
                     state = excluded.state,
                     first_up = COALESCE(ports.first_up, excluded.first_up),
                     last_ts = excluded.last_ts
                   WHERE excluded.last_ts > ports.last_ts""",
                ports,
            )
        if timed:
            admitted = {id(sample) for sample in kept}
            for sample, subject_id in timed.values():
                if id(sample) in admitted:
                    self._count_system_time(key, sample, subject_id)
        for sample in kept:
            if sample.check != "link" or sample.item or sample.tags.get("network") != "tslcd":
                continue
            # The commune's line for the console's chart: the best probe per 5 minutes.
            place = f"{envelope.province}/{envelope.commune}"
            bucket = int(sample.ts // RTT_BUCKET_S * RTT_BUCKET_S)
            if (rtt := LINK.number(sample.fields, "rtt_ms")) is not None:
                self._lower_line_best(_RTT_UPSERT, place, bucket, rtt)
            loss = LINK.number(sample.fields, "loss_percent")
            if loss is not None and 0 <= loss <= 100:
                self._lower_line_best(_LOSS_UPSERT, place, bucket, loss)
        if len(kept) == len(envelope.samples):
            return envelope
        return msgspec.structs.replace(envelope, samples=kept)

    def _new_system_answer(self, key: str, sample: Sample) -> tuple[bool, int | None]:
        """Whether a shared system's answer is newer than its history's latest word, and
        the history's id (None: its first answer, the history not made yet)."""
        row = self._db.execute(
            "SELECT id, last_ts FROM subjects "
            "WHERE agent_key = ? AND kind = 'system' AND name = ? AND target = ?",
            (key, sample.name, sample.target),
        ).fetchone()
        return (True, None) if row is None else (sample.ts > row[1], int(row[0]))

    def _count_system_time(self, key: str, sample: Sample, subject_id: int | None) -> None:
        """A shared system's healthy answer into its probe's hour and day histograms
        (collector/state/systemtimes.py)."""
        ms = SYSTEM.number(sample.fields, "total_ms")
        if ms is None:
            ms = SYSTEM.number(sample.fields, "connect_ms")
        if ms is None or not ms >= 0:
            return
        if subject_id is None:  # made by this very answer
            row = self._db.execute(
                "SELECT id FROM subjects "
                "WHERE agent_key = ? AND kind = 'system' AND name = ? AND target = ?",
                (key, sample.name, sample.target),
            ).fetchone()
            if row is None:
                return
            subject_id = int(row[0])
        bucket = systemtimes.bucket_of(ms)
        for table, period in (
            ("system_times_hourly", systemtimes.hour_of(sample.ts)),
            ("system_times_daily", systemtimes.day_of(sample.ts)),
        ):
            self._db.execute(
                f"INSERT INTO {table} VALUES (?1, ?2, histogram_add(NULL, ?3, 1)) "  # noqa: S608 - two fixed names
                "ON CONFLICT DO UPDATE SET counts = histogram_add(counts, ?3, 1)",
                (subject_id, period, bucket),
            )

    def _lower_line_best(self, upsert: str, place: str, bucket: int, value: float) -> None:
        value = packed.half(value)  # as the history keeps it: the same value writes nothing
        cached = (upsert, place, bucket)
        best = self._line_best.get(cached)
        if best is not None and best <= value:
            return  # the bucket holds this or lower already
        if len(self._line_best) >= _LINE_BEST_ENTRIES:
            self._line_best.clear()  # a bucket lasts 5 minutes: the old ones are not asked
        self._db.execute(upsert, (place, bucket, value))
        self._line_best[cached] = value if best is None else min(best, value)

    def _apply_updown(
        self,
        key: str,
        sample: Sample,
        kind: str,
        state: str,
        now: float,
        gap: int | None = None,
    ) -> bool:
        """Advance a subject's history; False when it would be a new subject beyond the
        agent's bound (nothing is written). ``now``: the batch's time. ``gap``: the
        envelope's, when it fills one in its agent's seqs (``SeqRanges.gap_end``)."""
        ts = sample.ts
        # A shared system's probe silent a long while (its PC off) leaves a gap: its
        # last state must not stand for the time nobody watched.
        watched_since = ts - GAP_MIN_S if kind == "system" else -math.inf
        subject = (key, kind, sample.name, sample.target)
        # A shared system's is never held: its answers' freshness and silent gaps are
        # read from the store (``_new_system_answer``, below).
        known = None if kind == "system" else self._subjects.get(subject)
        if known is not None:
            if known.state == state and known.last_ts < ts:
                # The common case: no change of state, a newer observation; written later.
                self._subjects.advance(known, ts, now)
                return True
            if ts == known.last_ts:
                return True  # applied already (what the store would say)
            # A change, or a sample sent again late: read from the store, brought up to date.
            if (row := self._subjects.written(known)) is not None:
                self._write_held_subjects([row])
            self._subjects.drop(subject)
        # The common case in one statement: no change of state, a newer observation.
        if found := self._db.execute(
            "UPDATE subjects SET last_ts = ? "
            "WHERE agent_key = ? AND kind = ? AND name = ? AND target = ? "
            "AND state = ? AND last_ts < ? AND last_ts >= ? RETURNING id",
            (ts, key, kind, sample.name, sample.target, state, ts, watched_since),
        ).fetchall():
            self._hold_subject(subject, found[0][0], state, ts)
            return True
        row = self._db.execute(
            "SELECT id, state, last_ts, monitored_since FROM subjects "
            "WHERE agent_key = ? AND kind = ? AND name = ? AND target = ?",
            (key, kind, sample.name, sample.target),
        ).fetchone()
        if row is None:
            (held,) = self._db.execute(
                "SELECT COUNT(*) FROM subjects WHERE agent_key = ?", (key,)
            ).fetchone()
            if held >= self.limits.max_subjects:
                return False
            cursor = self._db.execute(
                """INSERT INTO subjects (agent_key, kind, name, target, network,
                                         monitored_since, state, since, last_ts)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    key,
                    kind,
                    sample.name,
                    sample.target,
                    sample.tags.get("network", ""),
                    ts,
                    state,
                    ts,
                    ts,
                ),
            )
            if state == "down":
                self._db.execute(
                    "INSERT INTO outages (subject_id, start) VALUES (?, ?)", (cursor.lastrowid, ts)
                )
            if cursor.lastrowid is not None:
                self._hold_subject(subject, cursor.lastrowid, state, ts)
            return True
        subject_id, current, last_ts, monitored_since = row
        if ts <= last_ts:  # already applied, or older than what we know: sent again late
            if ts < last_ts:
                held = latesamples.Held(subject_id, current, monitored_since)
                latesamples.place(self._db, held, ts, state == "up", gap)
            return True
        if kind == "system" and ts - last_ts > (bound := self._gap_after(key)):
            # The last word holds for one interval; after it, nobody watched.
            self._db.execute(
                "INSERT OR IGNORE INTO subject_gaps VALUES (?, ?, ?)",
                (subject_id, last_ts + silence_bound_hold(bound), ts),
            )
        if state == current:
            self._db.execute("UPDATE subjects SET last_ts = ? WHERE id = ?", (ts, subject_id))
        else:
            # What bounds the change, for a late sample to tell its window from a stretch
            # believed steady (collector/state/latesamples.py): the last sample before it.
            if state == "down":
                self._db.execute(
                    "INSERT OR IGNORE INTO outages (subject_id, start, up_seen) VALUES (?, ?, ?)",
                    (subject_id, ts, last_ts),
                )
            else:
                self._db.execute(
                    "UPDATE outages SET end = ?, down_seen = ? "
                    "WHERE subject_id = ? AND end IS NULL",
                    (ts, last_ts, subject_id),
                )
            self._db.execute(
                "UPDATE subjects SET state = ?, since = ?, last_ts = ? WHERE id = ?",
                (state, ts, ts, subject_id),
            )
        self._hold_subject(subject, subject_id, state, ts)
        return True

    def _hold_subject(self, subject: SubjectKey, subject_id: int, state: str, ts: float) -> None:
        """A subject just written, held for its next samples (a shared system's never is)."""
        if subject[1] == "system":
            return
        if self._subjects.full:
            self.release_subjects(self._db)
        self._subjects.hold(subject, subject_id, state, ts)

    def _gap_after(self, key: str) -> float:
        row = self._db.execute("SELECT interval FROM agents WHERE agent_key = ?", (key,)).fetchone()
        return silence_bound(float(row[0]) if row and row[0] else 0.0)

    def mark_silent(
        self, now: float, intervals: float = 3.0, default_interval: float = 60.0
    ) -> list[str]:
        """Mark offline the online agents silent for ``intervals`` of their interval.

        For agents that vanish without a Last Will reaching the broker. The state
        starts at their last sign of life. Returns the agents marked (by key). Only the
        communes where one may be are read (``state/silence.py``).
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # An ingest gone quiet writes nothing: what it held behind is written here.
                self._write_held_subjects(self._subjects.due(now))
                keys = self._silence.silent(self._db, now, intervals, default_interval)
                self._db.executemany(
                    """UPDATE agents SET state = 'offline', reason = 'silent',
                              state_since = COALESCE(last_seen, status_ts)
                       WHERE agent_key = ?""",
                    [(key,) for key in keys],
                )
                self._agents_changed(keys)
                self._db.execute("COMMIT")
            except BaseException:
                self._roll_back()
                raise
            self._committed()
        return keys

    def prune(self, before: float, max_alerts: int | None = None) -> int:
        """Forget what the retention no longer covers (``before``: its cut-off), and the
        resolved alerts beyond the newest ``max_alerts``; returns how many outages went.

        Gone with the retention: outages that ended before the cut-off (an open one is
        kept whatever its age, and so is each subject's ``monitored_since``: availability
        over a window that starts after the cut-off is unchanged); the probes' silent
        spans and daily response times; subjects not heard from since before it (a
        replaced PC's probes, a system no longer probed) with all they still hold, since
        every window after the cut-off leaves them out (``last_ts >= start``); alerts
        resolved before it (or beyond ``max_alerts``), with their steps and notifications,
        and the repeats before it of those still firing; alert states fine since before
        it (a missing one is fine too); silences ended before it. By shorter
        windows of their own: the line's history, the hourly response times, console
        logouts.
        """
        now = self.clock()
        with self.transaction() as db:
            outages = db.execute(
                "DELETE FROM outages WHERE end IS NOT NULL AND end < ?", (before,)
            ).rowcount
            quiet = self._quiet_subjects(db, before)
            gone = [(subject[0],) for subject in quiet]
            for table in ("outages", "subject_gaps", "system_times_hourly", "system_times_daily"):
                db.executemany(f"DELETE FROM {table} WHERE subject_id = ?", gone)  # noqa: S608 - fixed names
            db.executemany("DELETE FROM subjects WHERE id = ?", gone)
            db.execute(
                "DELETE FROM line_history WHERE day < ?",
                (math.floor((now - RTT_KEEP_S) / packed.DAY_S),),
            )
            db.execute("DELETE FROM console_logouts WHERE expires < ?", (now,))
            db.execute(
                "DELETE FROM system_times_hourly WHERE hour < ?",
                (systemtimes.hour_of(now - systemtimes.HOURLY_KEEP_S),),
            )
            db.execute(
                "DELETE FROM system_times_daily WHERE day < ?", (systemtimes.day_of(before),)
            )
            db.execute("DELETE FROM subject_gaps WHERE end < ?", (before,))
            self._prune_alerts(db, before, max_alerts)
            db.execute("DELETE FROM alert_subjects WHERE state = 'ok' AND last_ts < ?", (before,))
            db.execute("DELETE FROM silences WHERE ends < ?", (before,))
            if quiet:  # the live model holds them too (a probe listed, its figures)
                for watcher in self.watchers:  # last: the nearest to the commit
                    watcher.subjects_deleted(quiet)
        return int(outages)

    @staticmethod
    def _prune_alerts(db: sqlite3.Connection, before: float, max_alerts: int | None) -> None:
        # Resolved before the cut-off (resolved_at >= started_at: the index on the start
        # finds them), and beyond the newest max_alerts (ids only grow): a national
        # collector's 13 months of alerts would be 20 GB, a province's a few hundred MB.
        cuts: list[tuple[str, float]] = [("started_at < ?1 AND resolved_at < ?1", before)]
        (newest,) = db.execute("SELECT MAX(id) FROM alerts").fetchone()
        if max_alerts is not None and newest is not None:
            cuts.append(("id <= ?1 AND state = 'resolved'", newest - max_alerts))
        for where, cut in cuts:
            gone = f"SELECT id FROM alerts WHERE {where}"  # noqa: S608 - fixed clauses
            for table in ("alert_steps", "notifications"):
                db.execute(f"DELETE FROM {table} WHERE alert_id IN ({gone})", (cut,))  # noqa: S608 - fixed names
            db.execute(f"DELETE FROM alerts WHERE {where}", (cut,))  # noqa: S608 - fixed clauses
        # An alert firing for ever (a PC with no anti-malware) is told again every few
        # hours: its repeats before the cut-off go, the rest of its history stays.
        db.execute(
            "DELETE FROM alert_steps WHERE step = 'notified repeat' AND at < ?1 AND alert_id "
            "IN (SELECT id FROM alerts WHERE state = 'firing' AND started_at < ?1)",
            (before,),
        )

    # console sessions ended before their time --------------------------------------

    def end_session(self, sid: str, expires: float) -> None:
        """A console session logged out: refused from now on, until it would have expired."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO console_logouts VALUES (?, ?)", (sid[:64], expires))

    def session_ended(self, sid: str) -> bool:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT 1 FROM console_logouts WHERE sid = ?", (sid[:64],)
            ).fetchone()
        return row is not None

    def loss_history(self, place: str, since: float) -> list[tuple[float, float]]:
        """(time, best loss in %) of a commune's line, every 5 minutes."""
        return self._line_history("SELECT day, loss FROM line_history", place, since)

    def rtt_history(self, place: str, since: float) -> list[tuple[float, float]]:
        """(time, best RTT in ms) of a commune's line ("province/commune"), every 5 minutes."""
        return self._line_history("SELECT day, rtt FROM line_history", place, since)

    def _line_history(self, select: str, place: str, since: float) -> list[tuple[float, float]]:
        with self._read_lock:
            rows = self._reader.execute(
                select + " WHERE place = ? AND day >= ? ORDER BY day",
                (place, math.floor(since / packed.DAY_S)),
            ).fetchall()
        found = []
        for day, values in rows:
            start = int(day) * packed.DAY_S
            for slot, value in packed.line_values(values):
                at = float(start + slot * packed.SLOT_S)
                if at >= since:
                    found.append((at, value))
        return found

    # reading -------------------------------------------------------------------

    def refusals(self, now: float) -> dict[str, int]:
        """Samples refused per agent in the last ``REFUSALS_WINDOW_S`` (any reason)."""
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT agent_key, SUM(samples) FROM agent_refusals WHERE last_at >= ? "
                "GROUP BY agent_key",
                (now - REFUSALS_WINDOW_S,),
            ).fetchall()
        return {str(key): int(count) for key, count in rows}

    def places(self) -> set[tuple[str, str]]:
        """(province, commune) of every agent known."""
        with self._read_lock:
            rows = self._reader.execute("SELECT DISTINCT province, commune FROM agents").fetchall()
        return {(str(p), str(c)) for p, c in rows}

    def agent_counts(self) -> dict[str, int]:
        """Agents by state."""
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT state, COUNT(*) FROM agents GROUP BY state"
            ).fetchall()
        return {str(state): int(count) for state, count in rows}

    def update_reports(self, key: str | None = None) -> dict[str, UpdateStanding]:
        """Agent key -> its last update report (agents that reported one; ``key``: that
        agent's only)."""
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT agent_key, state, version, reason, ts, failures FROM agent_updates "
                "WHERE ?1 IS NULL OR agent_key = ?1",
                (key,),
            ).fetchall()
        return {row[0]: UpdateStanding(*row[1:]) for row in rows}

    def latest_rollout(self) -> RolloutStanding | None:
        """The latest rollout of a release, as the alert rules see it."""
        with self._read_lock:
            row = self._reader.execute(
                "SELECT id, version, state, breach, why FROM rollouts "
                "ORDER BY created_at DESC, id DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        return RolloutStanding(row[0], row[1], row[2], bool(row[3]), row[4])

    def agents(self) -> list[AgentState]:
        with self._read_lock:
            rows = self._reader.execute(
                """SELECT agent_key, province, commune, agent, state, state_since, reason, version,
                          last_seen, last_seq, interval FROM agents ORDER BY agent_key"""
            ).fetchall()
        return [AgentState(*row) for row in rows]

    _LATEST = """SELECT agent_key, check_kind, name, item, target, ts, outcome, fields, tags, error
                 FROM latest"""

    def latest(self, key: str) -> list[LatestSample]:
        """An agent's latest sample per check, item and target."""
        with self._read_lock:
            rows = self._reader.execute(
                self._LATEST + " WHERE agent_key = ? ORDER BY name, item, target", (key,)
            ).fetchall()
        return [LatestSample.from_row(row) for row in rows]

    def latest_of(self, check: str, place: str = "") -> list[LatestSample]:
        """Every agent's latest samples of one kind of check, optionally under a place
        ("province/" or "province/commune/"), for the roll-ups."""
        lo, hi = _key_range(place)
        with self._read_lock:
            rows = self._reader.execute(
                self._LATEST + " WHERE check_kind = ? AND agent_key >= ? AND agent_key < ?"
                " ORDER BY agent_key, name, item, target",
                (check, lo, hi),
            ).fetchall()
        return [LatestSample.from_row(row) for row in rows]

    def forget_agents(self, silent_before: float) -> list[str]:
        """Forget agents not running (offline) whose last sign of life is older than the cut-off.

        A PC that was replaced or reinstalled under another name would otherwise
        count as "unknown" forever. The agent goes with its latest samples, ports, update
        report and refusal counts: the outage history of what it probed stays for the
        monthly reports (until the retention, ``prune``).
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    """SELECT agent_key FROM agents WHERE state != 'online'
                       AND COALESCE(last_seen, status_ts) < ?""",
                    (silent_before,),
                ).fetchall()
                keys = [(str(row[0]),) for row in rows]
                for table in ("latest", "ports", "agent_updates", "agent_refusals", "agents"):
                    self._db.executemany(f"DELETE FROM {table} WHERE agent_key = ?", keys)  # noqa: S608 - fixed names
                self._agents_changed([key for (key,) in keys], forgotten=True)
                self._db.execute("COMMIT")
            except BaseException:
                self._roll_back()
                raise
            self._committed()
        return [key for (key,) in keys]

    def ports(self, place: str = "") -> dict[tuple[str, str, str], Port]:
        """Router/switch ports under a place by (agent key, device, port)."""
        lo, hi = _key_range(place)
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT agent_key, device, port, state, since, first_up FROM ports "
                "WHERE agent_key >= ? AND agent_key < ?",
                (lo, hi),
            ).fetchall()
        return {(r[0], r[1], r[2]): Port(*r) for r in rows}

    def subjects(self, kind: str | None = None, place: str = "") -> list[Subject]:
        """Subjects with up/down history, optionally of one kind and under a place."""
        lo, hi = _key_range(place)
        query = (
            "SELECT id, agent_key, kind, name, target, network, monitored_since, state, since, "
            "last_ts, revised FROM subjects WHERE agent_key >= ? AND agent_key < ?"
        )
        with self._read_lock:
            if kind is None:
                rows = self._reader.execute(query + " ORDER BY id", (lo, hi)).fetchall()
            else:
                rows = self._reader.execute(
                    query + " AND kind = ? ORDER BY id", (lo, hi, kind)
                ).fetchall()
        return [Subject(*self._observed(row)) for row in rows]

    def _observed(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """A subject's row as read (id, agent key, kind, name, target, ..., last_ts,
        revised), its ``last_ts`` the newest when held behind (``_subjects``)."""
        known = self._subjects.get((row[1], row[2], row[3], row[4]))
        # Read without the writer's lock: a batch not yet committed may have moved it.
        if known is None or known.id != row[0] or known.state != row[7] or known.last_ts <= row[9]:
            return row
        return (*row[:9], known.last_ts, row[10])

    def gaps_of(
        self, subject_ids: Sequence[int], start: float, end: float
    ) -> dict[int, list[tuple[float, float]]]:
        """The spans each subject's probe was silent (no one watched), overlapping
        [start, end), by subject id."""
        result: dict[int, list[tuple[float, float]]] = {}
        with self._read_lock:
            for offset in range(0, len(subject_ids), 500):  # SQLite's bound on parameters
                chunk = list(subject_ids[offset : offset + 500])
                marks = ",".join("?" * len(chunk))
                rows = self._reader.execute(
                    f"""SELECT subject_id, start, end FROM subject_gaps
                        WHERE subject_id IN ({marks}) AND start < ? AND end > ?
                        ORDER BY subject_id, start""",  # noqa: S608 - placeholders only
                    (*chunk, end, start),
                ).fetchall()
                for subject_id, lo, hi in rows:
                    result.setdefault(int(subject_id), []).append((float(lo), float(hi)))
        return result

    def system_times(
        self, subject_ids: Sequence[int], start: float, end: float, *, hourly: bool
    ) -> dict[int, dict[int, int]]:
        """Response-time histograms (bucket -> answers) by subject over the hours (or
        Vietnam's days) that start within [start, end)."""
        size, shift = (
            (systemtimes.HOUR_S, 0) if hourly else (systemtimes.DAY_S, systemtimes.VIETNAM_OFFSET_S)
        )
        table, column = ("system_times_hourly", "hour") if hourly else ("system_times_daily", "day")
        lo = math.ceil((start + shift) / size)
        hi = math.ceil((end + shift) / size) - 1
        result: dict[int, dict[int, int]] = {}
        with self._read_lock:
            for offset in range(0, len(subject_ids), 500):  # SQLite's bound on parameters
                chunk = list(subject_ids[offset : offset + 500])
                marks = ",".join("?" * len(chunk))
                rows = self._reader.execute(
                    f"""SELECT subject_id, counts FROM {table}
                        WHERE subject_id IN ({marks}) AND {column} >= ? AND {column} <= ?""",  # noqa: S608 - fixed names, placeholders
                    (*chunk, lo, hi),
                ).fetchall()
                for subject_id, counts in rows:
                    found = result.setdefault(int(subject_id), {})
                    for bucket, count in packed.histogram_counts(counts).items():
                        found[bucket] = found.get(bucket, 0) + count
        return result

    def outages(
        self, subject_id: int, start: float = 0.0, end: float = float("inf")
    ) -> list[Outage]:
        """Outages of a subject that overlap [start, end), oldest first."""
        with self._read_lock:
            rows = self._reader.execute(
                """SELECT start, end FROM outages
                   WHERE subject_id = ? AND start < ? AND (end IS NULL OR end > ?)
                   ORDER BY start""",
                (subject_id, end, start),
            ).fetchall()
        return [Outage(float(lo), None if hi is None else float(hi)) for lo, hi in rows]

    def outages_of(
        self, subject_ids: Sequence[int], start: float = 0.0, end: float = float("inf")
    ) -> dict[int, list[Outage]]:
        """Outages overlapping [start, end) of these subjects, by subject id."""
        result: dict[int, list[Outage]] = {}
        with self._read_lock:
            for offset in range(0, len(subject_ids), 500):  # SQLite's bound on parameters
                chunk = list(subject_ids[offset : offset + 500])
                marks = ",".join("?" * len(chunk))
                rows = self._reader.execute(
                    f"""SELECT subject_id, start, end FROM outages
                        WHERE subject_id IN ({marks}) AND start < ? AND (end IS NULL OR end > ?)
                        ORDER BY subject_id, start""",  # noqa: S608 - placeholders only
                    (*chunk, end, start),
                ).fetchall()
                for subject_id, start_ts, end_ts in rows:
                    result.setdefault(subject_id, []).append(Outage(start_ts, end_ts))
        return result

    def outages_under(
        self,
        place: str,
        start: float = 0.0,
        end: float = float("inf"),
        *,
        kind: str | None = None,
        network: str | None = None,
    ) -> dict[int, list[Outage]]:
        """Outages overlapping [start, end) of every subject under a place (of that
        ``kind`` and ``network`` only, when given), by subject id: one query for a
        roll-up instead of one per subject."""
        lo, hi = _key_range(place)
        with self._read_lock:
            rows = self._reader.execute(
                # Ordered as the two indexes already deliver it: no sort of the rows.
                """SELECT o.subject_id, o.start, o.end FROM subjects s
                   JOIN outages o ON o.subject_id = s.id
                   WHERE s.agent_key >= ?1 AND s.agent_key < ?2
                     AND (?5 IS NULL OR s.kind = ?5) AND (?6 IS NULL OR s.network = ?6)
                     AND o.start < ?3 AND (o.end IS NULL OR o.end > ?4)
                   ORDER BY s.agent_key, s.kind, s.name, s.target, o.start""",
                (lo, hi, end, start, kind, network),
            ).fetchall()
        # A province's month is hundreds of thousands of rows: built in one tight pass
        # (the columns are REAL already).
        result: dict[int, list[Outage]] = {}
        current = -1
        found: list[Outage] = []
        for subject_id, start_ts, end_ts in rows:
            if subject_id != current:
                current, found = subject_id, []
                result[subject_id] = found
            found.append(Outage(start_ts, end_ts))
        return result
