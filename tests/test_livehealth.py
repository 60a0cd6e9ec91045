"""The live health model gives what a full recomputation gives, after every change.

Random sequences of what changes the state (envelopes with line probes up and
down, anti-malware verdicts, Polycoms, router ports; statuses; agents marked
silent and forgotten; a batch rolled back; time passing; the retention's prune)
are applied to a store that a ``LiveHealth`` observes; after each step its every answer is compared
with a fresh ``HealthModel``'s over the same store at the same time. The live
model's bound on time-dependent figures is 0 here: what it caches is then kept
only while the clock stands still and the facts do not change, which is what
is being checked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.wire import Envelope, Sample, Status
from collector.state.health import OVERVIEW_DAYS, HealthModel
from collector.state.inventory import Commune, Inventory
from collector.state.livehealth import LiveHealth
from collector.state.store import StateStore, Subject, agent_key

T0 = 1_795_000_000.0
PROVINCES = ("dong-nai", "ha-noi")
COMMUNES = ("la-nga", "phu-hoa")
AGENTS = ("pc-1", "pc-2", "poller")
INVENTORY = Inventory(
    province="dong-nai",
    name="Đồng Nai",
    communes=[
        Commune(slug="la-nga", name="Xã La Ngà", pcs=3, polycoms=1, uplinks=["router:Gi0/1"]),
        Commune(slug="empty", name="Xã Trống", pcs=5),
    ],
)


class Failing:
    """An observer after the live model's that fails a batch when told to: the batch
    is rolled back after the live model saw it."""

    def __init__(self) -> None:
        self.fail = False

    def __call__(self, _db: sqlite3.Connection, _batch: Sequence[Envelope], _now: float) -> None:
        if self.fail:
            raise RuntimeError("the batch fails after the live model saw it")


def envelope(place: tuple[str, str, str], at: float, samples: list[Sample]) -> Envelope:
    province, commune, agent = place
    return Envelope(v=1, agent=agent, province=province, commune=commune, seq=int(at), ts=at,
                    samples=samples)  # fmt: skip


def status(place: tuple[str, str, str], at: float, state: str = "online") -> Status:
    province, commune, agent = place
    return Status(v=1, state=state, agent=agent, province=province, commune=commune, ts=at,  # type: ignore[arg-type]
                  interval=60.0, reason="" if state == "online" else "stopped")  # fmt: skip


def line(ts: float, name: str, network: str, up: bool, rtt: float) -> Sample:
    fields: dict[str, Any] = {"up": int(up), "loss_percent": 0.0 if up else 100.0}
    if up:
        fields["rtt_ms"] = rtt
    return Sample(ts=ts, check="link", name=name, outcome="ok" if up else "timeout",
                  target="10.75.0.1", fields=fields, tags={"network": network})  # fmt: skip


def antivirus(ts: float, verdict: str) -> Sample:
    return Sample(ts=ts, check="antivirus", name="antivirus", outcome="ok",
                  fields={"verdict": verdict, "protected": verdict == "protected"})  # fmt: skip


def polycom(ts: float, up: bool, ready: bool) -> Sample:
    return Sample(ts=ts, check="polycom", name="polycom", outcome="ok", target="192.168.1.20",
                  fields={"up": int(up), "ready": ready, "registered": True})  # fmt: skip


def port(ts: float, name: str, up: bool) -> Sample:
    return Sample(ts=ts, check="snmp", name="router", outcome="ok", item="interface",
                  target=name, fields={"oper_up": up, "admin_status": 1})  # fmt: skip


def router(ts: float, up: bool) -> Sample:
    return Sample(ts=ts, check="snmp", name="router", outcome="ok", target="192.168.1.1",
                  fields={"up": int(up)})  # fmt: skip


def host(ts: float, name: str) -> Sample:
    """Not read by the roll-up: unless named as one of its series."""
    return Sample(ts=ts, check="host", name=name, outcome="ok", fields={"cpu_percent": 3.0})


ages = st.sampled_from([0.0, 0.0, 0.0, -30.0, -3600.0])
"""How old a sample is when it arrives: mostly now, sometimes late (a backlog)."""
samples = st.one_of(
    st.tuples(st.just("line"), ages, st.sampled_from(["tslcd", "internet"]),
              st.sampled_from(["tslcd", "internet"]), st.booleans(), st.sampled_from([5.0, 9.5])),
    st.tuples(st.just("antivirus"), ages,
              st.sampled_from(["protected", "outdated", "unprotected", "none", "unknown"])),
    st.tuples(st.just("polycom"), ages, st.booleans(), st.booleans()),
    st.tuples(st.just("port"), ages, st.sampled_from(["Gi0/1", "Gi0/2"]), st.booleans()),
    st.tuples(st.just("router"), ages, st.booleans()),
    st.tuples(st.just("host"), ages, st.sampled_from(["host", "antivirus"])),
)  # fmt: skip
"""(kind, age, what it says...): made into a sample at the step's time."""
MAKERS = {"line": line, "antivirus": antivirus, "polycom": polycom, "port": port,
          "router": router, "host": host}  # fmt: skip
places = st.tuples(st.sampled_from(PROVINCES), st.sampled_from(COMMUNES), st.sampled_from(AGENTS))
steps = st.one_of(
    st.tuples(st.just("envelope"), places, st.lists(samples, min_size=1, max_size=4)),
    st.tuples(st.just("status"), places, st.sampled_from(["online", "offline"])),
    st.tuples(st.just("silence"), st.sampled_from([60.0, 600.0])),
    st.tuples(st.just("forget"), st.sampled_from([600.0, 7200.0])),
    st.tuples(st.just("failed_batch"), places, st.lists(samples, min_size=1, max_size=2)),
    st.tuples(st.just("time"), st.sampled_from([1.0, 90.0, 3600.0, 86400.0, 31 * 86400.0])),
    # Cut-offs beyond the longest window: a shorter one also deletes ended outages the
    # figures still read, which the live model sees only when they pass their bound.
    st.tuples(st.just("prune"), st.sampled_from([31 * 86400.0, 40 * 86400.0])),
)


@contextlib.contextmanager
def world(tmp_path: Path) -> Iterator[tuple[StateStore, LiveHealth, Failing, list[float]]]:
    now = [T0]
    store = StateStore(tmp_path / "state.sqlite", clock=lambda: now[0])
    live = LiveHealth(store, [INVENTORY], clock=lambda: now[0], figures_bound_s=0.0)
    live.install(store)
    failing = Failing()
    store.observers.append(failing)
    try:
        yield store, live, failing, now
    finally:
        live.close()
        store.close()


def apply(store: StateStore, failing: Failing, now: list[float], step: tuple[Any, ...]) -> None:
    kind = step[0]
    if kind in ("envelope", "failed_batch"):
        made = [MAKERS[m[0]](now[0] + m[1], *m[2:]) for m in step[2]]
        failing.fail = kind == "failed_batch"
        try:
            store.apply([envelope(step[1], now[0], made)], received=now[0])
        except RuntimeError:
            assert kind == "failed_batch"
        finally:
            failing.fail = False
    elif kind == "status":
        store.apply(statuses=[(status(step[1], now[0], step[2]), now[0])])
    elif kind == "silence":
        store.mark_silent(now[0], intervals=1.0, default_interval=step[1])
    elif kind == "forget":
        store.forget_agents(now[0] - step[1])
    elif kind == "prune":  # the retention's cut-off: quiet subjects go, their history too
        store.prune(now[0] - step[1])
    else:
        now[0] += step[1]


def probes(subjects: list[Subject]) -> list[Subject]:
    """What availability reads of a line's probes (not ``last_ts``: the held one is as of
    the probe's last change of state)."""
    return [dataclasses.replace(s, last_ts=0.0) for s in subjects]


def same_answers(store: StateStore, live: LiveHealth, now: float) -> None:
    fresh = HealthModel(store, [INVENTORY], clock=lambda: now)
    assert live.places() == fresh.places()
    assert live.provinces() == fresh.provinces()
    for province in fresh.provinces():
        assert live.places(province) == fresh.places(province)
        assert live.province(province) == fresh.province(province)
        assert live.communes(province) == fresh.communes(province)
        overview = live.communes(province, detail=False, days=OVERVIEW_DAYS)
        assert overview == fresh.communes(province, detail=False, days=OVERVIEW_DAYS)
        assert probes(live.line_probes(province)) == probes(fresh.line_probes(province))
    for province, slug in fresh.places():
        assert live.commune(slug, province, days=OVERVIEW_DAYS) == fresh.commune(
            slug, province, days=OVERVIEW_DAYS
        )
        assert probes(live.line_probes(province, slug)) == probes(fresh.line_probes(province, slug))
    assert live.communes() == fresh.communes()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(steps, min_size=1, max_size=25))
def test_the_live_model_answers_as_a_full_recomputation(
    tmp_path_factory: pytest.TempPathFactory, sequence: list[tuple[Any, ...]]
) -> None:
    with world(tmp_path_factory.mktemp("live")) as (store, live, failing, now):
        same_answers(store, live, now[0])  # nothing known yet
        for step in sequence:
            apply(store, failing, now, step)
            same_answers(store, live, now[0])
            # Asked again with nothing changed: the cached answers.
            same_answers(store, live, now[0])


PRUNED = (
    ("status", ("dong-nai", "la-nga", "pc-1"), "online"),
    ("envelope", ("dong-nai", "la-nga", "pc-1"),
     [("line", 0.0, "tslcd", "tslcd", False, 5.0), ("polycom", 0.0, True, True)]),
    ("time", 32 * 86400.0),
    ("prune", 31 * 86400.0),
)  # fmt: skip
"""A line probe down and a Polycom, both silent beyond the retention's cut-off: pruned."""


def test_subjects_the_prune_deleted_leave_the_live_model(tmp_path: Path) -> None:
    """The prune deletes a probe silent beyond the retention with its history: the live
    model, which held it, drops it too (it listed a probe the store no longer has)."""
    with world(tmp_path) as (store, live, failing, now):
        for step in PRUNED[:-1]:
            apply(store, failing, now, step)
        same_answers(store, live, now[0])  # held
        assert store.subjects()
        ids = {subject.id for subject in live.line_probes("dong-nai")}
        assert ids and any(key[0] in ids for key in live._targets)
        apply(store, failing, now, PRUNED[-1])
        assert not store.subjects()
        same_answers(store, live, now[0])
        live.refresh()  # what was derived of each probe goes with it
        assert not any(key[0] in ids for key in live._targets)


def test_a_province_first_asked_after_ingest_began_is_read_whole(tmp_path: Path) -> None:
    """Held only once asked for: what came before is read from the store."""
    with world(tmp_path) as (store, live, failing, now):
        apply(store, failing, now, ("status", ("ha-noi", "la-nga", "pc-1"), "online"))
        made = [("line", 0.0, "tslcd", "tslcd", False, 0.0)]
        apply(store, failing, now, ("envelope", ("ha-noi", "la-nga", "pc-1"), made))
        assert live.commune("la-nga", "ha-noi") is not None  # ha-noi held from here on
        apply(store, failing, now, ("time", 600.0))
        made = [("line", 0.0, "tslcd", "tslcd", True, 5.0)]
        apply(store, failing, now, ("envelope", ("ha-noi", "la-nga", "pc-1"), made))
        commune = live.commune("la-nga", "ha-noi")
        assert commune is not None and commune.line.up is True and commune.line.rtt_ms == 5.0
        same_answers(store, live, now[0])


class Holding:
    """An observer after the live model's that holds its batch's transaction open, once
    armed, until released."""

    def __init__(self) -> None:
        self.armed = False
        self.inside = threading.Event()
        self.release = threading.Event()

    def __call__(self, db: sqlite3.Connection, envelopes: Sequence[Any], now: float) -> None:
        if self.armed:
            self.inside.set()
            assert self.release.wait(60), "never released"


@pytest.mark.parametrize("commune_known", [True, False])
def test_a_province_first_asked_while_a_batch_commits_misses_none_of_it(
    tmp_path: Path, commune_known: bool
) -> None:
    """A province loaded while a batch's transaction is open: the batch's observer call
    came before the province was held, its commit after. Read then, the province missed
    what the batch changed until its series' next samples (and the places, a commune
    the batch brought); both are read between batches. ``commune_known``: the places
    were read before (the province's load alone is tested), or the batch brings the
    commune."""
    with world(tmp_path) as (store, live, failing, now):
        if commune_known:
            apply(store, failing, now, ("status", ("ha-noi", "la-nga", "pc-1"), "online"))
            assert ("ha-noi", "la-nga") in live.places()
        holding = Holding()
        store.observers.append(holding)
        holding.armed = True
        made = [("line", 0.0, "tslcd", "tslcd", False, 0.0), ("polycom", 0.0, True, True)]
        batch = threading.Thread(
            target=apply,
            args=(store, failing, now, ("envelope", ("ha-noi", "la-nga", "pc-1"), made)),
        )
        batch.start()
        assert holding.inside.wait(60), "the batch never reached its observers"
        asked = threading.Thread(target=live.commune, args=("la-nga", "ha-noi"))
        asked.start()
        asked.join(1.0)  # read while the batch is open, as it was, the load is over by now
        holding.armed = False
        holding.release.set()
        batch.join(60)
        asked.join(60)
        assert not batch.is_alive() and not asked.is_alive()
        commune = live.commune("la-nga", "ha-noi")
        assert commune is not None and commune.line.monitored  # the batch's probe
        same_answers(store, live, now[0])


def test_figures_that_depend_on_time_alone_are_at_most_the_bound_old(tmp_path: Path) -> None:
    now = [T0]
    store = StateStore(tmp_path / "state.sqlite", clock=lambda: now[0])
    live = LiveHealth(store, [INVENTORY], clock=lambda: now[0], figures_bound_s=60.0)
    live.install(store)
    try:
        pc = ("dong-nai", "la-nga", "pc-1")
        store.apply(statuses=[(status(pc, T0), T0)])
        store.apply([envelope(pc, T0, [line(T0, "tslcd", "tslcd", False, 0.0)])])
        now[0] += 600
        first = live.commune("la-nga", "dong-nai")
        assert first is not None and first.line.availability.last_24h == 0.0
        store.apply([envelope(pc, now[0], [line(now[0], "tslcd", "tslcd", True, 9.0)])])
        now[0] += 600  # the line has been up for half the time watched
        fresh = HealthModel(store, [INVENTORY], clock=lambda: now[0]).commune("la-nga")
        assert fresh is not None and fresh.line.availability.last_24h == 50.0
        # Its state changed: its history is read again, whatever the bound.
        second = live.commune("la-nga", "dong-nai")
        assert second == fresh
        now[0] += 20  # within the bound: the figure of 20 s ago, the facts of now
        third = live.commune("la-nga", "dong-nai")
        assert third is not None and third.line.availability.last_24h == 50.0
        now[0] += 60  # beyond it: read again
        later = HealthModel(store, [INVENTORY], clock=lambda: now[0]).commune("la-nga")
        assert live.commune("la-nga", "dong-nai") == later
        assert later is not None and later.line.availability.last_24h != 50.0
    finally:
        live.close()
        store.close()


def test_figures_asked_lately_are_computed_again_before_their_bound(tmp_path: Path) -> None:
    """The housekeeping's ``refresh``: a commune asked lately has its figures computed
    again before they pass their bound, so the next request does not read its outages;
    one not asked for a while is left for its next request."""
    now = [T0]
    store = StateStore(tmp_path / "state.sqlite", clock=lambda: now[0])
    live = LiveHealth(store, [INVENTORY], clock=lambda: now[0], figures_bound_s=60.0)
    live.install(store)
    reads: list[int] = []
    outages = live._outages
    live._outages = lambda *a: (reads.append(1), outages(*a))[1]  # type: ignore[method-assign]
    try:
        pc = ("dong-nai", "la-nga", "pc-1")
        store.apply(statuses=[(status(pc, T0), T0)])
        store.apply([envelope(pc, T0, [line(T0, "tslcd", "tslcd", False, 0.0)])])
        store.apply([envelope(pc, T0 + 600, [line(T0 + 600, "tslcd", "tslcd", True, 9.0)])])
        now[0] += 1200
        assert live.commune("la-nga", "dong-nai") is not None
        asked = len(reads)
        assert live.refresh() == 0  # fresh: nothing to do
        now[0] += 60  # beyond any commune's bound (30 to 60 s)
        assert live.refresh() == 1 and len(reads) == asked + 1
        current = live.commune("la-nga", "dong-nai")
        assert len(reads) == asked + 1  # the request found it computed
        expected = HealthModel(store, [INVENTORY], clock=lambda: now[0]).commune("la-nga")
        assert current == expected
        now[0] += 400  # not asked for longer than ASKED_WITHIN_S: left alone
        assert live.refresh() == 0 and len(reads) == asked + 1
    finally:
        live.close()
        store.close()


def test_held_facts_share_one_object_for_each_repeated_text(tmp_path: Path) -> None:
    """A country's held facts are mostly texts that repeat (an agent's key in each of
    its rows, "link", a probe's target): loaded or fed, each is held once per province,
    not once per row (the country's facts in ~0.57 of the memory)."""
    pcs = [("ha-noi", "la-nga", f"pc-{n}") for n in (1, 2)]
    with world(tmp_path) as (store, live, failing, now):
        for pc in pcs:
            apply(store, failing, now, ("status", pc, "online"))
            made = [("line", 0.0, "tslcd", "tslcd", True, 5.0), ("antivirus", 0.0, "protected")]
            apply(store, failing, now, ("envelope", pc, made))
        assert live.commune("la-nga", "ha-noi") is not None  # loaded from the store

        def held() -> tuple[list[Any], list[Subject], dict[str, Any]]:
            commune = live.facts._communes[("ha-noi", "la-nga")]
            return (list(commune.latest.values()), list(commune.subjects.values()),
                    dict(commune.agents))  # fmt: skip

        latest, subjects, agents = held()
        assert len(latest) == 4 and len(subjects) == 2
        for sample in latest:
            assert sample.agent_key is agents[sample.agent_key].agent_key
        links = [s for s in latest if s.check == "link"]
        assert links[0].target is links[1].target and links[0].check is links[1].check
        assert links[0].outcome is links[1].outcome
        assert subjects[0].kind is subjects[1].kind and subjects[0].target is subjects[1].target

        apply(store, failing, now, ("time", 90.0))
        for pc in pcs:  # fed: the newer samples keep the texts held
            apply(
                store, failing, now, ("envelope", pc, [("line", 0.0, "tslcd", "tslcd", True, 9.5)])
            )
        fed, _, _ = held()
        assert sorted(s.ts for s in fed if s.check == "link") == [now[0], now[0]]
        for before, after in zip(sorted(latest, key=id_of), sorted(fed, key=id_of), strict=True):
            assert after.agent_key is before.agent_key and after.target is before.target
            assert after.outcome is before.outcome

        # Read again from the store (a status; a line going down): the texts as held.
        apply(store, failing, now, ("time", 90.0))
        apply(store, failing, now, ("status", pcs[0], "offline"))
        down = [("line", 0.0, "tslcd", "tslcd", False, 0.0)]
        apply(store, failing, now, ("envelope", pcs[1], down))
        _, changed, again = held()
        assert again[agent_key(*pcs[0])].state == "offline"
        assert sorted(s.state for s in changed) == ["down", "up"]
        for key, agent in again.items():
            assert agent.agent_key is agents[key].agent_key and agent.agent is agents[key].agent
        for before, after in zip(subjects, changed, strict=True):
            assert after.agent_key is before.agent_key and after.target is before.target
            assert after.kind is before.kind and after.network is before.network
        same_answers(store, live, now[0])


def id_of(sample: Any) -> tuple[str, str, str, str]:
    return (sample.agent_key, sample.name, sample.item, sample.target)
