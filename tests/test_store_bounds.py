"""What one agent can make the store hold is bounded, and one message that cannot be
applied does not take its batch with it."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from agent.wire import Envelope, Sample, decode_envelope, encode
from collector.alerts.engine import AlertEngine
from collector.alerts.records import list_alerts
from collector.alerts.rules import default_rules
from collector.outputs.spool import Spool
from collector.state.store import AgentLimits, StateStore, agent_key
from tests.test_store import T0, envelope, link, status

KEY = agent_key("dong-nai", "la-nga", "pc-01")


def interfaces(ts: float, first: int, count: int) -> list[Sample]:
    return [
        Sample(
            ts=ts,
            check="snmp",
            name="router",
            outcome="ok",
            item="interface",
            target=f"Gi0/0/{n}",
            fields={"oper_up": True},
        )
        for n in range(first, first + count)
    ]


def test_series_beyond_the_agents_bound_are_refused_alone_and_counted(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite", limits=AgentLimits(max_series=50))
    first = store.apply([envelope(0, *interfaces(T0, 0, 30))], received=T0)
    assert not first.refused
    # 50 more, 30 of them new: the bound admits 20 new series, not one more.
    second = store.apply([envelope(1, *interfaces(T0 + 60, 10, 50))], received=T0 + 60)
    assert second.refused == {(KEY, "series_limit"): 10}
    held = store.latest(KEY)
    assert len(held) == 50
    # What the agent already has keeps being updated at the bound.
    third = store.apply([envelope(2, *interfaces(T0 + 120, 0, 50))], received=T0 + 120)
    assert not third.refused
    assert {s.ts for s in store.latest(KEY)} == {T0 + 120}
    assert store.refusals(T0 + 120) == {KEY: 10}
    assert store.refusals(T0 + 120 + 3600) == {}  # outside the alert's window


def test_subjects_with_history_beyond_the_bound_are_refused(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite", limits=AgentLimits(max_subjects=3))
    probes = [
        msgspec.structs.replace(link(T0, True), name=f"probe-{n}", target=f"10.0.0.{n}")
        for n in range(5)
    ]
    applied = store.apply([envelope(0, *probes)], received=T0)
    assert applied.refused == {(KEY, "subject_limit"): 2}
    assert len(store.subjects()) == 3
    assert len(store.latest(KEY)) == 3  # a refused sample is not half-applied


def test_the_spool_gets_what_was_admitted(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite", limits=AgentLimits(max_series=5))
    Spool(store).attach()
    message = envelope(0, *interfaces(T0, 0, 8))
    store.apply([message], received=T0, spool=[encode(message)])
    [(_, spooled)] = Spool(store).fetch(10)
    assert len(decode_envelope(spooled).samples) == 5
    assert Spool(store).stats().bytes == len(spooled)


def test_the_over_limit_alert_names_the_agent(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite", limits=AgentLimits(max_series=10))
    engine = AlertEngine(default_rules(), late_after=1e9)
    engine.install(store)
    store.apply(statuses=[(status("online", T0), T0)], received=T0)
    store.apply([envelope(0, *interfaces(T0, 0, 25))], received=T0)
    engine.tick(store, T0 + 1)
    [alert] = list_alerts(store, T0 + 1, state="firing")
    assert (alert.rule, alert.agent, alert.commune, alert.value) == (
        "agent_over_limit",
        "pc-01",
        "la-nga",
        "15",
    )
    engine.tick(store, T0 + 3600)  # nothing refused for an hour...
    engine.tick(store, T0 + 3600 + 900)  # ... and 15 minutes more: resolved
    assert list_alerts(store, T0 + 4500, state="firing") == []


class Poisoned:
    """An observer that fails on one agent's envelopes, as a bug of ours would."""

    def __call__(
        self, db: sqlite3.Connection, envelopes: Sequence[Envelope], received: float
    ) -> None:
        if any(e.agent == "poison" for e in envelopes):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")


def test_one_by_one_the_bad_message_fails_alone(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite")
    Spool(store).attach()
    store.observers.append(Poisoned())
    good = [envelope(n, link(T0 + n, True)) for n in range(3)]
    bad = msgspec.structs.replace(good[0], agent="poison", seq=7)
    batch = [good[0], bad, good[1], good[2]]
    with pytest.raises(OverflowError):
        store.apply(batch, received=T0)
    assert store.agents() == []  # the batch rolled back as one
    applied = store.apply_each(batch, received=T0, spool=[encode(e) for e in batch])
    assert list(applied.failed_envelopes) == [1]
    assert "OverflowError" in applied.failed_envelopes[1]
    [agent] = store.agents()
    assert (agent.agent, agent.last_seq) == ("pc-01", 2)
    assert Spool(store).stats().rows == 3  # the bad one's points are not spooled either


def test_the_store_itself_failing_is_raised_not_blamed_on_a_message(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite")

    def full(*_: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    store.observers.append(full)
    with pytest.raises(sqlite3.OperationalError):
        store.apply_each([envelope(0, link(T0, True)), envelope(1, link(T0 + 1, True))])
    assert store.agents() == []


def test_refusals_are_counted_once_when_a_batch_is_applied_one_by_one(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite", limits=AgentLimits(max_series=5))
    batch = [envelope(n, *interfaces(T0 + n, 10 * n, 8)) for n in range(3)]
    applied = store.apply_each(batch, received=T0)
    assert applied.refused == {(KEY, "series_limit"): 3 + 8 + 8}
    assert store.refusals(T0) == {KEY: 19}
