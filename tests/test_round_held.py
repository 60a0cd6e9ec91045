"""A round of the agent and commune rules holds what it read between rounds and reads
again only the communes the store lists as changed (``collector.alerts.round.HeldRound``);
so does the search for silent agents (``collector.state.silence``): whatever changes the
agents (statuses, from clocks ahead too, intervals, update reports, refusals, data
bringing silent agents back, agents forgotten, a transaction rolled back) and however
time passes, they must find exactly the silent agents a read of every agent finds, and
decide exactly what a round reading every agent and every commune afresh decides: the
same alert states, alerts, steps and notifications."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.wire import Envelope, Sample, Status, UpdateReport
from collector.alerts import round as round_reads
from collector.alerts.engine import AlertEngine
from collector.alerts.rules import Rule, default_rules
from collector.state.silence import SilenceWatch
from collector.state.store import AgentLimits, StateStore

T0 = 1_795_000_000.0
PLACES = [("dong-nai", "la-nga"), ("dong-nai", "la-ngaa"), ("ha-noi", "la-nga")]
AGENTS = ["pc-01", "pc-02"]


class Afresh(AlertEngine):
    """Every agent and every commune read again each round, every firing alert judged
    for inhibition, as the rounds did first."""

    def _read_round(
        self,
        reader: sqlite3.Connection,
        agent_rules: Any,
        commune_rules: Any,
        now: float,
    ) -> tuple[list[round_reads.AgentFacts], list[round_reads.CommuneTally]]:
        agents = round_reads.agents_to_judge(reader, now, [], ())
        self._inhibited = None  # every firing alert judged for inhibition too
        return agents, round_reads.commune_tallies(reader)


class EveryAgentsSilence(SilenceWatch):
    """Every online agent read for silence, each time."""

    def silent(
        self, db: sqlite3.Connection, now: float, intervals: float, default_interval: float
    ) -> list[str]:
        return self._read_all(db, (now, intervals, default_interval))


def rules() -> list[Rule]:
    return [r for r in default_rules() if r.on in ("agent", "commune")]


def status(
    place: int, agent: str, ts: float, event: tuple[str, str, str, int, float, float]
) -> Status:
    """``event``: state, reason, update report's state and failures, interval, how far
    ahead the agent's clock is."""
    state, reason, update_state, failures, interval, ahead = event
    province, commune = PLACES[place]
    update = None
    if update_state:
        update = UpdateReport(state=update_state, version=f"1.{failures}.0", ts=ts)  # type: ignore[arg-type]
    return Status(
        v=1, state=state, agent=agent, province=province, commune=commune, ts=ts + ahead,
        reason=reason, update=update, interval=interval,
    )  # type: ignore[arg-type]  # fmt: skip


def data(place: int, agent: str, seq: int, ts: float, series: int) -> Envelope:
    """``series`` interfaces: beyond the agent's bound (4), some are refused and counted."""
    province, commune = PLACES[place]
    samples = [
        Sample(name="router", check="snmp", ts=ts, outcome="ok", item="interface",
               target=f"Gi0/{n}", fields={"oper_up": True})
        for n in range(series)
    ]  # fmt: skip
    return Envelope(
        v=1, agent=agent, province=province, commune=commune, seq=seq, ts=ts, samples=samples
    )


def rolled_back(store: StateStore, place: int, agent: str) -> None:
    """An agent's state changed in a transaction that does not commit."""
    province, commune = PLACES[place]
    with pytest.raises(RuntimeError), store.transaction() as db:
        db.execute(
            "UPDATE agents SET state = 'offline', reason = 'silent' WHERE agent_key = ?",
            (f"{province}/{commune}/{agent}",),
        )
        raise RuntimeError("the batch failed")


statuses = st.tuples(
    st.just("status"),
    st.tuples(
        st.sampled_from(["online", "offline"]),
        st.sampled_from(["", "stopped", "connection lost"]),
        st.sampled_from(["", "committed", "rolled_back", "failed"]),
        st.integers(0, 3),
        st.sampled_from([0.0, 30.0, 60.0]),
        st.sampled_from([0.0, 0.0, 3600.0]),
    ),
)
events = st.one_of(
    statuses,  # thrice as likely as each other event: what the rules read
    statuses,
    statuses,
    st.tuples(st.just("data"), st.sampled_from([1, 6])),  # 6: some refused
    st.tuples(st.just("forget"), st.none()),
    st.tuples(st.just("rolled back"), st.none()),
)
steps = st.lists(
    st.tuples(
        st.integers(0, len(PLACES) - 1),
        st.sampled_from(AGENTS),
        events,
        st.sampled_from([0.0, 10.0, 100.0, 200.0, 400.0, 1000.0]),  # the time to the next round
    ),
    min_size=1,
    max_size=40,
)


def decisions(store: StateStore) -> tuple[list[Any], ...]:
    """What the rounds decided: every row of the alert tables but the time a subject
    back to "ok" was last stepped (a round reading everything steps every fine agent:
    that time decides nothing but when retention forgets the row)."""
    with store.reading() as db:
        return (
            db.execute(
                "SELECT rule, subject, state, since, IIF(state = 'ok', NULL, last_ts), alert_id "
                "FROM alert_subjects ORDER BY rule, subject"
            ).fetchall(),
            db.execute("SELECT * FROM alerts ORDER BY id").fetchall(),
            db.execute("SELECT * FROM alert_steps ORDER BY id").fetchall(),
            db.execute("SELECT * FROM notifications ORDER BY id").fetchall(),
        )


def act(store: StateStore, place: int, agent: str, event: Any, seq: int, now: float) -> None:
    kind, detail = event
    if kind == "status":
        store.apply(statuses=[(status(place, agent, now, detail), now)], received=now)
    elif kind == "data":
        store.apply([data(place, agent, seq, now, detail)], received=now)
    elif kind == "forget":
        store.forget_agents(now - 900.0)
    else:
        rolled_back(store, place, agent)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps, st.sampled_from([0, 1, 100]))
def test_a_round_holding_what_it_read_decides_as_one_reading_everything_afresh(
    tmp_path_factory: Any, run: list[tuple[int, str, Any, float]], few: int
) -> None:
    """``few``: communes changed read one by one at most (beyond, everything is read)."""
    base: Path = tmp_path_factory.mktemp("held")
    limits = AgentLimits(max_series=4)
    stores = [StateStore(base / f"{n}.sqlite", limits=limits) for n in range(2)]
    engines = [AlertEngine(rules()), Afresh(rules())]
    engines[0]._held = round_reads.HeldRound(engines[0]._notable, few=few)
    stores[0]._silence = SilenceWatch(few=few)
    stores[1]._silence = EveryAgentsSilence()
    for store, engine in zip(stores, engines, strict=True):
        engine.install(store)
    now = T0
    for seq, (place, agent, event, pause) in enumerate(run, start=1):
        for store in stores:
            act(store, place, agent, event, seq, now)
        now += pause
        # As the housekeeping does every round: silent agents, then the rules.
        silent = [store.mark_silent(now, 3.0, 60.0) for store in stores]
        assert silent[0] == silent[1]
        for store, engine in zip(stores, engines, strict=True):
            engine.tick(store, now)
        assert decisions(stores[0]) == decisions(stores[1])
    for store in stores:
        store.close()


def test_a_round_reads_again_only_the_communes_whose_agents_changed(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite")
    engine = AlertEngine(rules())
    engine.install(store)
    for n in range(5):
        for place in range(len(PLACES)):
            ok = status(place, f"pc-{n:02d}", T0, ("online", "", "committed", 0, 60.0, 0.0))
            store.apply(statuses=[(ok, T0)], received=T0)
            store.apply([data(place, f"pc-{n:02d}", 1, T0, 1)], received=T0)
    engine.tick(store, T0 + 10)
    assert engine._held.reads_all == 1
    with store.reading() as db:
        seq = engine._held.seq
        # Data from every agent moves no commune: their state is what it was.
        for n in range(5):
            for place in range(len(PLACES)):
                store.apply([data(place, f"pc-{n:02d}", 2, T0 + 15, 1)], received=T0 + 15)
        assert db.execute(
            "SELECT COUNT(*) FROM agent_changes WHERE seq > ?", (seq,)
        ).fetchone() == (0,)
        lost = status(2, "pc-03", T0 + 20, ("offline", "connection lost", "", 0, 60.0, 0.0))
        store.apply(statuses=[(lost, T0 + 20)], received=T0 + 20)
        changed = db.execute("SELECT province, commune FROM agent_changes WHERE seq > ?", (seq,))
        assert changed.fetchall() == [("ha-noi", "la-nga")]
    engine.tick(store, T0 + 30)
    assert engine._held.reads_all == 1  # one commune read again, not every agent
    [tally] = [t for t in engine._held.tallies() if t.province == "ha-noi"]
    assert (tally.agents, tally.online, tally.lost, tally.changed) == (5, 4, 1, T0 + 20)
    with store.reading() as db:
        judged = engine._agents_to_judge(db, engine.rules, T0 + 30)
    assert [a.agent.agent_key for a in judged] == ["ha-noi/la-nga/pc-03"]
    store.close()


def shorter_interval(store: StateStore) -> None:
    birth = status(0, "pc-01", T0 + 10, ("online", "", "", 0, 30.0, 0.0))
    store.apply(statuses=[(birth, T0 + 10)], received=T0 + 10)


def first_data(store: StateStore) -> None:
    store.apply([data(0, "pc-01", 1, T0 + 10, 1)], received=T0 + 10)


@pytest.mark.parametrize(
    ("second", "silent_at"),
    [
        # A birth saying a shorter interval: silent after 3 of those from its status.
        (shorter_interval, T0 + 101),
        # An agent whose clock is an hour ahead: its first data, not its status, counts.
        (first_data, T0 + 191),
    ],
)
def test_what_brings_an_agents_silence_sooner_is_read_again(
    tmp_path: Path, second: Any, silent_at: float
) -> None:
    store = StateStore(tmp_path / "s.sqlite")
    ahead = 3600.0 if silent_at == T0 + 191 else 0.0
    first = status(0, "pc-01", T0, ("online", "", "", 0, 60.0, ahead))
    store.apply(statuses=[(first, T0)], received=T0)
    assert store.mark_silent(T0 + 5, 3.0, 60.0) == []
    second(store)
    assert store.mark_silent(silent_at - 2, 3.0, 60.0) == []
    assert store.mark_silent(silent_at, 3.0, 60.0) == ["dong-nai/la-nga/pc-01"]
    assert store._silence.reads_all == 1  # the commune alone read again
    store.close()
