"""A subject's newest observation is held in memory and written behind it
(collector/state/heldsubjects.py): the histories are those of writing every sample,
the store's ``last_ts`` is at most the lag behind, and nothing it holds is lost by a
close, a prune, a rollback or an idle ingest."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.wire import Envelope
from collector.state.heldsubjects import LAST_TS_LAG_S, Held, HeldSubjects, SubjectKey
from collector.state.store import StateStore
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
    """What a crash would leave: the committed rows, read by a connection of its own
    (closed: an unclosed one keeps its files open until a garbage collection, and the
    property test opens thousands)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute(
            "SELECT agent_key, kind, name, target, id, state, since, monitored_since, revised, "
            "last_ts FROM subjects"
        ).fetchall()
    return {tuple(row[:4]): tuple(row[4:]) for row in rows}


def _histories(path: Path) -> list[list[tuple[Any, ...]]]:
    """Every row of what a subject's history is, as committed, but its ``last_ts``."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [
            db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("outages", "subject_gaps", "system_times_hourly", "system_times_daily")
        ] + [
            db.execute(
                "SELECT id, agent_key, kind, name, target, network, monitored_since, state, "
                "since, revised FROM subjects ORDER BY id"
            ).fetchall()
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


class Poison:
    """An alert rule that fails on one agent's envelopes: the batch rolls back, then
    each message is applied alone and that agent's roll back alone (``apply_each``),
    as the ingest does."""

    def __call__(self, db: object, admitted: Sequence[Envelope], now: float) -> None:
        if any(e.agent == "pc-bad" for e in admitted):
            raise RuntimeError("a rule fails")


def _apply(store: StateStore, batch: list[Envelope], received: float) -> dict[Any, int]:
    try:
        return dict(store.apply(batch, received=received).refused)
    except RuntimeError:
        applied = store.apply_each(batch, received=received)
        assert set(applied.failed_envelopes) == {
            index for index, e in enumerate(batch) if e.agent == "pc-bad"
        }
        return dict(applied.refused)


schedules = st.lists(
    st.tuples(
        st.sampled_from(["pc-01", "pc-02", "pc-bad"]),
        st.text("ud", min_size=3, max_size=3),
        st.integers(0, 3),  # how many steps later it is delivered (a late sample)
        st.integers(0, 2),  # how many minutes more the collector's clock moved
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(schedule=schedules, per_batch=st.integers(1, 4), again=st.booleans())
def test_histories_are_those_of_writing_every_sample(
    schedule: list[tuple[str, str, int, int]],
    per_batch: int,
    again: bool,
    tmp_path_factory: Any,
) -> None:
    tmp = tmp_path_factory.mktemp("held")
    paths = tmp / "held.sqlite", tmp / "written.sqlite"
    held, written = StateStore(paths[0]), _reference(paths[1])
    for store in (held, written):
        store.observers.append(Poison())
    made = [
        (step + delay, _samples(step, marks, agent), pause)
        for step, (agent, marks, delay, pause) in enumerate(schedule)
    ]
    order = [(e, pause) for _, e, pause in sorted(made, key=lambda made: made[0])]
    if again:  # delivered a second time (redelivery after a lost receipt)
        order += order[::2]
    received = BASE
    truths: list[tuple[float, dict[Any, float]]] = []
    for first in range(0, len(order), per_batch):
        batch = [e for e, _ in order[first : first + per_batch]]
        pause = sum(p for _, p in order[first : first + per_batch])
        received = max(received + pause * STEP, *(e.ts for e in batch)) + 5
        assert _apply(held, batch, received) == _apply(written, batch, received)
        assert _histories(paths[0]) == _histories(paths[1])
        in_file, truth = _in_file(paths[0]), _in_file(paths[1])
        truths.append((received, {key: row[-1] for key, row in truth.items()}))
        for key, row in in_file.items():
            assert row[-1] <= truth[key][-1]
            # Never the lag behind its newest observation ...
            assert row[-1] > truth[key][-1] - LAST_TS_LAG_S
        # ... nor behind what was true the lag ago by the collector's clock.
        lagged = [known for at, known in truths if at <= received - LAST_TS_LAG_S]
        for key, last_ts in (lagged[-1] if lagged else {}).items():
            assert in_file[key][-1] >= last_ts
        assert [s.last_ts for s in held.subjects()] == [s.last_ts for s in written.subjects()]
    held.close()
    written.close()
    assert _in_file(paths[0]) == _in_file(paths[1])


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
        [(*_, last_ts)] = _in_file(tmp_path / "s.sqlite").values()
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
    with contextlib.closing(sqlite3.connect(tmp_path / "s.sqlite")) as db:
        # What bounds the outage: the last "up" seen before it, minute 3 (held, not written).
        assert db.execute("SELECT start, up_seen FROM outages").fetchall() == [
            (BASE + 4 * STEP, BASE + 3 * STEP)
        ]
    for each in (store, written):
        _every_minute(each, range(5, 8), up=False)
        # Sent again after later ones: placed inside the outage as the store knows it now.
        each.apply([envelope(6, link(BASE + 6.5 * STEP, True))], received=BASE + 8 * STEP)
    assert _histories(tmp_path / "s.sqlite") == _histories(tmp_path / "written.sqlite")
    [subject] = store.subjects()
    assert len(store.outages(subject.id)) == 2  # the late "up" split the outage
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


def test_a_rolled_back_batch_keeps_what_was_committed_before_it(tmp_path: Path) -> None:
    held, written = StateStore(tmp_path / "s.sqlite"), _reference(tmp_path / "written.sqlite")

    def refuse(*_: object) -> None:
        raise RuntimeError("an observer fails")

    for store in (held, written):
        _every_minute(store, range(4))  # minute 3 held, not written
        store.observers.append(refuse)
        with pytest.raises(RuntimeError):
            _every_minute(store, [4])
        store.observers.remove(refuse)
    [subject] = held.subjects()
    assert subject.last_ts == BASE + 3 * STEP  # minute 4 was not committed; 3 was
    for store in (held, written):
        # Late, older than minute 3: placed in the history, not taken as a change.
        store.apply([envelope(10, link(BASE + 2.5 * STEP, False))], received=BASE + 5 * STEP)
        _every_minute(store, [5], up=False)
    assert _histories(tmp_path / "s.sqlite") == _histories(tmp_path / "written.sqlite")
    with contextlib.closing(sqlite3.connect(tmp_path / "s.sqlite")) as db:
        assert db.execute("SELECT start, up_seen FROM outages ORDER BY start").fetchall()[-1] == (
            BASE + 5 * STEP,
            BASE + 3 * STEP,
        )
    held.close()
    written.close()


def test_a_backlog_applied_at_once_is_written_by_its_samples_time(
    store: StateStore, tmp_path: Path
) -> None:
    """Two hours the broker held while the collector was away, applied in one go: the
    store is never the lag behind the newest sample it committed."""
    minutes = range(120)
    store.apply([envelope(m, link(BASE + m * STEP)) for m in minutes], received=BASE + 120 * STEP)
    [(*_, last_ts)] = _in_file(tmp_path / "s.sqlite").values()
    assert last_ts > BASE + 119 * STEP - LAST_TS_LAG_S


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


def test_a_transaction_sqlite_rolled_back_itself_is_undone(tmp_path: Path) -> None:
    """A full disk or an I/O error: SQLite rolls the transaction back itself. The
    failure is the one raised, and what was held of the transaction goes with it
    (a subject held under an id that was never committed would write into the next
    subject given that id)."""
    held, written = StateStore(tmp_path / "s.sqlite"), _reference(tmp_path / "written.sqlite")
    both = (
        link(BASE, target="10.0.0.1"),
        link(BASE, target="10.0.0.2"),
    )
    for store in (held, written):
        store._db.execute(
            "CREATE TEMP TRIGGER fail BEFORE INSERT ON subjects WHEN NEW.target = '10.0.0.2' "
            "BEGIN SELECT RAISE(ROLLBACK, 'as a full disk would'); END"
        )
        with pytest.raises(sqlite3.IntegrityError, match="as a full disk would"):
            store.apply([envelope(0, *both)], received=BASE)
        assert not store._db.in_transaction
        store._db.execute("DROP TRIGGER fail")
        store.apply([envelope(0, *both)], received=BASE)  # sent again
        for minute in range(1, 8):
            ts = BASE + minute * STEP
            store.apply(
                [envelope(minute, link(ts, target="10.0.0.1"), link(ts, target="10.0.0.2"))],
                received=ts,
            )
    held.close()
    written.close()
    assert len(_in_file(tmp_path / "s.sqlite")) == 2
    assert _in_file(tmp_path / "s.sqlite") == _in_file(tmp_path / "written.sqlite")


def test_a_clock_gone_back_does_not_hold_writes_back(store: StateStore, tmp_path: Path) -> None:
    _every_minute(store, range(2))  # behind since minute 1 by the collector's clock
    store.mark_silent(BASE - 3600)  # the clock stepped back an hour
    [(*_, last_ts)] = _in_file(tmp_path / "s.sqlite").values()
    assert last_ts == BASE + STEP
