"""The facts the health model reads, held in memory and kept current by ingest.

Per commune: its agents, the latest samples the roll-up reads (anti-malware
verdicts, link probes, Polycoms, routers and their interfaces), its probes' and
Polycoms' up/down subjects and its router ports. A province is read from the
store once (``load``, under the writer's lock, so that no batch falls between
the reading and the holding); from then on the store's observer
(``observe``, inside each batch's transaction) and watcher (``agents_changed``,
``subjects_deleted``, ``rolled_back``) keep it as the store holds it:

- a latest sample replaces the one held when it is newer, exactly as the store's
  upsert does (the store is handed only what it admitted);
- an agent, a subject or a port is read again from the transaction's connection
  when it may have changed: an agent new or marked silent (data brings it back), a
  subject or port whose state the sample does not repeat.
  The common sample (same state, newer) reads nothing;
- a rolled-back transaction forgets everything: the next read loads afresh. (One
  message that ``apply_each`` rolls back alone after the observers saw it, its spool
  row failing, stays held until its series' next sample: the store tells no one.)

Outages are not held (a month of a province's probes is large): the live model
reads them when a commune's history is due (``state/livehealth.py``).

Each commune carries a generation, changed by every change of its facts: what was
computed from a generation holds while it is current.
"""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from agent.catalogue import SNMP_INTERFACE, Observed, histories
from collector.state.store import AgentState, LatestSample, Port, StateStore, Subject, agent_key

#: The checks the roll-up reads, and their items (others are ignored by it).
HELD_ITEMS = frozenset(
    {("antivirus", ""), ("link", ""), ("polycom", ""), ("snmp", ""), ("snmp", "interface")}
)
#: The subjects the roll-up reads.
HELD_KINDS = frozenset({"link", "polycom"})
_NO_TAGS: dict[str, str] = {}
"""The roll-up reads no tag: the held samples share one empty dict."""

_AGENT = """SELECT agent_key, province, commune, agent, state, state_since, reason, version,
                   last_seen, last_seq, interval FROM agents"""
_SUBJECT = """SELECT id, agent_key, kind, name, target, network, monitored_since, state, since,
                     last_ts, revised FROM subjects"""
_PORT = "SELECT agent_key, device, port, state, since, first_up FROM ports"

Place = tuple[str, str]


class HeldSample(Observed, Protocol):
    """What the held facts read of an admitted sample: a ``Sample`` in the collector,
    the feed's lighter copy in the read process (``state/factsfeed.py``)."""

    @property
    def ts(self) -> float: ...
    @property
    def name(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def fields(self) -> dict[str, Any]: ...
    @property
    def error(self) -> str: ...


class HeldEnvelope(Protocol):
    @property
    def province(self) -> str: ...
    @property
    def commune(self) -> str: ...
    @property
    def agent(self) -> str: ...
    @property
    def samples(self) -> Sequence[HeldSample]: ...


SeriesKey = tuple[str, str, str, str]
"""(agent key, name, item, target): a latest row's key."""


@dataclass
class _Commune:
    agents: dict[str, AgentState] = field(default_factory=dict)
    latest: dict[SeriesKey, LatestSample] = field(default_factory=dict)
    subjects: dict[SeriesKey, Subject] = field(default_factory=dict)
    """By (agent key, kind, name, target)."""
    last_ts: dict[int, float] = field(default_factory=dict)
    """A subject's newest sample, when newer than the ``Subject`` held says."""
    ports: dict[tuple[str, str, str], Port] = field(default_factory=dict)
    generation: int = 0


@dataclass(frozen=True)
class Snapshot:
    """A commune's facts at one generation, in the store's orders."""

    generation: int
    agents: list[AgentState]
    latest: list[LatestSample]
    subjects: list[Subject]
    ports: dict[tuple[str, str, str], Port]


class HeldFacts:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._communes: dict[Place, _Commune] = {}
        self._provinces: set[str] = set()
        """Provinces loaded: the observer keeps only theirs."""
        self._places: set[Place] | None = None
        """(province, commune) of every agent known, once read."""
        self.places_version = 0
        """Changed by every change of what ``places`` gives: what was derived from one
        version holds while it is current."""
        self._generations = itertools.count(1)
        self._deleted: list[int] = []
        """Ids of held subjects the prune deleted, until ``take_deleted``: what was
        derived of each subject is dropped by them."""

    # reading ---------------------------------------------------------------------

    def load(self, writer: StateStore, provinces: Iterable[str]) -> None:
        """Hold these provinces' facts (those not held yet), each read under the
        writer's lock: ingest waits for the reading, and no batch falls between. (Read
        while a transaction was open, a province missed what it changed: its observer
        and watcher calls came before the province was held, its commit after the
        reading. In the read process nothing writes: its frames come after commits.)"""
        for province in sorted(set(provinces) - self._provinces):
            with writer.reading_between_batches() as db, self._lock:
                if province not in self._provinces:
                    # One cursor, closed whatever happens: a reading left open on the
                    # writer's connection would hold an old snapshot, and the next
                    # batch could not begin.
                    cursor = db.cursor()
                    try:
                        self._load(cursor, province)
                    finally:
                        cursor.close()

    def places(self, writer: StateStore) -> set[Place]:
        places = self._places
        if places is None:
            with writer.reading_between_batches() as db, self._lock:
                places = self._places = _all_places(db)
                self.places_version += 1
        with self._lock:
            return set(places)

    def holds_any(self) -> bool:
        """Whether a province's facts are held."""
        return bool(self._provinces)

    def generation(self, place: Place) -> int:
        held = self._communes.get(place)
        return 0 if held is None else held.generation

    def snapshot(self, place: Place, recent: float) -> Snapshot:
        """The commune's facts; each subject's ``last_ts`` exact where it is before
        ``recent`` (the roll-up asks no more of it)."""
        return self.snapshots([place], recent)[0]

    def snapshots(self, places: Sequence[Place], recent: float) -> list[Snapshot]:
        """``snapshot`` of each, copied under one hold of the lock: ingest's observer
        holds it for a whole batch, and a request for a page of communes waited for
        it once per commune."""
        with self._lock:
            copied = [_copy(self._communes.get(place)) for place in places]
        return [_sorted(facts, recent) for facts in copied]

    def subjects(
        self, province: str, commune: str | None, *, kind: str, network: str
    ) -> list[Subject]:
        """The subjects of ``kind`` on ``network`` of a province (or of one commune), by
        id; their ``last_ts`` as of their last change of state (``snapshot`` says the
        newer ones)."""
        with self._lock:
            if commune is not None:
                communes = [self._communes.get((province, commune))]
            else:
                communes = [held for place, held in self._communes.items() if place[0] == province]
            found = [
                subject
                for held in communes
                if held is not None
                for subject in held.subjects.values()
                if subject.kind == kind and subject.network == network
            ]
        found.sort(key=lambda s: s.id)
        return found

    # kept current by the store -----------------------------------------------------

    def observe(
        self, db: sqlite3.Connection, envelopes: Sequence[HeldEnvelope], _now: float
    ) -> None:
        """The store's observer: a batch's admitted envelopes, inside its transaction."""
        with self._lock:
            places = self._places
            for envelope in envelopes:
                place = (envelope.province, envelope.commune)
                if places is not None and place not in places:
                    places.add(place)
                    self.places_version += 1
                if envelope.province not in self._provinces:
                    continue
                held = self._communes.get(place)
                if held is None:
                    held = self._communes[place] = _Commune()
                key = agent_key(envelope.province, envelope.commune, envelope.agent)
                agent = held.agents.get(key)
                # Data brings back an agent marked silent (and makes one new): else its
                # state is as held.
                changed = agent is None or (agent.state == "offline" and agent.reason == "silent")
                if changed:
                    _read_agent(db, held, key)
                for sample in envelope.samples:
                    changed = _apply(db, held, key, sample) or changed
                if changed:
                    held.generation = next(self._generations)

    def agents_changed(
        self, db: sqlite3.Connection, keys: Sequence[str], forgotten: bool = False
    ) -> None:
        """The store's watcher: agents' state changed outside envelopes (a status,
        silence, forgetting), inside the transaction, or in the read process after it:
        there ``db`` may read a later state, an agent forgotten and back already, so
        what forgetting took is dropped by what the writer says, not by what is read."""
        if not keys:
            return
        with self._lock:
            gone = False
            for key in keys:
                province, commune, _ = key.split("/", 2)
                place = (province, commune)
                held = None
                if province in self._provinces:
                    held = self._communes.get(place)
                    if held is None:
                        held = self._communes[place] = _Commune()
                found = _read_agent(db, held, key)
                if found and self._places is not None and place not in self._places:
                    self._places.add(place)
                    self.places_version += 1
                gone = gone or not found
                if held is None:
                    continue
                if forgotten or not found:  # its latest rows and ports went with it
                    held.latest = {k: v for k, v in held.latest.items() if k[0] != key}
                    held.ports = {k: v for k, v in held.ports.items() if k[0] != key}
                held.generation = next(self._generations)
            if gone and self._places is not None:
                self._places = _all_places(db)
                self.places_version += 1

    def subjects_deleted(self, subjects: Sequence[tuple[int, str, str, str, str]]) -> None:
        """The store's watcher: subjects the prune deleted, dropped by what the writer
        says (in the read process a later state may be read: one back already, with
        another id, is a later batch's to bring)."""
        with self._lock:
            for subject_id, key, kind, name, target in subjects:
                province, commune, _ = key.split("/", 2)
                held = self._communes.get((province, commune))
                if held is None:
                    continue
                found = held.subjects.get((key, kind, name, target))
                if found is None or found.id != subject_id:
                    continue
                del held.subjects[(key, kind, name, target)]
                held.last_ts.pop(subject_id, None)
                self._deleted.append(subject_id)
                held.generation = next(self._generations)

    def take_deleted(self) -> list[int]:
        """The ids of the subjects deleted since last taken (``subjects_deleted``)."""
        with self._lock:
            taken, self._deleted = self._deleted, []
        return taken

    def committed(self) -> None:
        """Nothing to do: what the observer saw is held already."""

    def rolled_back(self) -> None:
        """What the observer took from the transaction never was: forget everything."""
        with self._lock:
            self._communes = {}
            self._provinces = set()
            self._places = None
            self.places_version += 1

    # ---------------------------------------------------------------------------------

    def _load(self, db: sqlite3.Cursor, province: str) -> None:
        lo, hi = f"{province}/", f"{province}/\U0010ffff"
        communes: dict[Place, _Commune] = {}
        # Every text a row brings is a new object: an agent's key came once per latest
        # row, subject and port, and "link", "ok" or a probe's target once per row of
        # the province. One object for each distinct text of the province's rows (the
        # table goes with the reading) held the country's facts in 0.56 of the memory
        # (bench/heldfacts_bench.py).
        shared: dict[str, str] = {}
        share = shared.setdefault

        def texts(row: tuple[Any, ...]) -> list[Any]:  # agents and ports (fewer rows)
            return [share(v, v) if type(v) is str else v for v in row]

        def commune_of(key: str) -> _Commune:
            _, commune, _ = key.split("/", 2)
            held = communes.get((province, commune))
            if held is None:
                held = communes[(province, commune)] = _Commune()
            return held

        for row in db.execute(_AGENT + " WHERE agent_key >= ? AND agent_key < ?", (lo, hi)):
            agent = AgentState(*texts(row))
            commune_of(agent.agent_key).agents[agent.agent_key] = agent
        decode = msgspec.json.decode
        for row in db.execute(
            """SELECT agent_key, check_kind, name, item, target, ts, outcome, fields, error
               FROM latest WHERE agent_key >= ? AND agent_key < ?
                 AND check_kind IN ('antivirus', 'link', 'polycom', 'snmp')""",
            (lo, hi),
        ):
            if (row[1], row[3]) not in HELD_ITEMS:
                continue
            key, check, name, item, target = map(share, row[:5], row[:5])
            ts, outcome, fields, error = row[5:]
            commune_of(key).latest[(key, name, item, target)] = LatestSample(
                key, check, name, item, target, ts, share(outcome, outcome), decode(fields),
                _NO_TAGS, share(error, error),
            )  # fmt: skip
        for row in db.execute(
            _SUBJECT + " WHERE agent_key >= ? AND agent_key < ? AND kind IN ('link', 'polycom')",
            (lo, hi),
        ):
            key, kind, name, target, network = map(share, row[1:6], row[1:6])
            subject = Subject(
                row[0], key, kind, name, target, network, row[6], share(row[7], row[7]), *row[8:]
            )  # fmt: skip
            commune_of(key).subjects[(key, kind, name, target)] = subject
        for row in db.execute(_PORT + " WHERE agent_key >= ? AND agent_key < ?", (lo, hi)):
            port = Port(*texts(row))
            commune_of(port.agent_key).ports[(port.agent_key, port.device, port.port)] = port
        for held in communes.values():
            held.generation = next(self._generations)
        self._communes.update(communes)
        self._provinces.add(province)


_Copied = tuple[
    int, list[AgentState], list[tuple[SeriesKey, LatestSample]], list[Subject],
    dict[int, float], dict[tuple[str, str, str], Port],
]  # fmt: skip


def _copy(held: _Commune | None) -> _Copied | None:
    """What a snapshot takes of a commune, under the lock (the rest is done outside)."""
    if held is None:
        return None
    return (
        held.generation,
        list(held.agents.values()),
        list(held.latest.items()),
        list(held.subjects.values()),
        dict(held.last_ts),
        dict(held.ports),
    )


def _sorted(copied: _Copied | None, recent: float) -> Snapshot:
    if copied is None:
        return Snapshot(0, [], [], [], {})
    generation, agents, latest, subjects, last_ts, ports = copied
    agents.sort(key=lambda a: a.agent_key)
    latest.sort(key=lambda item: item[0])
    subjects.sort(key=lambda s: s.id)
    for index, subject in enumerate(subjects):
        # Its newest sample matters only to tell whether it is older than ``recent``.
        if subject.last_ts < recent and subject.id in last_ts:
            subjects[index] = dataclasses.replace(subject, last_ts=last_ts[subject.id])
    return Snapshot(generation, agents, [sample for _, sample in latest], subjects, ports)


def _all_places(db: sqlite3.Connection) -> set[Place]:
    rows = db.execute("SELECT DISTINCT province, commune FROM agents").fetchall()
    return {(str(p), str(c)) for p, c in rows}


def _subject_key(subject: Subject) -> SeriesKey:
    return (subject.agent_key, subject.kind, subject.name, subject.target)


def _read_agent(db: sqlite3.Connection, held: _Commune | None, key: str) -> bool:
    """The agent as the transaction holds it, into ``held``; False when it is gone."""
    row = db.execute(_AGENT + " WHERE agent_key = ?", (key,)).fetchone()
    if held is not None:
        if row is None:
            held.agents.pop(key, None)
        else:
            # Its names as held (shared with its rows, ``_load``), not the row's copies.
            old = held.agents.get(key)
            names = (
                row[:4] if old is None else (old.agent_key, old.province, old.commune, old.agent)
            )
            held.agents[key] = AgentState(*names, *row[4:])
    return row is not None


def _apply(db: sqlite3.Connection, held: _Commune, key: str, sample: HeldSample) -> bool:
    """One admitted sample into a commune's facts; whether they changed."""
    check, item = sample.check, sample.item
    series = (key, sample.name, item, sample.target)
    current = held.latest.get(series)
    if (check, item) not in HELD_ITEMS:
        if current is not None and sample.ts > current.ts:
            del held.latest[series]  # the series is now another check's
            return True
        return False
    changed = False
    if current is None:
        # A series new to the commune, or one another check holds (with the same name):
        # as the store has it.
        row = db.execute(
            "SELECT check_kind, ts, outcome, fields, error FROM latest "
            "WHERE agent_key = ? AND name = ? AND item = ? AND target = ?",
            series,
        ).fetchone()
        if row is not None and (row[0], item) in HELD_ITEMS:
            held.latest[series] = LatestSample(
                key, row[0], sample.name, item, sample.target, row[1], row[2],
                msgspec.json.decode(row[3]), _NO_TAGS, row[4],
            )  # fmt: skip
            changed = True
    elif sample.ts > current.ts:
        # The texts the held sample has already, where they are the same: each fed
        # sample's are new objects, and the series' next sample would keep them all.
        held.latest[series] = LatestSample(
            current.agent_key, current.check if check == current.check else check,
            current.name, current.item, current.target, sample.ts,
            current.outcome if sample.outcome == current.outcome else sample.outcome,
            sample.fields, _NO_TAGS,
            current.error if sample.error == current.error else sample.error,
        )  # fmt: skip
        changed = True
    if item == "interface":
        up = SNMP_INTERFACE.flag(sample.fields, "oper_up")
        port = held.ports.get((key, sample.name, sample.target))
        if up is not None and (port is None or port.state != ("up" if up else "down")):
            row = db.execute(
                _PORT + " WHERE agent_key = ? AND device = ? AND port = ?",
                (key, sample.name, sample.target),
            ).fetchone()
            if row is not None:
                names = row[:3] if port is None else (port.agent_key, port.device, port.port)
                held.ports[(key, sample.name, sample.target)] = Port(*names, *row[3:])
                changed = True
    elif check in HELD_KINDS:
        for kind, state in histories(sample):
            if kind in HELD_KINDS:
                changed = _apply_history(db, held, key, kind, sample, state) or changed
    return changed


def _apply_history(
    db: sqlite3.Connection, held: _Commune, key: str, kind: str, sample: HeldSample, state: str
) -> bool:
    subject = held.subjects.get((key, kind, sample.name, sample.target))
    if subject is not None and subject.state == state:
        newest = held.last_ts.get(subject.id, subject.last_ts)
        if sample.ts > newest:
            held.last_ts[subject.id] = sample.ts
            return True
        if sample.ts == newest:
            return False
    # New, its state changes, or a late sample (it may have placed an outage in the
    # history, state/latesamples.py): as the store has it.
    row = db.execute(
        _SUBJECT + " WHERE agent_key = ? AND kind = ? AND name = ? AND target = ?",
        (key, kind, sample.name, sample.target),
    ).fetchone()
    if row is None:
        return False
    if subject is not None and subject.network == row[5]:  # its texts as held
        row = (row[0], subject.agent_key, subject.kind, subject.name, subject.target,
               subject.network, *row[6:])  # fmt: skip
    fresh = Subject(*row)
    held.subjects[_subject_key(fresh)] = fresh
    held.last_ts.pop(fresh.id, None)
    return True
