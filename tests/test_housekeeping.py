"""Housekeeping: each task on its own schedule, a failing one isolated and shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.state.housekeeping import Housekeeping, Task, mark_silent, retention
from collector.state.store import StateStore, agent_key
from tests.factories import envelope, link, status

T0 = 1_760_000_000.0


def test_a_failing_task_stops_no_other_and_is_shown_until_it_works_again() -> None:
    ran: list[str] = []
    broken = {"alerts": True}

    def alerts(now: float) -> None:
        if broken["alerts"]:
            raise RuntimeError("database is locked")
        ran.append("alerts")

    rounds = Housekeeping(
        [
            Task("silence", lambda now: ran.append("silence")),
            Task("alerts", alerts),
            Task("retention", lambda now: ran.append("retention")),
        ]
    )
    rounds.run(T0)
    assert ran == ["silence", "retention"] and rounds.failing == {"alerts"}
    broken["alerts"] = False
    rounds.run(T0 + 10)
    assert ran[2:] == ["silence", "alerts", "retention"] and rounds.failing == set()


def test_a_task_runs_at_most_as_often_as_it_says() -> None:
    clock = [100.0]
    ran: list[float] = []
    rounds = Housekeeping([Task("retention", ran.append, every_s=3600)], lambda: clock[0])
    for step in (0, 10, 3599):
        clock[0] = 100.0 + step
        rounds.run(T0 + step)
    clock[0] = 100.0 + 3601
    rounds.run(T0 + 3601)
    assert ran == [T0, T0 + 3601]


def test_two_tasks_of_one_name_are_a_mistake() -> None:
    with pytest.raises(ValueError, match="named twice"):
        Housekeeping([Task("alerts", print), Task("alerts", print)])


def test_the_stores_tasks_mark_the_silent_and_forget_the_old(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.sqlite", clock=lambda: T0)
    store.apply(
        [envelope(1, link(T0))], statuses=[(status("online", T0, interval=10.0), T0)], received=T0
    )
    key = agent_key("dong-nai", "la-nga", "pc-01")
    Housekeeping([Task("silence", mark_silent(store, 3.0, 60.0))]).run(T0 + 31)
    assert {a.agent_key: a.state for a in store.agents()} == {key: "offline"}
    Housekeeping([Task("retention", retention(store, 86400.0, 86400.0))]).run(T0 + 2 * 86400)
    assert store.agents() == []
