"""A subject's newest observation is held in memory and written behind it
(collector/state/heldsubjects.py): the histories are those of writing every sample,
the store's ``last_ts`` is at most the lag behind, and nothing it holds is lost by a
close, a prune, a rollback or an idle ingest."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.wire import Envelope
from collector.state.heldsubjects import LAST_TS_LAG_S, Held, HeldSubjects, SubjectKey
from collector.state.store import StateStore, Subject
from tests.factories import envelope, link, system

BASE = 2e9
STEP = 60.0


class WrittenAtOnce(HeldSubjects):
    """Holds nothing: every sample reads and writes the store, as before holding."""

    def get(self, key: SubjectKey) -> Held | None:
        return None

    def hold(self, key: SubjectKey, subject_id: int, state: str, last_ts: float) -> None:
        return None


def _reference(path: Path) -> StateStore:
    store = StateStore(path)
    store._subjects = WrittenAtOnce()
    return store


def _in_file(path: Path) -> dict[tuple[str, str, str, str], tuple[Any, ...]]:
    """What a crash would leave: the committed rows, read by a connection of its own."""
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT agent_key, kind, name, target, id, state, since, monitored_since, last_ts "
            "FROM subjects"
        ).fetchall()
    return {tuple(row[:4]): tuple(row[4:]) for row in rows}


def _histories(store: StateStore) -> list[tuple[Subject, list[Any], list[Any]]]:
    return [
        (s, store.outages(s.id), store.gaps_of([s.id], 0, float("inf"))) for s in store.subjects()
    ]


def _samples(step: int, marks: str, agent: str) -> Envelope:
    """One envelope of an agent at a step: its two lines and a shared system, "u"/"d" each."""
    ts = BASE + step * STEP
    return envelope(
        step,
        link(ts, marks[0] == "u"),
        link(ts, marks[1] == "u", name="internet", target="8.8.8.8", network="internet"),
        system(ts, outcome="ok" if marks[2] == "u" else "down"),
        agent=agent,
    )


schedules = st.lists(
    st.tuples(
        st.sampled_from(["pc-01", "pc-02"]),
        st.text("ud", min_size=3, max_size=3),
        st.integers(0, 3),  # how many steps later it is delivered (a late sample)
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(schedule=schedules, per_batch=st.integers(1, 4), again=st.booleans())
def test_histories_are_those_of_writing_every_sample(
    schedule: list[tuple[str, str, int]], per_batch: int, again: bool, tmp_path_factory: Any
) -> None:
    tmp = tmp_path_factory.mktemp("held")
    held, written = StateStore(tmp / "held.sqlite"), _reference(tmp / "written.sqlite")
    made = [
        (step + delay, _samples(step, marks, agent))
        for step, (agent, marks, delay) in enumerate(schedule)
    ]
    order = [e for _, e in sorted(made, key=lambda pair: pair[0])]
    if again:  # delivered a second time (redelivery after a lost receipt)
        order += order[::2]
    received = BASE
    truths: list[tuple[float, dict[SubjectKey, float]]] = []
    for first in range(0, len(order), per_batch):
        batch = order[first : first + per_batch]
        received = max(received, *(e.ts for e in batch)) + 5  # the collector's clock
        applied = [store.apply(batch, received=received) for store in (held, written)]
        assert applied[0].refused == applied[1].refused
        assert _histories(held) == _histories(written)
        in_file, truth = _in_file(tmp / "held.sqlite"), _in_file(tmp / "written.sqlite")
        truths.append((received, {key: row[4] for key, row in truth.items()}))
        assert in_file.keys() == truth.keys()
        for key, (subject_id, state, since, monitored, last_ts) in in_file.items():
            assert (subject_id, state, since, monitored) == truth[key][:4]
            assert last_ts <= truth[key][4]
        # The store is never behind what was true ``lag`` ago.
        lagged = [known for at, known in truths if at <= received - LAST_TS_LAG_S]
        for key, last_ts in (lagged[-1] if lagged else {}).items():
            assert in_file[key][4] >= last_ts
    held.close()
    written.close()
    assert _in_file(tmp / "held.sqlite") == _in_file(tmp / "written.sqlite")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "s.sqlite") as opened:
        yield opened


def _every_minute(store: StateStore, minutes: Sequence[int], up: bool = True) -> None:
    for minute in minutes:
        ts = BASE + minute * STEP
        store.apply([envelope(minute, link(ts, up))], received=ts)


def test_a_steady_subject_is_written_once_a_lag_and_is_never_further_behind(
    store: StateStore, tmp_path: Path
) -> None:
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    for minute in range(30):
        _every_minute(store, [minute])
        [(_, _, _, _, last_ts)] = _in_file(tmp_path / "s.sqlite").values()
        now = BASE + minute * STEP
        assert now - LAST_TS_LAG_S - STEP <= last_ts <= now
        [subject] = store.subjects()
        assert subject.last_ts == now  # what the collector says is the newest
    writes = [s for s in statements if s.startswith("UPDATE subjects SET last_ts")]
    # 30 samples: the first written at once (its subject made), then one in 5 minutes.
    assert 5 <= len(writes) <= 30 * STEP / LAST_TS_LAG_S + 2


def test_closing_writes_what_is_held(tmp_path: Path) -> None:
    with StateStore(tmp_path / "s.sqlite") as store:
        _every_minute(store, range(3))
        [(*_, last_ts)] = _in_file(tmp_path / "s.sqlite").values()
        assert last_ts < BASE + 2 * STEP  # held behind while open
    [(*_, last_ts)] = _in_file(tmp_path / "s.sqlite").values()
    assert last_ts == BASE + 2 * STEP


def test_an_idle_ingest_still_writes_what_is_held_when_due(
    store: StateStore, tmp_path: Path
) -> None:
    _every_minute(store, range(3))
    store.mark_silent(BASE + 2 * STEP + 1)
    [(*_, last_ts)] = _in_file(tmp_path / "s.sqlite").values()
    assert last_ts < BASE + 2 * STEP  # not due yet
    store.mark_silent(BASE + STEP + LAST_TS_LAG_S)
    [(*_, last_ts)] = _in_file(tmp_path / "s.sqlite").values()
    assert last_ts == BASE + 2 * STEP


def test_a_change_of_state_and_a_late_sample_read_the_newest_observation(
    store: StateStore, tmp_path: Path
) -> None:
    written = _reference(tmp_path / "written.sqlite")
    for each in (store, written):
        _every_minute(each, range(4))
        _every_minute(each, [4], up=False)
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        # What bounds the outage: the last "up" seen before it, minute 3 (held, not written).
        assert db.execute("SELECT start, up_seen FROM outages").fetchall() == [
            (BASE + 4 * STEP, BASE + 3 * STEP)
        ]
    for each in (store, written):
        _every_minute(each, range(5, 8), up=False)
        # Sent again after later ones: placed inside the outage as the store knows it now.
        each.apply([envelope(6, link(BASE + 6.5 * STEP, True))], received=BASE + 8 * STEP)
    assert _histories(store) == _histories(written)
    [(_, outages, _)] = _histories(store)
    assert len(outages) == 2  # the late "up" split the outage
    [(*_, last_ts)] = _in_file(tmp_path / "s.sqlite").values()
    assert last_ts == BASE + 7 * STEP  # written before the history was read
    written.close()


def test_pruning_reads_the_newest_observations_and_a_pruned_subject_comes_back(
    store: StateStore,
) -> None:
    _every_minute(store, range(4))
    # The store's row says minute 0; the subject was heard at minute 3: kept.
    store.prune(BASE + 2 * STEP)
    [subject] = store.subjects()
    assert subject.last_ts == BASE + 3 * STEP
    store.prune(BASE + 10 * STEP)
    assert store.subjects() == []
    _every_minute(store, [11, 12])
    [back] = store.subjects()
    assert (back.monitored_since, back.last_ts) == (BASE + 11 * STEP, BASE + 12 * STEP)


def test_a_rolled_back_batch_leaves_nothing_held_that_was_not_committed(
    store: StateStore, tmp_path: Path
) -> None:
    _every_minute(store, range(3))

    def refuse(*_: object) -> None:
        raise RuntimeError("an observer fails")

    store.observers.append(refuse)
    with pytest.raises(RuntimeError):
        _every_minute(store, [3])
    store.observers.remove(refuse)
    [subject] = store.subjects()
    assert subject.last_ts <= BASE + 2 * STEP  # minute 3 was not committed
    _every_minute(store, [4, 5])
    [subject] = store.subjects()
    assert subject.last_ts == BASE + 5 * STEP
    assert store.outages(subject.id) == []


def test_a_full_hold_writes_everything_and_starts_again(tmp_path: Path) -> None:
    with StateStore(tmp_path / "s.sqlite") as store:
        store._subjects = HeldSubjects(limit=2)
        for minute in range(6):
            ts = BASE + minute * STEP
            store.apply([envelope(minute, link(ts, target=f"10.0.0.{minute % 3}"))], received=ts)
        assert len(store._subjects) <= 2
        assert sorted(s.last_ts for s in store.subjects()) == [
            BASE + 3 * STEP,
            BASE + 4 * STEP,
            BASE + 5 * STEP,
        ]
