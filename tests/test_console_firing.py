"""The overview's firing count walked from the newest alert equals the plain query's."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from collector.alerts.records import firing_not_suppressed
from collector.state.store import StateStore
from collector.web.console.firing import firing_count

EVERYTHING = [("", "")]


def add_alerts(store: StateStore, rng: random.Random, count: int, firing_share: float) -> None:
    """Alerts with few distinct start times (ties broken by id), some suppressed."""
    rows = []
    for index in range(count):
        started = float(rng.randrange(50))
        state = "firing" if rng.random() < firing_share else "resolved"
        rows.append(
            ("agent_offline", f"p/c{index % 7}/pc{index}", "p", f"c{index % 7}", "critical",
             state, started, started + 1, None if state == "firing" else started + 2,
             int(rng.random() < 0.3))
        )  # fmt: skip
    with store.transaction() as db:
        db.executemany(
            """INSERT INTO alerts (rule, subject, province, commune, severity, state,
                                   started_at, fired_at, resolved_at, suppressed)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            rows,
        )


@pytest.mark.parametrize("seed", range(6))
def test_the_walk_counts_what_the_plain_query_counts(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    with StateStore(tmp_path / "state.sqlite") as store:
        assert firing_count(store, EVERYTHING) == 0
        for _ in range(4):
            add_alerts(store, rng, rng.randrange(1, 120), rng.choice([0.05, 0.5, 0.95]))
            for limit in (1, 7, 40, 500):
                # A bound of 3 rows makes the walk give up on most stores: the fallback.
                for bound in (3, 10_000):
                    expected = firing_not_suppressed(store, EVERYTHING, limit)
                    assert firing_count(store, EVERYTHING, limit, bound) == expected
            province = [("p", "")]
            assert firing_count(store, province, 7) == firing_not_suppressed(store, province, 7)


def test_the_newest_firing_are_counted_not_the_oldest(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.sqlite") as store, store.transaction() as db:
        for index, suppressed in enumerate([0, 0, 1, 1]):  # the newest two suppressed
            db.execute(
                """INSERT INTO alerts (rule, subject, province, commune, severity, state,
                                       started_at, fired_at, suppressed)
                   VALUES ('r', ?, 'p', 'c', 'critical', 'firing', ?, ?, ?)""",
                (f"p/c/{index}", float(index), float(index), suppressed),
            )
    with StateStore(tmp_path / "state.sqlite") as store:
        assert firing_count(store, EVERYTHING, limit=2) == 0
        assert firing_count(store, EVERYTHING, limit=3) == 1
        assert firing_count(store, EVERYTHING, limit=4) == 2
