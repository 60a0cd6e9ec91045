"""Samples sent again after later ones are placed in the history as if they had come in
order (collector/state/latesamples.py).

The chaos soak (seed 26) found outages placed late: an envelope a killed broker lost is
sent again on the collector's receipt, after later ones, and a whole outage lost with
the broker came after a later outage had closed; the store, which keeps changes and not
samples, had nowhere to put it. The first tests replay that shape; the property test
holds every schedule of lost and resent envelopes to what in-order delivery stores.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.wire import Envelope
from collector.state.availability import Outage, availability
from collector.state.health import OVERVIEW_DAYS, HealthModel
from collector.state.livehealth import LiveHealth
from collector.state.store import StateStore, agent_key
from tests.factories import COMMUNE, PROVINCE, envelope, link, system

INTERVAL = 10.0  # the soak's probe interval
BASE = 2e9


def _at(step: int) -> float:
    return BASE + step * INTERVAL


def _envelopes(states: str, agent: str = "pc-01") -> list[Envelope]:
    """One envelope a probe interval, seq = its step: "u" up, "d" down."""
    return [
        envelope(step, link(_at(step), mark == "u"), agent=agent)
        for step, mark in enumerate(states)
    ]


def _history(store: StateStore, agent: str = "pc-01") -> tuple[list[Outage], str, float, float]:
    [subject] = store.subjects(place=agent_key(PROVINCE, COMMUNE, agent))
    return store.outages(subject.id), subject.state, subject.since, subject.monitored_since


def _steps(outages: Sequence[Outage]) -> list[tuple[float, float | None]]:
    return [
        ((o.start - BASE) / INTERVAL, None if o.end is None else (o.end - BASE) / INTERVAL)
        for o in outages
    ]


def _deliver(store: StateStore, batches: Sequence[Sequence[Envelope]]) -> None:
    for batch in batches:
        store.apply(batch, received=batch[-1].ts)


def test_a_whole_outage_lost_with_the_broker_is_placed_after_a_later_one_closed(
    tmp_path: Path,
) -> None:
    """The soak's shape: down [3, 6), up [6, 9), down [9, 13), up after; the broker lost
    steps 3-7, sent again after step 14. Placed as in order: [3, 6) and [9, 12)."""
    sent = _envelopes("uuuddduuudddduuu")
    lost = set(range(3, 8))
    with StateStore(tmp_path / "state.sqlite") as store:
        _deliver(store, [[e] for e in sent[:15] if e.seq not in lost])
        assert _steps(_history(store)[0]) == [(9, 13)]
        _deliver(store, [[e for e in sent if e.seq in lost], sent[15:]])
        outages, state, since, _ = _history(store)
        assert _steps(outages) == [(3, 6), (9, 13)]
        assert (state, since) == ("up", _at(13))
        # The console's and the reports' reading: 7 steps down of the 16 watched.
        watched = availability(outages, BASE, _at(16), BASE, _at(16))
        assert (watched.outages, watched.down_s) == (2, 7 * INTERVAL)


def test_a_lost_outage_whose_recovery_came_in_order_ends_at_its_last_down(
    tmp_path: Path,
) -> None:
    """Only the outage's own samples lost: its end is its last "down" seen, one probe
    interval at most before the "up" that came in order."""
    sent = _envelopes("uuudddduuuudduuu")
    lost = {3, 4, 5, 6}
    with StateStore(tmp_path / "state.sqlite") as store:
        _deliver(store, [[e] for e in sent[:14] if e.seq not in lost])
        _deliver(store, [[e for e in sent if e.seq in lost], sent[14:]])
        assert _steps(_history(store)[0]) == [(3, 6), (11, 13)]


def test_an_up_period_lost_inside_an_outage_splits_it(tmp_path: Path) -> None:
    """Down [2, 12) but up [5, 8): the "up" samples lost, the store took it for one
    outage; sent again, they split it, the second starting by its first "down" seen."""
    sent = _envelopes("uuddduuuddddduuu")
    lost = {5, 6, 7}
    with StateStore(tmp_path / "state.sqlite") as store:
        _deliver(store, [[e] for e in sent[:15] if e.seq not in lost])
        assert _steps(_history(store)[0]) == [(2, 13)]
        _deliver(store, [[e for e in sent if e.seq in lost]])
        outages, state, since, _ = _history(store)
        assert _steps(outages) == [(2, 5), (7, 13)]
        assert (state, since) == ("up", _at(13))


def test_an_up_period_lost_inside_the_current_outage_leaves_it_down(tmp_path: Path) -> None:
    sent = _envelopes("uuddduuudddd")
    lost = {5, 6, 7, 8}
    with StateStore(tmp_path / "state.sqlite") as store:
        _deliver(store, [[e] for e in sent if e.seq not in lost])
        _deliver(store, [[e for e in sent if e.seq in lost]])
        outages, state, since, _ = _history(store)
        assert _steps(outages) == [(2, 5), (8, None)]
        assert (state, since) == ("down", _at(8))


def test_two_lost_outages_with_an_up_seen_between_stay_two(tmp_path: Path) -> None:
    """Two losses (two gaps in the agent's seqs) with "up" samples that came in order
    between them: two outages, not one over the time the line was up."""
    sent = _envelopes("uudduuuudduuuu")
    lost = {2, 3, 8, 9}
    with StateStore(tmp_path / "state.sqlite") as store:
        _deliver(store, [[e] for e in sent if e.seq not in lost])
        _deliver(store, [[e for e in sent if e.seq in lost]])
        assert _steps(_history(store)[0]) == [(2, 3), (8, 9)]


def test_a_late_envelope_applied_again_changes_nothing(tmp_path: Path) -> None:
    sent = _envelopes("uuuddduuudddduuu")
    lost = [e for e in sent if 3 <= e.seq < 8]
    with StateStore(tmp_path / "state.sqlite") as store:
        _deliver(store, [[e] for e in sent if e not in lost])
        _deliver(store, [lost])
        placed = _history(store)
        _deliver(store, [lost, lost[2:], [lost[0]]])
        assert _history(store) == placed
        assert _steps(placed[0]) == [(3, 6), (9, 13)]


def test_a_first_sample_lost_starts_the_history_earlier(tmp_path: Path) -> None:
    sent = _envelopes("dduuu")
    with StateStore(tmp_path / "state.sqlite") as store:
        _deliver(store, [sent[2:], sent[:2]])
        outages, state, _, monitored_since = _history(store)
        assert _steps(outages) == [(0, 2)]
        assert (state, monitored_since) == ("up", BASE)


def test_a_shared_systems_probe_places_late_samples_and_keeps_its_silences(
    tmp_path: Path,
) -> None:
    """A shared system's history takes late samples the same way; the spans its probe
    was silent (recorded in order, 15 minutes at least) stay as they were."""
    marks = "uuudddduuu"
    sent = [
        envelope(step, system(_at(step), outcome="ok" if mark == "u" else "down"))
        for step, mark in enumerate(marks)
    ]
    back = [envelope(200 + n, system(_at(200 + n))) for n in range(3)]  # after a silence
    lost = [e for e in sent if 3 <= e.seq <= 6]
    with StateStore(tmp_path / "state.sqlite") as store:
        _deliver(store, [[e] for e in [*sent, *back] if e not in lost])
        [probe] = store.subjects(kind="system")
        silences = store.gaps_of([probe.id], BASE, _at(300))
        assert len(silences[probe.id]) == 1
        _deliver(store, [lost])
        assert _steps(store.outages(probe.id)) == [(3, 6)]
        assert store.gaps_of([probe.id], BASE, _at(300)) == silences
        assert store.subjects(kind="system")[0].state == "up"


def test_the_console_sees_an_outage_placed_late(tmp_path: Path) -> None:
    """The overview's combined lines and the live model's figures, computed before the
    late envelopes came, are computed again: the subject's ``revised`` moved."""
    sent = _envelopes("uuuddduuudddduuu")
    lost = [e for e in sent if 3 <= e.seq < 8]
    now = _at(16)
    with StateStore(tmp_path / "state.sqlite", clock=lambda: now) as store:
        live = LiveHealth(store, clock=lambda: now, figures_bound_s=3600.0)
        live.install(store)
        model = HealthModel(store, clock=lambda: now)
        try:
            _deliver(store, [[e] for e in sent if e not in lost])

            def overview(health: HealthModel) -> Any:
                return health.communes(PROVINCE, detail=False, days=OVERVIEW_DAYS)

            before = overview(live)
            assert overview(model) == before
            _deliver(store, [lost])
            fresh = overview(HealthModel(store, clock=lambda: now))
            assert fresh != before
            assert overview(live) == fresh
            assert overview(model) == fresh
        finally:
            live.close()


def _schedule(count: int, delayed: Sequence[bool], release: Sequence[int]) -> list[list[int]]:
    """Batches of seqs: each envelope in its turn unless delayed; a delayed one after the
    turn it is released at (never before its own), the delayed in seq order as the
    agent sends them again."""
    batches: list[list[int]] = []
    held: list[tuple[int, int]] = []
    released = -1
    for seq in range(count):
        if delayed[seq]:
            released = max(released, seq, release[seq])
            held.append((released, seq))
    for turn in range(count):
        batch = [] if delayed[turn] else [turn]
        batch += [seq for at, seq in held if at == turn]
        if batch:
            batches.append(batch)
    return batches


def test_any_schedule_of_lost_envelopes_sent_again_stores_what_in_order_delivery_does(
    tmp_path: Path,
) -> None:
    """For up/down histories probed every interval, a random subset of envelopes lost
    and sent again later in seq order: once all came, the outages are those of in-order
    delivery, each end within one probe interval, none missing and none invented; the
    state and watched time the same."""
    agents = itertools.count()
    with StateStore(tmp_path / "state.sqlite") as store:
        # At most 30 envelopes: an agent's seqs keep 16 ranges (state/seqranges.py), and
        # 30 envelopes make 15 gaps at most.
        @settings(max_examples=150, deadline=None)
        @given(
            st.lists(st.booleans(), min_size=2, max_size=30).flatmap(
                lambda ups: st.tuples(
                    st.just(ups),
                    st.lists(st.booleans(), min_size=len(ups), max_size=len(ups)),
                    st.lists(st.integers(0, len(ups) - 1), min_size=len(ups), max_size=len(ups)),
                )
            )
        )
        def check(drawn: tuple[list[bool], list[bool], list[int]]) -> None:
            ups, delayed, release = drawn
            marks = "".join("u" if up else "d" for up in ups)
            number = next(agents)
            in_order, late = f"ord-{number}", f"late-{number}"
            _deliver(store, [[e] for e in _envelopes(marks, in_order)])
            sent = _envelopes(marks, late)
            batches = _schedule(len(sent), delayed, release)
            _deliver(store, [[sent[seq] for seq in batch] for batch in batches])
            expected, state, _, watched = _history(store, in_order)
            found, found_state, _, found_watched = _history(store, late)
            assert (found_state, found_watched) == (state, watched)
            assert len(found) == len(expected), (_steps(expected), _steps(found), batches)
            for want, got in zip(expected, found, strict=True):
                assert abs(got.start - want.start) <= INTERVAL, (_steps(expected), _steps(found))
                if want.end is None or got.end is None:
                    assert want.end == got.end, (_steps(expected), _steps(found))
                else:
                    assert abs(got.end - want.end) <= INTERVAL, (_steps(expected), _steps(found))

        check()
