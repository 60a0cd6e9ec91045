"""The collector's state store: idempotent, applied by sample time, exact history."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.wire import Envelope, Sample, Status
from collector.state.availability import Outage, availability
from collector.state.store import StateStore, agent_key
from tests import factories

T0 = 1_795_000_000.0
KEY = agent_key("dong-nai", "la-nga", "pc-01")


def link(ts: float, up: bool, name: str = "tslcd", outcome: str = "ok") -> Sample:
    return factories.link(ts, up, name=name, outcome=outcome if up else "timeout")


def envelope(seq: int, *samples: Sample) -> Envelope:
    return factories.envelope(seq, *samples, ts=samples[0].ts if samples else T0)


def status(state: str, ts: float, reason: str = "") -> Status:
    return factories.status(state, ts, reason=reason, version="0.1.0", checks=["link:tslcd"])


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "state.sqlite")


def backlog() -> list[Envelope]:
    """Six hours at 60 s: up, then a 3-hour line outage from 01:00 to 04:00, then up."""
    envelopes = []
    for minute in range(6 * 60):
        ts = T0 + minute * 60
        envelopes.append(envelope(minute, link(ts, not (60 <= minute < 240))))
    return envelopes


def test_a_replayed_three_hour_outage_is_one_exact_closed_outage(store: StateStore) -> None:
    store.apply(backlog(), received=T0 + 6 * 3600 + 5)  # all of it arrives after the fact
    [subject] = store.subjects("link")
    assert (subject.state, subject.monitored_since, subject.network) == ("up", T0, "tslcd")
    outages = store.outages(subject.id)
    assert outages == [Outage(T0 + 3600, T0 + 4 * 3600)]
    result = availability(outages, T0, T0 + 6 * 3600, subject.monitored_since, now=T0 + 6 * 3600)
    assert result.down_s == 3 * 3600
    assert result.percent == pytest.approx(50.0)  # by hand: 3 h down of 6 h watched


def test_applying_everything_twice_changes_nothing(store: StateStore) -> None:
    store.apply(backlog(), received=T0 + 6 * 3600)
    before = (store.subjects(), store.outages(1), store.latest(KEY), store.agents())
    store.apply(backlog(), received=T0 + 6 * 3600)
    store.apply(reversed(backlog()), received=T0 + 6 * 3600)
    assert (store.subjects(), store.outages(1), store.latest(KEY), store.agents()) == before


def test_an_outage_still_open_has_no_end(store: StateStore) -> None:
    store.apply([envelope(0, link(T0, True)), envelope(1, link(T0 + 60, False))])
    [subject] = store.subjects()
    assert subject.state == "down"
    assert store.outages(subject.id) == [Outage(T0 + 60, None)]


def test_a_check_that_could_not_run_says_nothing_about_the_line(store: StateStore) -> None:
    unsupported = Sample(
        ts=T0 + 60,
        check="link",
        name="tslcd",
        outcome="unsupported",
        target="10.10.1.1",
        error="ICMP not permitted",
    )
    store.apply([envelope(0, link(T0, True)), envelope(1, unsupported)])
    [subject] = store.subjects()
    assert subject.state == "up"
    assert store.outages(subject.id) == []
    assert store.latest(KEY)[0].outcome == "unsupported"  # still the latest word


def test_latest_keeps_the_newest_sample_whatever_the_arrival_order(store: StateStore) -> None:
    store.apply([envelope(5, link(T0 + 300, False))])
    store.apply([envelope(1, link(T0 + 60, True))])  # a late, older sample
    [latest] = store.latest(KEY)
    assert (latest.ts, latest.fields["up"], latest.outcome) == (T0 + 300, 0, "timeout")
    assert store.agents()[0].last_seq == 5


def test_polycom_readiness_history(store: StateStore) -> None:
    def polycom(ts: float, ready: bool | None) -> Sample:
        fields = {"up": 1} if ready is None else {"up": 1, "ready": ready}
        return Sample(
            ts=ts, check="polycom", name="polycom", outcome="ok", target="192.0.2.20", fields=fields
        )

    store.apply(
        [envelope(i, polycom(T0 + i * 60, r)) for i, r in enumerate([True, False, None, True])]
    )
    [subject] = store.subjects("polycom")
    assert store.outages(subject.id) == [Outage(T0 + 60, T0 + 180)]


def test_status_birth_will_and_stale_retained_messages(store: StateStore) -> None:
    store.apply(statuses=[(status("online", T0), T0 + 1)])
    store.apply(statuses=[(status("offline", 0.0, "connection lost"), T0 + 500)])  # Last Will
    agent = store.agents()[0]
    assert (agent.state, agent.state_since, agent.reason) == (
        "offline",
        T0 + 500,
        "connection lost",
    )
    store.apply(statuses=[(status("online", T0 + 100), T0 + 600)])  # an older birth, delivered late
    assert store.agents()[0].state == "offline"
    store.apply(statuses=[(status("online", T0 + 700), T0 + 701)])
    agent = store.agents()[0]
    assert (agent.state, agent.state_since, agent.version) == ("online", T0 + 700, "0.1.0")


def test_silent_agents_are_marked_offline_after_three_of_their_intervals(store: StateStore) -> None:
    birth = Status(
        v=1,
        state="online",
        agent="pc-01",
        province="dong-nai",
        commune="la-nga",
        ts=T0,
        interval=10.0,
    )
    other = Status(v=1, state="online", agent="pc-02", province="dong-nai", commune="la-nga", ts=T0)
    store.apply([envelope(0, link(T0, True))], [(birth, T0), (other, T0)], received=T0)
    assert store.mark_silent(T0 + 29) == []
    assert store.mark_silent(T0 + 31) == [KEY]  # 3 x its 10 s interval
    agent = store.agents()[0]
    assert (agent.state, agent.reason, agent.state_since) == ("offline", "silent", T0)
    # pc-02 said no interval: the default (60 s) applies.
    assert store.mark_silent(T0 + 179) == []
    assert store.mark_silent(T0 + 181) == [agent_key("dong-nai", "la-nga", "pc-02")]
    store.apply([envelope(1, link(T0 + 200, True))], received=T0 + 200)  # a sign of life
    agent = store.agents()[0]
    assert (agent.state, agent.reason, agent.state_since) == ("online", "", T0 + 200)


def test_an_agent_that_said_goodbye_stays_offline_stopped(store: StateStore) -> None:
    store.apply(statuses=[(status("offline", T0, "stopped"), T0)])
    assert store.mark_silent(T0 + 10_000) == []
    store.apply([envelope(0, link(T0 + 20, True))], received=T0 + 20)  # a late backlog
    assert (store.agents()[0].state, store.agents()[0].reason) == ("offline", "stopped")


def test_pruning_forgets_only_closed_outages_before_the_cut(store: StateStore) -> None:
    store.apply(backlog())  # one outage, 01:00-04:00
    store.apply([envelope(1000, link(T0 + 7 * 3600, False))])  # and one still open
    [subject] = store.subjects()
    assert store.prune(T0 + 3 * 3600) == 0  # ends after the cut: kept
    assert store.prune(T0 + 5 * 3600) == 1
    assert store.outages(subject.id) == [Outage(T0 + 7 * 3600, None)]
    store.apply([envelope(1001, link(T0 + 101 * 3600, False))])  # still down, still heard
    assert store.prune(T0 + 100 * 3600) == 0  # an open outage is never forgotten
    assert store.subjects()[0].monitored_since == T0
    assert store.outages(subject.id) == [Outage(T0 + 7 * 3600, None)]
    # Not heard from since before the cut (a replaced PC's probe): gone, with all it held.
    store.prune(T0 + 102 * 3600)
    assert store.subjects() == [] and store.outages(subject.id) == []


def test_outages_are_selected_by_overlap_with_the_window(store: StateStore) -> None:
    store.apply(backlog())
    [subject] = store.subjects()
    assert store.outages(subject.id, T0, T0 + 3600) == []
    assert store.outages(subject.id, T0 + 3 * 3600, T0 + 5 * 3600) == [
        Outage(T0 + 3600, T0 + 4 * 3600)
    ]
    assert store.outages(subject.id, T0 + 4 * 3600, T0 + 5 * 3600) == []


def test_committed_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    first = StateStore(path)
    first.apply(backlog()[:100])
    first.close()
    again = StateStore(path)
    assert again.subjects()[0].state == "down"
    assert again.agents()[0].last_seq == 99
    again.apply(backlog()[100:])
    assert again.outages(again.subjects()[0].id) == [Outage(T0 + 3600, T0 + 4 * 3600)]


def test_a_failed_batch_leaves_no_trace(store: StateStore) -> None:
    class Broken(Exception):
        pass

    def envelopes() -> object:
        yield envelope(0, link(T0, True))
        raise Broken

    with pytest.raises(Broken):
        store.apply(envelopes())  # type: ignore[arg-type]
    assert store.agents() == []
    assert store.subjects() == []


class FailsOnce:
    """An observer that fails the next batch it sees, as a bug of ours would."""

    def __init__(self) -> None:
        self.armed = True

    def __call__(self, db: object, envelopes: object, received: float) -> None:
        if self.armed:
            self.armed = False
            raise RuntimeError("a batch that fails")


def test_the_lines_best_of_a_bucket_is_kept_across_skipped_writes_and_rollbacks(
    store: StateStore,
) -> None:
    """Most of a commune's probes do not lower a bucket's best and are not written; one
    that does is, and a rolled-back batch leaves nothing believed written."""
    bucket = T0 - T0 % 300

    def probe(seq: int, rtt: float, loss: float, agent: str = "pc-01") -> None:
        sample = factories.link(bucket + seq, rtt_ms=rtt, loss_percent=loss)
        store.apply([factories.envelope(seq, sample, agent=agent)], received=bucket + seq)

    for seq, rtt, loss in ((1, 30.0, 4.0), (2, 20.0, 9.0), (3, 25.0, 2.0), (4, 20.0, 3.0)):
        probe(seq, rtt, loss)
    place = f"{factories.PROVINCE}/{factories.COMMUNE}"
    assert store.rtt_history(place, since=0) == [(bucket, 20.0)]
    assert store.loss_history(place, since=0) == [(bucket, 2.0)]
    failing = FailsOnce()
    store.observers.append(failing)
    with pytest.raises(RuntimeError):
        probe(5, 5.0, 1.0)  # rolled back: 5 ms and 1 % were never stored
    probe(6, 10.0, 1.5, agent="pc-02")
    probe(7, 12.0, 1.8)
    assert store.rtt_history(place, since=0) == [(bucket, 10.0)]
    assert store.loss_history(place, since=0) == [(bucket, 1.5)]
