"""From MQTT messages to committed state: validate, batch, commit, then acknowledge.

The broker keeps a QoS 1 message for our persistent session until we
acknowledge it, and we acknowledge only after the state store has committed
it (paho-mqtt 2 ``manual_ack``). A kill -9 between the two means redelivery,
which the store ignores by construction. A bad message is rejected, counted by
reason, logged at most once per sender and reason per interval, and
acknowledged too, so that it is neither redelivered forever nor in the way of
the good messages behind it.

"Bad" is not only what breaks the contract: a message the store cannot apply
(any exception, a bug of ours included) is found by applying the batch again
message by message, and rejected alone (``apply_failed``); the others commit.
Only the store itself failing (locked, disk full) holds the batch back, not
acknowledged, to be tried again. Samples are refused alone where the rest of
their envelope is good: a sample setting a name the collector writes itself
(``reserved_name``), or beyond its agent's bounds (``series_limit``,
``subject_limit``). A field the catalogue gives another type (``up`` as text)
is dropped alone, the rest of its sample kept (``field_type``).
"""

from __future__ import annotations

import bisect
import collections
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from agent.catalogue import mistyped
from agent.wire import (
    RESERVED_FIELDS,
    RESERVED_TAGS,
    Envelope,
    Sample,
    Status,
    WireError,
    decode_envelope,
    decode_status,
    parse_topic,
    reserved_names,
)
from collector.state.store import Applied, StateStore, agent_key

log = logging.getLogger(__name__)


def _nothing() -> None:
    pass


class Message(msgspec.Struct, frozen=True):
    """One per message received, made by the network thread (a Struct: see
    ``codec.Publish``)."""

    topic: str
    payload: bytes
    received: float
    ack: Callable[[], None] = _nothing
    """Tells the broker we are done with this message (called once it is committed or
    refused; a source may instead acknowledge a whole batch once ``process`` returns)."""
    packet_id: int = 0
    """The broker's id of the message on its connection (``connection``): the MQTT source
    acknowledges by these, a batch at a time."""
    connection: int = 0


#: Upper bounds (seconds) of the commit-duration histogram.
COMMIT_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class IngestStats:
    received: int = 0
    applied_envelopes: int = 0
    applied_statuses: int = 0
    acked: int = 0
    batches: int = 0
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    samples_refused: collections.Counter[str] = field(default_factory=collections.Counter)
    """Samples refused alone (their envelope applied), by reason."""
    fields_dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    """Fields dropped alone (their sample applied), by reason: field_type."""
    commit_seconds_total: float = 0.0
    last_commit_s: float = 0.0
    commit_buckets: list[int] = field(default_factory=lambda: [0] * (len(COMMIT_BOUNDS) + 1))
    """Commits per duration bucket (COMMIT_BOUNDS, then above them all)."""
    lag_s: float = 0.0
    """Commit time minus the newest envelope's outbox time, last batch: how far behind."""
    last_commit_at: float = 0.0
    renamed: int = 0
    """Messages from agents still configured with a commune's former slug."""


class RejectionLog:
    """Log a rejection at most once per sender and reason per ``interval`` seconds."""

    def __init__(
        self, interval: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: collections.Counter[tuple[str, str]] = collections.Counter()

    def __call__(self, sender: str, reason: str, detail: str) -> bool:
        """True when the line was logged; False when it was counted only."""
        key = (sender, reason)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] += 1
            return False
        more = self._suppressed.pop(key, 0)
        suffix = f" (and {more} more since the last report)" if more else ""
        log.warning("rejected a message from %s: %s: %s%s", sender, reason, detail[:300], suffix)
        self._last[key] = now
        return True


RefusalRecord = Callable[[sqlite3.Connection, Sequence[tuple[str, int, str]], float], None]
"""(connection in a transaction, (agent key, seq, reason) of each envelope refused, when)."""


def _key_of(envelope: Envelope) -> str:
    return agent_key(envelope.province, envelope.commune, envelope.agent)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(max(0.0, min(ts, 1e11))))


def sender_of(topic: str, root: str) -> str:
    """Who a message claims to come from, for logs: the topic levels after the root."""
    rest = topic[len(root) + 1 :] if topic.startswith(root + "/") else topic
    return "/".join(rest.split("/")[:3])[:200] or "?"


class Ingestor:
    def __init__(
        self,
        store: StateStore,
        root: str,
        log_interval: float = 300.0,
        max_ahead_s: float = 300.0,
        max_age_s: float = 30 * 86400.0,
        renames: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        self.store = store
        self.renames = dict(renames or {})
        """(province, former slug) -> the commune's slug now (the inventory's formerly)."""
        self.root = root
        self.max_ahead_s = max_ahead_s
        self.max_age_s = max_age_s
        self.stats = IngestStats()
        self.rejections = RejectionLog(log_interval)
        self.refusals: RefusalRecord | None = None
        """With the applied record on (``[store] ledger``, state/applied.py): told of each
        whole envelope refused, by agent, seq and reason, before the batch is acknowledged."""
        self.receipts: Callable[[Mapping[str, str]], None] | None = None
        """Told, once a batch is committed, each of its agents' seqs handled (committed or
        refused for good), as ``agents.seqs`` says them: what receipts say (receipts.py)."""
        self._refused: list[tuple[str, int, str]] = []

    def _reject(self, message: Message, reason: str, detail: str) -> None:
        self.stats.rejected[reason] += 1
        self.rejections(sender_of(message.topic, self.root), reason, detail)

    def _decode(self, message: Message) -> Envelope | Status | None:
        decoded: Envelope | Status | None = None
        try:
            identity = parse_topic(self.root, message.topic)
            if identity.kind == "status":
                decoded = decode_status(message.payload, identity)
            elif identity.kind == "data":
                decoded = decode_envelope(message.payload, identity)
            else:  # never subscribed to: what the collector itself sends to agents
                raise WireError("bad_topic", f"{message.topic}: not an agent's topic")
            self._check_clock(decoded, message.received)
        except WireError as exc:
            self._reject(message, exc.reason, exc.detail)
            if isinstance(decoded, Envelope):  # a whole envelope refused (its clock)
                self._refused.append((_key_of(decoded), decoded.seq, exc.reason))
            return None
        except Exception as exc:  # a bug of ours must not take the batch with it
            self._reject(message, "decode_failed", f"{type(exc).__name__}: {exc}")
            return None
        return decoded

    def _renamed(self, decoded: Envelope | Status) -> Envelope | Status:
        """The message as from the commune's slug now, when it names a former one.

        The topic check is done by then: the broker let the agent publish under its own
        (old) topic, and its messages are kept and counted under the commune it is in.
        """
        now = self.renames.get((decoded.province, decoded.commune))
        if now is None:
            return decoded
        self.stats.renamed += 1
        return msgspec.structs.replace(decoded, commune=now)

    def _screen(self, envelope: Envelope) -> Envelope:
        """The envelope without samples that set names the collector writes itself, and
        without catalogued fields of the wrong type (the rest of their sample kept)."""
        # Every envelope passes here: one plain loop while all is well.
        for sample in envelope.samples:
            if mistyped(sample) or reserved_names(sample):
                break
        else:
            return envelope
        typed = [self._typed(envelope, s) for s in envelope.samples]
        kept = [s for s in typed if not reserved_names(s)]
        refused = len(typed) - len(kept)
        if refused:
            self.stats.samples_refused["reserved_name"] += refused
            self.rejections(
                agent_key(envelope.province, envelope.commune, envelope.agent),
                "reserved_name",
                f"{refused} samples set a tag ({', '.join(sorted(RESERVED_TAGS))}) or field "
                f"({', '.join(sorted(RESERVED_FIELDS))}) that the collector writes itself; "
                "refused",
            )
        return msgspec.structs.replace(envelope, samples=kept)

    def _typed(self, envelope: Envelope, sample: Sample) -> Sample:
        wrong = mistyped(sample)
        if not wrong:
            return sample
        self.stats.fields_dropped["field_type"] += len(wrong)
        self.rejections(
            agent_key(envelope.province, envelope.commune, envelope.agent),
            "field_type",
            f"{sample.check} {sample.name}: {', '.join(sorted(wrong))} not of the type the "
            "field catalogue gives; dropped, the rest of the sample kept",
        )
        fields = {k: v for k, v in sample.fields.items() if k not in wrong}
        return msgspec.structs.replace(sample, fields=fields)

    def _check_clock(self, decoded: Envelope | Status, received: float) -> None:
        """Times from an agent whose clock is wrong are refused, not stored at the wrong time.

        Ahead: later than arrival plus ``max_ahead_s`` (a future time would also freeze
        the agent's state and history until that time came). Behind: older than
        ``max_age_s``, beyond any outbox backlog.
        """
        # A Last Will carries no time (0: it happens on arrival); any other time of 0
        # is as wrong a clock as any other old time.
        if isinstance(decoded, Status):
            newest = oldest = decoded.ts or received
        else:  # every envelope: one pass, nothing built
            newest = oldest = decoded.ts
            for sample in decoded.samples:
                ts = sample.ts
                if ts > newest:
                    newest = ts
                elif ts < oldest:
                    oldest = ts
        if newest > received + self.max_ahead_s:
            raise WireError(
                "clock_ahead",
                f"time {_iso(newest)} is {(newest - received) / 3600:.1f} h ahead of the "
                "collector: fix the agent's clock",
            )
        if oldest < received - self.max_age_s:
            raise WireError(
                "clock_behind",
                f"time {_iso(oldest)} is {(received - oldest) / 86400:.1f} days old, beyond "
                "any backlog: fix the agent's clock",
            )

    def process(self, batch: Iterable[Message]) -> None:
        """Validate a batch, commit the good part in one transaction, then ack everything.

        Raises ``sqlite3.OperationalError`` when the store cannot commit: nothing is
        acknowledged then, and the batch may be given again.
        """
        messages = list(batch)
        self._refused = []  # a batch given again (the store failed) is refused again
        envelopes: list[Envelope] = []
        payloads: list[bytes | None] = []
        statuses: list[tuple[Status, float]] = []
        envelope_of: list[Message] = []
        status_of: list[Message] = []
        self.stats.received += len(messages)
        for message in messages:
            received_as = self._decode(message)
            decoded = received_as
            if decoded is not None and self.renames:
                decoded = self._renamed(decoded)
            if isinstance(decoded, Envelope):
                screened = self._screen(decoded)
                envelopes.append(screened)
                # The payload as received serves the spool only when nothing was changed.
                payloads.append(message.payload if screened is received_as else None)
                envelope_of.append(message)
            elif isinstance(decoded, Status):
                statuses.append((decoded, message.received))
                status_of.append(message)
        applied: Applied | None = None
        if envelopes or statuses:
            started = time.perf_counter()
            received = max(m.received for m in messages)
            try:
                # The payloads as received: the store's queues (the sink's spool) take them.
                applied = self.store.apply(envelopes, statuses, received=received, spool=payloads)
            except sqlite3.OperationalError:
                raise
            except Exception as exc:
                log.error(
                    "a batch of %d messages could not be applied (%s: %s); "
                    "applying them one by one",
                    len(messages),
                    type(exc).__name__,
                    str(exc)[:200],
                )
                applied = self.store.apply_each(
                    envelopes, statuses, received=received, spool=payloads
                )
            self._count(applied, envelopes, envelope_of, status_of)
            elapsed = time.perf_counter() - started
            self.stats.commit_seconds_total += elapsed
            self.stats.last_commit_s = elapsed
            self.stats.commit_buckets[bisect.bisect_left(COMMIT_BOUNDS, elapsed)] += 1
            self.stats.applied_envelopes += len(envelopes) - len(applied.failed_envelopes)
            self.stats.last_commit_at = time.time()
            if envelopes:
                self.stats.lag_s = max(
                    0.0, self.stats.last_commit_at - max(e.ts for e in envelopes)
                )
            self.stats.applied_statuses += len(statuses) - len(applied.failed_statuses)
        self.stats.batches += 1
        self._settle_refused(messages, applied)
        # Only now: everything good is committed, everything bad is counted.
        for message in messages:
            message.ack()
        self.stats.acked += len(messages)

    def _settle_refused(self, messages: list[Message], applied: Applied | None) -> None:
        """Envelopes refused whole recorded (the soak's record) and counted among their
        agents' seqs handled; the receipts told of the batch."""
        handled: dict[str, str] = {}
        if self._refused:
            refused, self._refused = self._refused, []
            if self.refusals is not None or self.receipts is not None:
                with self.store.transaction() as db:
                    if self.refusals is not None:
                        self.refusals(db, refused, max(m.received for m in messages))
                    if self.receipts is not None:
                        handled = self.store.mark_handled(
                            db, [(key, seq) for key, seq, _ in refused]
                        )
        if self.receipts is not None and (handled or (applied is not None and applied.seqs)):
            self.receipts({**(applied.seqs if applied is not None else {}), **handled})

    def _count(
        self,
        applied: Applied,
        envelopes: list[Envelope],
        envelope_of: list[Message],
        status_of: list[Message],
    ) -> None:
        for index, why in applied.failed_envelopes.items():
            self._reject(envelope_of[index], "apply_failed", why)
            self._refused.append((_key_of(envelopes[index]), envelopes[index].seq, "apply_failed"))
        for index, why in applied.failed_statuses.items():
            self._reject(status_of[index], "apply_failed", why)
        for (key, reason), count in applied.refused.items():
            self.stats.samples_refused[reason] += count
            self.rejections(
                key,
                reason,
                f"{count} samples refused: the agent is at its bound of "
                + ("series" if reason == "series_limit" else "subjects with history"),
            )
