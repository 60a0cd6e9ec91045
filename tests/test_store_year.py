"""A year's worth of events through the real store: they happen, and retention keeps the
tables it bounds bounded (bench/store_year_bench.py measures how much they weigh)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from collector.alerts.engine import AlertEngine
from collector.alerts.rules import default_rules
from collector.ingest.ingestor import Ingestor, Message
from collector.state import systemtimes
from collector.state.housekeeping import retention
from collector.state.store import RTT_KEEP_S, StateStore
from fleet.life import DAY_S, Life, Sampling, Settings
from fleet.scenario import Fleet
from tests import factories

#: Monday 1 June 2026, 06:00 in Vietnam: the PCs come on within the first hours.
MONDAY_6AM = 1_780_246_800.0 + 6 * 3600
HOURS = 10


def life(sampling: Sampling, pcs: int = 4) -> Life:
    fleet = Fleet("dong-nai", ["la-nga", "phu-hoa", "xuan-loc"], pcs, seed=11)
    return Life(fleet, MONDAY_6AM, settings=Settings.stormy(), sampling=sampling, seed=11)


class Clock:
    def __init__(self) -> None:
        self.now = MONDAY_6AM

    def __call__(self) -> float:
        return self.now


def play(store: StateStore, clock: Clock, hours: float) -> Life:
    """The simulation's messages through the ingest, the alert rules and their rounds."""
    engine = AlertEngine(default_rules(), clock=clock)
    engine.install(store)
    ingestor = Ingestor(store, "commune")
    simulated = life(Sampling.thinned())

    def feed(end: float, published: list[tuple[str, bytes, bool]]) -> None:
        clock.now = end
        ingestor.process([Message(t, p, end, lambda: None) for t, p, _ in published])
        engine.tick(store, end)

    feed(MONDAY_6AM, simulated.births(known=True))
    for _ in range(round(hours * 60)):
        feed(*simulated.step())
    return simulated


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Clock, Life]:
    path = tmp_path_factory.mktemp("year") / "state.sqlite"
    clock = Clock()
    with StateStore(path, clock=clock) as store:
        simulated = play(store, clock, HOURS)
    return path, clock, simulated


def query(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def test_the_simulated_offices_live_through_their_events(
    played: tuple[Path, Clock, Life],
) -> None:
    path, _, simulated = played
    counts = simulated.counts
    for event in ("outages", "flaps", "power_cuts", "stale", "switched_off", "replaced"):
        assert counts[event] > 0, event
    kinds = dict(
        query(
            path,
            "SELECT s.kind, COUNT(*) FROM outages o JOIN subjects s ON s.id = o.subject_id "
            "GROUP BY s.kind",
        )
    )
    # Lines down, anti-malware stale or off, systems failing for every commune.
    for kind in ("link", "signatures", "protection", "system"):
        assert kinds.get(kind, 0) > 0, kinds
    states = {str(k): str(s) for k, s in query(path, "SELECT agent_key, state FROM agents")}
    successors = [key for key in states if "-r" in key.rsplit("/", 1)[1]]
    assert successors, "replaced PCs have successors of their own"
    for key in successors:  # the one it replaced (pc-02 for pc-02-r2) is silent for good
        base, generation = key.rsplit("-r", 1)
        before = base if generation == "2" else f"{base}-r{int(generation) - 1}"
        assert states.get(before, "offline") == "offline", (key, before)
    assert counts["wills"] > 0 and counts["births"] > len(simulated.fleet.agents)
    rules = {rule for (rule,) in query(path, "SELECT DISTINCT rule FROM alerts")}
    assert {"line_down_tslcd", "agent_offline", "pc_unprotected"} <= rules, rules
    assert query(path, "SELECT COUNT(*) FROM subject_gaps")[0][0] > 0  # the poller's power cut
    # One row per commune and day (UTC's: 06:00 in Vietnam is 23:00 the day before).
    assert query(path, "SELECT COUNT(*) FROM line_history")[0][0] == 3 * 2


def test_thinned_sampling_sees_the_events_of_the_real_cycle() -> None:
    """The events come from generators of their own: thinning the checks changes none."""

    def events(sampling: Sampling) -> tuple[dict[str, int], list[tuple[str, bytes, bool]]]:
        simulated = life(sampling, pcs=2)
        statuses = [m for m in simulated.births(known=True) if m[2]]
        for _ in range(4 * 60):
            statuses += [m for m in simulated.step()[1] if m[2]]
        return {k: v for k, v in simulated.counts.items() if k != "envelopes"}, statuses

    real, real_statuses = events(Sampling())
    thinned, thinned_statuses = events(Sampling.thinned())
    assert real == thinned and real["flaps"] > 0
    assert real_statuses == thinned_statuses  # births, goodbyes and wills, to the second


def test_retention_keeps_what_it_bounds_bounded(
    played: tuple[Path, Clock, Life], tmp_path: Path
) -> None:
    path, clock, _ = played
    copy = tmp_path / "state.sqlite"
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    now = clock.now
    keep, forget = 4 * 3600.0, 3600.0
    cut = now - keep
    before = dict(query(copy, "SELECT state, COUNT(*) FROM alerts GROUP BY state"))
    assert before.get("resolved", 0) > 0
    with StateStore(copy, clock=lambda: now) as store:
        retention(store, keep, forget)(now)
    assert query(copy, "SELECT COUNT(*) FROM outages WHERE end < ?", cut) == [(0,)]
    assert query(copy, "SELECT COUNT(*) FROM subjects WHERE last_ts < ?", cut) == [(0,)]
    assert query(copy, "SELECT COUNT(*) FROM alerts WHERE resolved_at < ?", cut) == [(0,)]
    assert query(copy, "SELECT COUNT(*) FROM alerts WHERE state = 'resolved'")[0][0] > 0
    orphans = {
        "outages": "subject_id NOT IN (SELECT id FROM subjects)",
        "system_times_daily": "subject_id NOT IN (SELECT id FROM subjects)",
        "alert_steps": "alert_id NOT IN (SELECT id FROM alerts)",
        "notifications": "alert_id NOT IN (SELECT id FROM alerts)",
        "agent_updates": "agent_key NOT IN (SELECT agent_key FROM agents)",
        "latest": "agent_key NOT IN (SELECT agent_key FROM agents)",
    }
    for table, orphan in orphans.items():
        assert query(copy, f"SELECT COUNT(*) FROM {table} WHERE {orphan}") == [(0,)], table
    fine_and_old = "SELECT COUNT(*) FROM alert_subjects WHERE state = 'ok' AND last_ts < ?"
    assert query(copy, fine_and_old, cut) == [(0,)]
    # Agents gone for good (the replaced PCs, those stopped before the cut) are forgotten.
    stopped = "SELECT COUNT(*) FROM agents WHERE state != 'online' AND status_ts < ?"
    assert query(copy, stopped, now - forget) == [(0,)]
    # Later on, the short windows empty too: the line's history, the hourly times.
    later = now + RTT_KEEP_S + DAY_S
    with StateStore(copy, clock=lambda: later) as store:
        store.prune(cut)
    assert query(copy, "SELECT COUNT(*) FROM line_history") == [(0,)]
    hourly = "SELECT COUNT(*) FROM system_times_hourly WHERE hour >= ?"
    assert query(copy, hourly, systemtimes.hour_of(cut)) == [(0,)]


def test_a_days_line_history_reads_back_the_best_of_each_five_minutes(tmp_path: Path) -> None:
    """One row holds a commune's day: each 5 minutes' best RTT and loss (to 3 significant
    digits), read back from any time on."""
    day = 20_000 * DAY_S
    probes = [(day, 18.37, 33.3), (day + 60, 25.0, 0.0), (day + 300, 7.5, 2.0),
              (day + 86100, 123.456, 100.0)]  # fmt: skip
    with StateStore(tmp_path / "state.sqlite", clock=lambda: day) as store:
        for seq, (at, rtt, loss) in enumerate(probes):
            sample = factories.link(at, rtt_ms=rtt, loss_percent=loss)
            store.apply([factories.envelope(seq, sample)], received=at)
        place = f"{factories.PROVINCE}/{factories.COMMUNE}"
        assert store.rtt_history(place, day) == [
            (day, 18.375),
            (day + 300, 7.5),
            (day + 86100, 123.4375),
        ]
        assert store.loss_history(place, day) == [(day, 0.0), (day + 300, 2.0),
                                                   (day + 86100, 100.0)]  # fmt: skip
        assert store.rtt_history(place, day + 301) == [(day + 86100, 123.4375)]
    with closing(sqlite3.connect(tmp_path / "state.sqlite")) as db:
        assert db.execute("SELECT COUNT(*) FROM line_history").fetchone() == (1,)


def test_retention_forgets_old_alerts_and_old_repeats_of_those_still_firing(
    tmp_path: Path,
) -> None:
    """A PC with no anti-malware fires for ever and is told again every 4 hours: its
    repeats before the cut-off go, its firing and the rest of its history stay; an alert
    resolved before the cut-off goes whole."""
    t0 = 1_780_000_000.0
    with StateStore(tmp_path / "state.sqlite", clock=lambda: t0 + 500 * DAY_S) as store:
        with store.transaction() as db:
            for alert_id, state, resolved in ((1, "firing", None), (2, "resolved", t0 + 3600)):
                db.execute(
                    "INSERT INTO alerts (id, rule, subject, province, commune, severity, state, "
                    "started_at, fired_at, resolved_at) VALUES (?, 'no_antimalware', 's', "
                    "'dong-nai', 'la-nga', 'critical', ?, ?, ?, ?)",
                    (alert_id, state, t0, t0, resolved),
                )
                db.executemany(
                    "INSERT INTO alert_steps (alert_id, at, step) VALUES (?, ?, ?)",
                    [
                        (alert_id, t0, "fired"),
                        (alert_id, t0 + 4 * 3600, "notified repeat"),
                        (alert_id, t0 + 450 * DAY_S, "notified repeat"),
                    ],
                )
                db.execute(
                    "INSERT INTO notifications (alert_id, event, created) VALUES (?, 'x', ?)",
                    (alert_id, t0),
                )
        store.prune(t0 + 100 * DAY_S)
        with store.reading() as db:
            alerts = db.execute("SELECT id FROM alerts").fetchall()
            steps = db.execute("SELECT alert_id, at, step FROM alert_steps ORDER BY at").fetchall()
            notes = db.execute("SELECT alert_id FROM notifications").fetchall()
    assert alerts == [(1,)] and notes == [(1,)]
    assert steps == [(1, t0, "fired"), (1, t0 + 450 * DAY_S, "notified repeat")]


def test_beyond_the_most_alerts_kept_the_oldest_resolved_go(tmp_path: Path) -> None:
    """[store] max_alerts: the country's 13 months of alerts would be 20 GB; the newest
    are kept, and those still firing whatever their age."""
    t0 = 1_780_000_000.0
    with StateStore(tmp_path / "state.sqlite", clock=lambda: t0) as store:
        with store.transaction() as db:
            for alert_id in range(1, 11):
                firing = alert_id == 2
                db.execute(
                    "INSERT INTO alerts (id, rule, subject, province, commune, severity, state, "
                    "started_at, fired_at, resolved_at) VALUES (?, 'line_down_tslcd', 's', "
                    "'dong-nai', 'la-nga', 'critical', ?, ?, ?, ?)",
                    (alert_id, "firing" if firing else "resolved", t0, t0,
                     None if firing else t0 + alert_id),
                )  # fmt: skip
                db.execute(
                    "INSERT INTO alert_steps (alert_id, at, step) VALUES (?, ?, 'fired')",
                    (alert_id, t0),
                )
        store.prune(t0 - DAY_S, max_alerts=4)  # keeps ids 7-10, and 2 (firing)
        with store.reading() as db:
            alerts = [row[0] for row in db.execute("SELECT id FROM alerts ORDER BY id")]
            steps = [row[0] for row in db.execute("SELECT alert_id FROM alert_steps")]
    assert alerts == [2, 7, 8, 9, 10] and sorted(steps) == alerts
