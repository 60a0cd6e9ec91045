"""A round of the agent and commune rules reads only the agents that can change an alert
(``collector.alerts.round``): it must decide exactly what a round reading every agent
decides, whatever the agents' states, update reports and refusals, and however long
ago the subjects it no longer follows went back to fine."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.wire import Envelope, Sample, Status, UpdateReport
from collector.alerts import round as round_reads
from collector.alerts.engine import AlertEngine
from collector.alerts.pending import pending
from collector.alerts.rules import Rule, default_rules
from collector.state.store import AgentLimits, StateStore

T0 = 1_795_000_000.0
PLACES = [("dong-nai", "la-nga"), ("dong-nai", "xuan-loc")]
AGENTS = ["pc-01", "pc-02", "pc-03"]


class EveryAgent(AlertEngine):
    """The round as it was: every agent read and stepped, nothing ever forgotten."""

    def _agents_to_judge(
        self, reader: sqlite3.Connection, rules: Any, now: float
    ) -> list[round_reads.AgentFacts]:
        return round_reads.agents_to_judge(reader, now, [], ())

    def _recount_troubled(self, db: sqlite3.Connection, now: float) -> None:
        self._troubled_at = now


def rules() -> list[Rule]:
    return [r for r in default_rules() if r.on in ("agent", "commune")]


def status(place: int, agent: str, ts: float, event: tuple[str, str, str, int]) -> Status:
    state, reason, update_state, failures = event
    province, commune = PLACES[place]
    update = None
    if update_state:
        update = UpdateReport(state=update_state, version=f"1.{failures}.0", ts=ts)  # type: ignore[arg-type]
    return Status(
        v=1, state=state, agent=agent, province=province, commune=commune, ts=ts,
        reason=reason, update=update,
    )  # type: ignore[arg-type]  # fmt: skip


def refusing(place: int, agent: str, seq: int, ts: float) -> Envelope:
    """More series than the agent's bound: some are refused and counted."""
    province, commune = PLACES[place]
    samples = [
        Sample(name="router", check="snmp", ts=ts, outcome="ok", item="interface",
               target=f"Gi0/{n}", fields={"oper_up": True})
        for n in range(6)
    ]  # fmt: skip
    return Envelope(
        v=1, agent=agent, province=province, commune=commune, seq=seq, ts=ts, samples=samples
    )


events = st.tuples(
    st.sampled_from(["online", "offline"]),
    st.sampled_from(["", "stopped", "connection lost"]),
    st.sampled_from(["", "idle", "committed", "rolled_back", "failed"]),
    st.integers(0, 4),
)
steps = st.lists(
    st.tuples(
        st.integers(0, len(PLACES) - 1),
        st.sampled_from(AGENTS),
        st.one_of(events, st.just("refuse")),
        st.sampled_from([30.0, 200.0, 400.0]),  # the time to the next round
    ),
    min_size=1,
    max_size=30,
)


def decisions(store: StateStore) -> tuple[list[Any], list[Any], list[Any]]:
    """What the rounds decided. A subject back to "ok" and no longer followed keeps the
    time it was last stepped (a round reading everything moves it on): that time decides
    nothing but when retention forgets the row, so it is left out for those."""
    with store.reading() as db:
        subjects = db.execute(
            "SELECT rule, subject, state, since, IIF(state = 'ok', NULL, last_ts), alert_id "
            "FROM alert_subjects ORDER BY rule, subject"
        ).fetchall()
        alerts = db.execute(
            "SELECT rule, subject, state, started_at, fired_at, resolved_at, value, suppressed "
            "FROM alerts ORDER BY id"
        ).fetchall()
        queued = db.execute("SELECT alert_id, event FROM notifications ORDER BY id").fetchall()
    return subjects, alerts, queued


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps)
def test_a_round_reading_only_what_can_change_decides_as_one_reading_everything(
    tmp_path_factory: Any, run: list[tuple[int, str, Any, float]]
) -> None:
    base: Path = tmp_path_factory.mktemp("round")
    limits = AgentLimits(max_series=4)
    stores = [StateStore(base / f"{n}.sqlite", limits=limits) for n in range(2)]
    engines = [AlertEngine(rules()), EveryAgent(rules())]
    for store, engine in zip(stores, engines, strict=True):
        engine.install(store)
    now = T0
    for seq, (place, agent, event, pause) in enumerate(run, start=1):
        for store in stores:
            if event == "refuse":
                store.apply([refusing(place, agent, seq, now)], received=now)
            else:
                store.apply(statuses=[(status(place, agent, now, event), now)], received=now)
        now += pause
        for store, engine in zip(stores, engines, strict=True):
            engine.tick(store, now)
        assert decisions(stores[0]) == decisions(stores[1])
    for store in stores:
        store.close()


def test_a_round_forgets_a_subject_back_to_fine_and_reads_no_fine_agent(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite")
    engine = AlertEngine(rules())
    engine.install(store)
    for n in range(40):
        for place in range(len(PLACES)):
            ok = status(place, f"pc-{n:02d}", T0, ("online", "", "", 0))
            store.apply(statuses=[(ok, T0)], received=T0)
    lost = status(0, "pc-07", T0 + 10, ("offline", "connection lost", "", 0))
    store.apply(statuses=[(lost, T0 + 10)], received=T0 + 10)
    engine.tick(store, T0 + 20)
    with store.reading() as db:
        judged = engine._agents_to_judge(db, engine.rules, T0 + 20)
    assert [a.agent.agent for a in judged] == ["pc-07"]  # 79 fine agents not read
    back = status(0, "pc-07", T0 + 30, ("online", "", "", 0))
    store.apply(statuses=[(back, T0 + 30)], received=T0 + 30)
    engine.tick(store, T0 + 40)
    with store.reading() as db:
        assert [a.agent.agent for a in engine._agents_to_judge(db, engine.rules, T0 + 40)] == [
            "pc-07"  # followed until it is counted fine again
        ]
    engine.tick(store, T0 + 40 + 600)  # a recount
    with store.reading() as db:
        assert engine._agents_to_judge(db, engine.rules, T0 + 700) == []
    store.close()


def test_a_communes_pending_alerts_are_not_cut_off_by_the_countrys(tmp_path: Path) -> None:
    """At night the country has thousands of alerts pending; the commune page and a
    province's list show theirs, oldest first, whatever the others."""
    store = StateStore(tmp_path / "s.sqlite")
    rows = [("agent_offline", f"an-giang/x{n:04d}/pc-01", "pending", T0 + n, T0 + n, None)
            for n in range(1200)]  # fmt: skip
    rows += [
        ("agent_offline", "dong-nai/la-nga/pc-02", "pending", T0 + 5000, T0 + 5000, None),
        ("line_down_tslcd", "dong-nai/la-nga/poller|tslcd|", "pending", T0 + 4000, T0, None),
        ("commune_unreachable", "dong-nai/la-nga", "pending", T0 + 4500, T0, None),
        ("agent_offline", "dong-nai/la-ngaa/pc-01", "pending", T0 + 3000, T0, None),
        ("agent_offline", "dong-nai/la-nga/pc-03", "firing", T0 + 3000, T0, None),
    ]
    with store.transaction() as db:
        db.executemany("INSERT INTO alert_subjects VALUES (?, ?, ?, ?, ?, ?)", rows)
    shown = pending(store, [("", "")], ("dong-nai", "la-nga"))
    assert [(p.rule, p.agent) for p in shown] == [
        ("line_down_tslcd", "poller"),
        ("commune_unreachable", ""),
        ("agent_offline", "pc-02"),
    ]
    province = pending(store, [("dong-nai", "")])
    assert [p.commune for p in province] == ["la-ngaa", "la-nga", "la-nga", "la-nga"]
    assert len(pending(store, [("", "")])) == 500
    store.close()


_SUBJECT_PLACES = ["dong-nai/la-nga", "dong-nai/la-ngaa", "dong-nai/la-ng", "dong-nai/xuan-loc"]
_SUBJECTS = st.one_of(
    st.sampled_from(_SUBJECT_PLACES),
    st.builds(lambda p, a: f"{p}/{a}", st.sampled_from(_SUBJECT_PLACES), st.sampled_from(AGENTS)),
    st.builds(
        lambda p, a, t: f"{p}/{a}|link|tslcd|{t}",
        st.sampled_from(_SUBJECT_PLACES), st.sampled_from(AGENTS), st.sampled_from(["a", "b"]),
    ),
    st.builds(
        lambda p, s: f"system:{p}/{s}",
        st.sampled_from(_SUBJECT_PLACES), st.sampled_from(["dvc", "hscv"]),
    ),
    st.sampled_from(["system:dong-nai/dvc", "collector/ingest"]),
)  # fmt: skip


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["agent_offline", "line_down_tslcd", "commune_unreachable", "sys"]),
            _SUBJECTS,
            st.sampled_from(["pending", "firing", "ok", "resolving"]),
            st.integers(0, 50),
        ),
        max_size=40,
    ),
    commune=st.sampled_from([("dong-nai", "la-nga"), ("dong-nai", "la-ng"), ("dong-nai", "xuan")]),
)  # fmt: skip
def test_a_communes_pending_alerts_sought_by_rule_are_those_of_the_whole_scan(
    tmp_path_factory: Any, rows: list[tuple[str, str, str, int]], commune: tuple[str, str]
) -> None:
    """The commune page's pending alerts are sought rule by rule in the table's key; they
    must be exactly those the country's scan finds for the commune, in the same order."""
    store = StateStore(tmp_path_factory.mktemp("pending") / "s.sqlite")
    with store.transaction() as db:
        db.executemany(
            "INSERT OR IGNORE INTO alert_subjects VALUES (?, ?, ?, ?, ?, NULL)",
            [(rule, subject, state, T0 + since, T0) for rule, subject, state, since in rows],
        )
    sought = pending(store, [("", "")], commune)
    scanned = [p for p in pending(store, [("", "")]) if (p.province, p.commune) == commune]
    assert sorted(sought, key=lambda p: (p.since, p.rule, p.agent, p.target)) == sorted(
        scanned, key=lambda p: (p.since, p.rule, p.agent, p.target)
    )
    assert [p.since for p in sought] == sorted(p.since for p in sought)
    store.close()


class GrowingWhileRead(set[tuple[str, str]]):
    """The troubled set as the round sees it while ingest adds to it in another thread."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        for n, item in enumerate(super().__iter__()):
            self.add(("agent_offline", f"added-by-ingest-{n}"))
            yield item


def test_a_round_reads_the_troubled_set_while_ingest_adds_to_it(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite")
    engine = AlertEngine(rules())
    engine.install(store)
    lost = status(0, "pc-01", T0, ("offline", "connection lost", "", 0))
    store.apply(statuses=[(lost, T0)], received=T0)
    engine.tick(store, T0 + 400)
    engine._troubled = GrowingWhileRead(engine._troubled)
    engine.tick(store, T0 + 410)  # a round, not "Set changed size during iteration"
    store.close()
