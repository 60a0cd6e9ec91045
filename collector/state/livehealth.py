"""The health model kept current between requests, for reads under ingest.

``HealthModel`` reads every fact of a province per request. ``LiveHealth`` gives
the same figures from facts held in memory (``state/heldfacts.py``: kept by the
store's observer as each batch commits), and computes a commune again only when
it changed:

- a commune's figures are cached with the generation of its facts: a request for
  a commune whose facts did not change takes them as they are;
- what depends on the recorded outages and on time (availability over 24 h / 7 d
  / 30 d, the line's days, a Polycom's ready share; also which probes are
  recent enough to count) is a commune's ``History``: read from the store again
  when its probes' states change, and otherwise at most ``figures_bound_s`` old
  (60 s: the 24 h figure moves by 0.07 points at most in that time). Each commune's
  bound is spread over [bound/2, bound] so that a province's communes are not all
  read again by the same request.

Everything else (agents online, verdicts, line up or down, RTT and loss, the
Polycom's and the interfaces' states, the reasons and the status) is as the
store holds it once the batch that brought it has committed. A commune whose
facts change with every batch (its RTT does) is assembled again from memory, with
no query.

The writer must be ``install``-ed: the model then observes it. Without it, this
is the plain ``HealthModel``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from collector.state.availability import Outage
from collector.state.health import (
    DAY,
    NOT_COMPUTED,
    WINDOWS,
    Availabilities,
    CommuneHealth,
    HealthModel,
    History,
    LineTarget,
    ProvinceHealth,
    _Facts,
    local_days,
)
from collector.state.heldfacts import HeldFacts, Place, Snapshot
from collector.state.inventory import Inventory
from collector.state.store import AgentState, LatestSample, StateStore, Subject

#: What depends on time alone is at most this old (seconds).
FIGURES_BOUND_S = 60.0
#: ``refresh`` computes again what would pass its bound within this time (seconds)...
REFRESH_AHEAD_S = 15.0
#: ...of the communes asked within this time: the others wait for their next request.
ASKED_WITHIN_S = 300.0

_Key = tuple[str, str, bool, int, float]
"""(province, commune, detail, days, horizon): one way of computing a commune."""


class _HeldTarget(msgspec.Struct, frozen=True, gc=False):
    """A probe's figures and the inputs they were computed from. Not tracked by the
    garbage collector (one per probe, replaced as its agent reports; what it holds
    holds nothing of it), where a pair of tuples was two tracked objects."""

    subject: Subject
    sample: LatestSample | None
    up: bool | None
    availability: Availabilities
    target: LineTarget


class LiveHealth(HealthModel):
    def __init__(
        self,
        store: StateStore,
        inventories: Iterable[Inventory] = (),
        clock: Callable[[], float] = time.time,
        *,
        figures_bound_s: float = FIGURES_BOUND_S,
    ) -> None:
        super().__init__(store, inventories, clock)
        self.figures_bound_s = figures_bound_s
        self.facts = HeldFacts()
        self._writer: StateStore | None = None
        """Where held facts are read from when not held yet: the writer, or in the read
        process a store of its own (``follow``)."""
        self._history_db: sqlite3.Connection | None = None
        """Its own connection for the outages: not queued behind the API's other reads."""
        self._history_lock = threading.Lock()
        self._histories: dict[_Key, tuple[tuple[Any, ...], float, History]] = {}
        self._results: dict[_Key, tuple[int, History, CommuneHealth]] = {}
        self._asked: dict[_Key, float] = {}
        """When each way of computing a commune was last asked by a request."""
        self._places: dict[str | None, tuple[tuple[int, object], list[Place]]] = {}
        """``places(province)`` by province, with the held places' version it was of."""
        self._provinces: tuple[tuple[int, object], list[str]] | None = None
        self._targets: dict[tuple[int, bool], _HeldTarget] = {}
        """Each probe's figures by (subject id, overview), while its inputs are the same
        objects: a commune changes a few probes at a time (the agents that reported)."""

    def install(self, writer: StateStore) -> None:
        """Keep current with what ``writer`` commits. Install it after the other
        observers: one that fails before it rolls the batch back unseen."""
        self._writer = writer
        self._open_history()
        writer.observers.append(self.facts.observe)
        writer.watchers.append(self.facts)

    def follow(self, store: StateStore) -> None:
        """Keep current in another process than the writer's: its facts are fed what
        the writer commits (``state/factsfeed.py``), and read afresh through ``store``."""
        self._writer = store
        self._open_history()

    def _open_history(self) -> None:
        if self.store.path != Path(":memory:"):
            self._history_db = sqlite3.connect(
                self.store.path.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False
            )

    def forget(self) -> None:
        """Hold nothing (what was held is read again when next asked): the collector's
        model once the read process answers again."""
        if not self.facts.holds_any():
            return
        self.facts.rolled_back()
        self._histories.clear()
        self._results.clear()
        self._asked.clear()
        self._targets.clear()

    def close(self) -> None:
        if self._history_db is not None:
            self._history_db.close()

    # the model's questions -----------------------------------------------------------

    def _known_places(self) -> set[tuple[str, str]]:
        if self._writer is None:
            return super()._known_places()
        return self.facts.places(self._writer)

    def places(self, province: str | None = None) -> list[Place]:
        # Asked several times by every request (the province's, the national list's
        # cursor, a commune's lookup): the country's 3,321 places sorted and filtered
        # again each time were most of a national page's own time.
        if self._writer is None:
            return super().places(province)
        version = (self.facts.places_version, self.inventories)
        held = self._places.get(province)
        if held is not None and held[0][0] == version[0] and held[0][1] is version[1]:
            return list(held[1])
        places = super().places(province)
        if places or province is None:  # not every name a request may ask for
            self._places[province] = (version, places)
        return list(places)

    def provinces(self) -> list[str]:
        if self._writer is None:
            return super().provinces()
        version = (self.facts.places_version, self.inventories)
        held = self._provinces
        if held is None or held[0][0] != version[0] or held[0][1] is not version[1]:
            held = self._provinces = (version, super().provinces())
        return list(held[1])

    def communes(
        self, province: str | None = None, *, detail: bool = True, days: int = 0
    ) -> list[CommuneHealth]:
        if self._writer is None:
            return super().communes(province, detail=detail, days=days)
        return self.some(self.places(province), detail=detail, days=days)

    def some(
        self, places: Sequence[Place], *, detail: bool = True, days: int = 0
    ) -> list[CommuneHealth]:
        if self._writer is None:
            return super().some(places, detail=detail, days=days)
        horizon = max(WINDOWS.values()) if detail else max(WINDOWS["7d"], days * DAY)
        return self._some(places, detail, days, horizon)

    def _some(
        self, places: Sequence[Place], detail: bool, days: int, horizon: float
    ) -> list[CommuneHealth]:
        assert self._writer is not None
        self.facts.load(self._writer, {p for p, _ in places})
        now = self._now()
        spans = local_days(now, days) if days else []
        asked = self._asked
        for province, commune in places:
            asked[(province, commune, detail, len(spans), horizon)] = now
        return self._lives(places, now, detail, spans, horizon)

    def refresh(self, ahead_s: float = REFRESH_AHEAD_S) -> int:
        """Compute again, off the requests' path, what depends on time alone for the
        communes asked lately, before it passes its bound: a request then finds it
        current instead of reading the commune's outages itself (a province's worth at
        once, while ingest holds the interpreter, was most of the reads' p99). How many
        were computed again. The housekeeping runs it every few seconds."""
        if self._writer is None:
            return 0
        for subject_id in self.facts.take_deleted():  # pruned: never asked for again
            self._targets.pop((subject_id, True), None)
            self._targets.pop((subject_id, False), None)
        now = self._now()
        due: list[_Key] = []
        for key, asked in list(self._asked.items()):
            if now - asked > ASKED_WITHIN_S:
                self._asked.pop(key, None)
                continue
            held = self._histories.get(key)
            if held is None or now + ahead_s - held[1] > self._bound((key[0], key[1])):
                due.append(key)
        if due:
            self.facts.load(self._writer, {key[0] for key in due})
        for province, commune, detail, days, horizon in due:
            spans = local_days(now, days) if days else []
            self._live((province, commune), now, detail, spans, horizon, ahead_s)
        return len(due)

    def commune(
        self, slug: str, province: str | None = None, *, days: int = 0
    ) -> CommuneHealth | None:
        if self._writer is None:
            return super().commune(slug, province, days=days)
        matches = [(p, c) for p, c in self.places(province) if c == slug]
        if not matches:
            return None
        return self.some(matches[:1], days=days)[0]

    def province(self, province: str) -> ProvinceHealth:
        if self._writer is None:
            return super().province(province)
        # The totals read no probe's own windows: the overview's way, over 30 days.
        communes = self._some(self.places(province), False, 0, max(WINDOWS.values()))
        return self.totals(province, communes)

    def line_probes(self, province: str, commune: str | None = None) -> list[Subject]:
        # A province's month of availability read its ~2,650 probes from the store, a
        # row at a time: under ingest, each row could hand the interpreter to another
        # thread for a switch interval.
        if self._writer is None:
            return super().line_probes(province, commune)
        self.facts.load(self._writer, [province])
        return self.facts.subjects(province, commune, kind="link", network="tslcd")

    def agents_in(self, province: str, commune: str) -> list[AgentState]:
        if self._writer is None:
            return super().agents_in(province, commune)
        self.facts.load(self._writer, [province])
        return self.facts.snapshot((province, commune), 0.0).agents

    def _target(
        self,
        subject: Subject,
        sample: LatestSample | None,
        up: bool | None,
        availability: Availabilities,
    ) -> LineTarget:
        key = (subject.id, availability is NOT_COMPUTED)
        held = self._targets.get(key)
        if (
            held is not None
            and held.subject is subject
            and held.sample is sample
            and held.up is up
            and held.availability is availability
        ):
            return held.target
        target = super()._target(subject, sample, up, availability)
        self._targets[key] = _HeldTarget(subject, sample, up, availability, target)
        return target

    # one commune ---------------------------------------------------------------------

    def _bound(self, place: Place) -> float:
        spread = zlib.crc32(f"{place[0]}/{place[1]}".encode()) / 2**32
        return self.figures_bound_s * (0.5 + 0.5 * spread)

    def _live(
        self,
        place: Place,
        now: float,
        detail: bool,
        spans: list[tuple[float, float]],
        horizon: float,
        ahead_s: float = 0.0,
    ) -> CommuneHealth:
        return self._lives([place], now, detail, spans, horizon, ahead_s)[0]

    def _lives(
        self,
        places: Sequence[Place],
        now: float,
        detail: bool,
        spans: list[tuple[float, float]],
        horizon: float,
        ahead_s: float = 0.0,
    ) -> list[CommuneHealth]:
        """``ahead_s``: what depends on time alone is taken as it is only if it will
        still be within its bound that much later. The communes to compute again have
        their facts copied at once (one wait for ingest's batch, not one each)."""
        found = [self._current(place, now, detail, spans, horizon, ahead_s) for place in places]
        missing = [index for index, health in enumerate(found) if health is None]
        snapshots = self.facts.snapshots(
            [places[index] for index in missing], now - max(WINDOWS.values())
        )
        for index, snapshot in zip(missing, snapshots, strict=True):
            found[index] = self._compute(
                places[index], snapshot, now, detail, spans, horizon, ahead_s
            )
        return [health for health in found if health is not None]

    def _current(
        self,
        place: Place,
        now: float,
        detail: bool,
        spans: list[tuple[float, float]],
        horizon: float,
        ahead_s: float,
    ) -> CommuneHealth | None:
        """The commune's figures as last computed, while they hold."""
        key: _Key = (*place, detail, len(spans), horizon)
        cached = self._results.get(key)
        held = self._histories.get(key)
        if (
            cached is not None
            and held is not None
            and cached[0] == self.facts.generation(place)
            and cached[1] is held[2]
            and now + ahead_s - held[1] <= self._bound(place)
        ):
            return cached[2]
        return None

    def _compute(
        self,
        place: Place,
        snapshot: Snapshot,
        now: float,
        detail: bool,
        spans: list[tuple[float, float]],
        horizon: float,
        ahead_s: float,
    ) -> CommuneHealth:
        key: _Key = (*place, detail, len(spans), horizon)
        facts = _Facts(horizon=horizon)
        facts.agents[place] = snapshot.agents
        for sample in snapshot.latest:
            facts.latest[(*place, sample.check)].append(sample)
        facts.subjects[place] = snapshot.subjects
        facts.ports = snapshot.ports
        history = self._history(key, place, snapshot.subjects, now, detail, spans, horizon, ahead_s)
        health = self._commune(facts, *place, now, detail=detail, days=spans, history=history)
        self._results[key] = (snapshot.generation, history, health)
        return health

    def _history(
        self,
        key: _Key,
        place: Place,
        subjects: list[Subject],
        now: float,
        detail: bool,
        spans: list[tuple[float, float]],
        horizon: float,
        ahead_s: float = 0.0,
    ) -> History:
        start = now - max(WINDOWS.values())
        links = [s for s in subjects if s.kind == "link"]
        polycoms = [s for s in subjects if s.kind == "polycom"]
        # A subject's outages change only with its state (and ``since``), or when late
        # samples revise them.
        signature = (
            tuple((s.id, s.state, s.since, s.monitored_since, s.revised, s.network,
                   s.last_ts >= start) for s in links),
            tuple((s.id, s.state, s.since, s.monitored_since, s.revised) for s in polycoms),
            tuple(lo for lo, _ in spans),
        )  # fmt: skip
        held = self._histories.get(key)
        if (
            held is not None
            and held[0] == signature
            and now + ahead_s - held[1] <= self._bound(place)
        ):
            return held[2]
        outages, consistent = self._outages(subjects, now - horizon, now)
        history = self.history(
            links, polycoms, outages, now, detail=detail, days=spans, horizon=horizon
        )
        if consistent:
            self._histories[key] = (signature, now, history)
        return history

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        if self._history_db is None:
            with self.store.reading() as db:
                yield db
            return
        with self._history_lock:
            yield self._history_db

    def _outages(
        self, subjects: list[Subject], start: float, end: float
    ) -> tuple[dict[int, list[Outage]], bool]:
        """The subjects' outages overlapping [start, end), and whether the store's
        subjects, read with them, are in the states held (no commit in between: the
        held facts may be a batch ahead of what the reader's snapshot shows)."""
        held = {s.id: (s.state, s.since, s.monitored_since, s.revised) for s in subjects}
        ids = list(held)
        found: dict[int, tuple[Any, ...]] = {}
        outages: dict[int, list[Outage]] = {}
        with self._reading() as db:
            db.execute("BEGIN")
            try:
                for offset in range(0, len(ids), 500):  # SQLite's bound on parameters
                    chunk = ids[offset : offset + 500]
                    marks = ",".join("?" * len(chunk))
                    for row in db.execute(
                        f"SELECT id, state, since, monitored_since, revised FROM subjects "  # noqa: S608
                        f"WHERE id IN ({marks})",
                        chunk,
                    ):
                        found[row[0]] = tuple(row[1:])
                    for subject_id, lo, hi in db.execute(
                        f"""SELECT subject_id, start, end FROM outages
                            WHERE subject_id IN ({marks}) AND start < ? AND (end IS NULL OR end > ?)
                            ORDER BY subject_id, start""",  # noqa: S608 - placeholders only
                        (*chunk, end, start),
                    ):
                        outages.setdefault(subject_id, []).append(Outage(lo, hi))
            finally:
                db.execute("COMMIT")
        return outages, found == held
