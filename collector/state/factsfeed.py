"""The health model's facts, held current in another process than the writer's.

The read process (``collector/web/readprocess.py``) answers the IOC and the consoles
from a live health model of its own, so that their requests and ingest do not share
one interpreter. Its ``HeldFacts`` follow what the writer commits:

- ``FactsFeed`` (the writer's side) is one of the store's observers and watchers: what
  a write transaction showed it (the batch's admitted envelopes, agents changed
  outside them, subjects the prune deleted) is sent once the transaction has
  committed, never what was rolled back; from a thread of its own, so that ingest
  never waits for the other process.
  It is bounded by what it holds (``MAX_HELD`` envelopes, agents and subjects; a batch is up to
  1,000 envelopes, ~1.6 MB as objects): when the read process is that far behind,
  what does not fit is dropped and the next frame tells it to forget what it holds
  (``Reset``): it reads its facts afresh from the store, which has them all.
- ``follow`` (the read process's side) applies the frames in order to its facts,
  reading what they read again through a read-only connection of its own: as
  committed, at least as new as the frame. It decodes each envelope into a lighter
  copy (``FedEnvelope``): what the held facts read of it, not validated again (the
  collector admitted it, and only the collector writes to the pipe), a sample's fields
  decoded only when read (most samples are of checks the roll-up does not hold). The
  envelopes as the writer has them, validated on decoding, were most of what following
  the country's commits cost.

A province the read process loads is read under its facts' lock, and the frames are
applied under it too: a frame applied before the loading was committed before it (the
loading read it), one applied after is applied on what was loaded (applying again what
the loading read changes nothing: a sample replaces a held one only when newer, and
agents, subjects and ports are read as they are now).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec

from agent.wire import Envelope
from collector.state.heldfacts import HeldFacts

log = logging.getLogger(__name__)

#: Envelopes (and agents changed, subjects deleted) the read process may be behind
#: before the feed drops and resets: ~12 s of the country's rate, ~160 MB as objects.
MAX_HELD = 100_000


class Batch(msgspec.Struct, tag="e", array_like=True, frozen=True):
    received: float
    envelopes: list[Envelope]


class AgentsChanged(msgspec.Struct, tag="a", array_like=True, frozen=True):
    keys: list[str]
    forgotten: bool = False


class SubjectsDeleted(msgspec.Struct, tag="s", array_like=True, frozen=True):
    subjects: list[tuple[int, str, str, str, str]]
    """(id, agent key, kind, name, target) each."""


class Reset(msgspec.Struct, tag="r", array_like=True, frozen=True):
    """Frames were dropped: forget what is held, read it afresh."""


Part = Batch | AgentsChanged | SubjectsDeleted | Reset
_ENCODER = msgspec.msgpack.Encoder()

# The read process's side: an ``Envelope`` as encoded above, decoded into what the held
# facts read of it (what else it holds is skipped, not built), as the sink decodes the
# spool into what line protocol reads (``outputs/spooled.py``; gc=False for the same
# reason: plain data, never a cycle).

_NO_FIELDS = msgspec.Raw(msgspec.msgpack.encode({}))
_FIELDS = msgspec.msgpack.Decoder(dict[str, Any])


class FedSample(msgspec.Struct, frozen=True, gc=False):
    """A ``Sample`` as the held facts read it (``HeldSample``)."""

    ts: float
    check: str
    name: str
    outcome: str
    item: str = ""
    target: str = ""
    encoded_fields: msgspec.Raw = msgspec.field(default=_NO_FIELDS, name="fields")
    error: str = ""

    @property
    def fields(self) -> dict[str, Any]:
        return _FIELDS.decode(self.encoded_fields)


class FedEnvelope(msgspec.Struct, frozen=True, gc=False):
    """An ``Envelope`` as the held facts read it (``HeldEnvelope``)."""

    agent: str
    province: str
    commune: str
    samples: list[FedSample]


class FedBatch(msgspec.Struct, tag="e", array_like=True, frozen=True, gc=False):
    """A ``Batch`` as the read process decodes it."""

    received: float
    envelopes: list[FedEnvelope]


FedPart = FedBatch | AgentsChanged | SubjectsDeleted | Reset
_FRAME = msgspec.msgpack.Decoder(list[FedPart])


class FactsFeed:
    """The store's observer and watcher sending each committed transaction's facts to
    a connection (``attach``); with none attached, it only forgets them."""

    def __init__(self, max_held: int = MAX_HELD) -> None:
        self._pending: list[Part] = []
        """What the transaction in progress showed (only its thread touches it)."""
        self._frames: queue.Queue[tuple[list[Part], int] | None] = queue.Queue()
        self.max_held = max_held
        self._held = 0
        """Envelopes and agents in the frames not sent yet."""
        self._held_lock = threading.Lock()
        self._dropped = False
        self._attached: Connection | None = None
        self._sender: threading.Thread | None = None
        self.resets = 0

    # the store's observer and watcher ------------------------------------------------

    def observe(self, _db: sqlite3.Connection, envelopes: Sequence[Envelope], now: float) -> None:
        if self._attached is not None and envelopes:
            self._pending.append(Batch(now, list(envelopes)))

    def agents_changed(
        self, _db: sqlite3.Connection, keys: Sequence[str], forgotten: bool = False
    ) -> None:
        if self._attached is not None and keys:
            self._pending.append(AgentsChanged(list(keys), forgotten))

    def subjects_deleted(self, subjects: Sequence[tuple[int, str, str, str, str]]) -> None:
        if self._attached is not None and subjects:
            self._pending.append(SubjectsDeleted(list(subjects)))

    def rolled_back(self) -> None:
        self._pending = []

    def committed(self) -> None:
        if not self._pending:
            return
        parts, self._pending = self._pending, []
        weight = 1 + sum(_weight(part) for part in parts)
        with self._held_lock:
            if self._held + weight > self.max_held:
                self._dropped = True
                return
            self._held += weight
        if self._dropped:
            parts.insert(0, Reset())
            self._dropped = False
            self.resets += 1
        self._frames.put_nowait((parts, weight))

    # the connection --------------------------------------------------------------------

    def attach(self, connection: Connection) -> None:
        """Send from now on to ``connection`` (a read process just started: it holds
        nothing yet, so nothing before matters to it). The feed's thread owns it and
        closes it when done."""
        self.detach()
        self._frames = queue.Queue()
        with self._held_lock:
            self._held = 0
        self._dropped = False
        self._attached = connection
        self._sender = threading.Thread(
            target=self._send, args=(connection, self._frames), name="facts-feed", daemon=True
        )
        self._sender.start()

    def detach(self, timeout_s: float = 5.0) -> bool:
        """Stop sending; whether the feed's thread ended. One blocked writing to a read
        process that reads nothing ends when that process does: end it first."""
        sender, frames = self._sender, self._frames
        self._attached = self._sender = None
        if sender is None:
            return True
        frames.put_nowait(None)
        sender.join(timeout=timeout_s)
        return not sender.is_alive()

    def flush(self, timeout_s: float = 60.0) -> bool:
        """Wait until what committed was sent (or the sender ended); whether it was."""
        deadline = time.monotonic() + timeout_s
        while self._frames.unfinished_tasks and self._sender is not None:
            if not self._sender.is_alive() or time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def _send(
        self, connection: Connection, frames: queue.Queue[tuple[list[Part], int] | None]
    ) -> None:
        try:
            while True:
                item = frames.get()
                if item is None:
                    frames.task_done()
                    return
                parts, weight = item
                try:
                    connection.send_bytes(_ENCODER.encode(parts))
                finally:
                    with self._held_lock:
                        self._held -= weight
                    frames.task_done()
        except OSError:
            pass  # the read process is gone: the next one starts afresh
        except Exception:
            # The connection closed below ends the read process: the housekeeping then
            # starts one afresh, which reads its facts from the store.
            log.exception("the facts feed stopped")
        finally:
            connection.close()


def _weight(part: Part) -> int:
    """What a part holds of the read process's memory, in envelopes (``MAX_HELD``)."""
    if isinstance(part, Batch):
        return len(part.envelopes)
    if isinstance(part, AgentsChanged):
        return len(part.keys)
    if isinstance(part, SubjectsDeleted):
        return len(part.subjects)
    return 0


def follow(facts: HeldFacts, store_path: Path, connection: Connection) -> None:
    """Apply what the feed sends to ``facts`` until the writer's side closes (the read
    process's thread)."""
    db = sqlite3.connect(f"{store_path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        while True:
            try:
                data = connection.recv_bytes()
            except (EOFError, OSError):
                return
            try:
                apply(facts, db, decode_frame(data))
            except Exception:  # what is held may be half applied: read it afresh
                log.exception("a frame of the facts feed could not be applied: reading afresh")
                facts.rolled_back()
    finally:
        db.close()


def decode_frame(data: bytes) -> list[FedPart]:
    """A frame's parts; one that cannot be read says to read everything afresh."""
    try:
        return _FRAME.decode(data)
    except msgspec.DecodeError:
        log.exception("a frame of the facts feed could not be read: reading afresh")
        return [Reset()]


#: Envelopes applied under one hold of the facts' lock: a request waits for at most
#: these (a batch is up to 1,000, each applied alone as the store applied it).
APPLY_AT_ONCE = 64


def apply(facts: HeldFacts, db: sqlite3.Connection, parts: Sequence[FedPart]) -> None:
    for part in parts:
        if isinstance(part, FedBatch):
            envelopes = part.envelopes
            for start in range(0, len(envelopes), APPLY_AT_ONCE):
                facts.observe(db, envelopes[start : start + APPLY_AT_ONCE], part.received)
        elif isinstance(part, AgentsChanged):
            facts.agents_changed(db, part.keys, part.forgotten)
        elif isinstance(part, SubjectsDeleted):
            facts.subjects_deleted(part.subjects)
        elif isinstance(part, Reset):
            facts.rolled_back()
        else:  # the writer's own parts (a ``Batch``) are never applied undecoded
            raise TypeError(f"not a part of the feed as decoded: {type(part).__name__}")
