"""The shared systems' views: every commune's reach of a system told apart from its own
line, and the figures over a window worked out by hand from a history built here."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.state import maintenance, systemtimes
from collector.state.inventory import Commune, Inventory
from collector.state.migrations import LATEST
from collector.state.store import StateStore
from collector.state.systemhealth import SystemsModel, system_subject
from collector.state.systems import parse_catalogue
from tests.factories import Feed, envelope, link, status, system

HOUR = 3600.0
COMMUNES = ["la-nga", "phu-ly", "tan-phu", "xuan-bac", "dinh-quan"]
INVENTORY = Inventory(
    province="dong-nai",
    communes=[Commune(slug=slug, name=f"Xã {slug}") for slug in COMMUNES],
)
CATALOGUE = parse_catalogue(
    {
        "province": "dong-nai",
        "systems": [
            {"id": "mot-cua", "name": "Một cửa điện tử", "kind": "one-stop", "network": "tslcd",
             "url": "https://motcua.dongnai.gov.vn/", "owner": "Sở KH&CN"},
            {"id": "lis", "name": "DongNai.LIS", "kind": "land", "network": "tslcd",
             "url": "https://lis.dongnai.gov.vn/", "slow_ms": 5000,
             "communes": ["la-nga", "phu-ly"]},
        ],
        "websites": [
            {"commune": "la-nga", "url": "https://langa.dongnai.gov.vn/"},
            {"commune": "phu-ly", "url": "https://phuly.dongnai.gov.vn/"},
        ],
    },
    "test",
    INVENTORY,
)  # fmt: skip
NOW = float(int(time.time() // HOUR) * HOUR)
T0 = NOW - 10 * HOUR


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    opened = StateStore(tmp_path / "state.sqlite", clock=lambda: NOW)
    yield opened
    opened.close()


def model(store: StateStore) -> SystemsModel:
    return SystemsModel(store, [INVENTORY], lambda: {"dong-nai": CATALOGUE}, lambda: NOW)


def test_each_communes_reach_is_told_apart_from_its_own_line(store: StateStore) -> None:
    feed = Feed(store, T0)
    feed.online("la-nga", "phu-ly", "tan-phu", "dinh-quan")
    at = NOW - 60
    feed.send("la-nga", link(at), system(at, total_ms=180.0, cert_days=40.0))
    feed.send("phu-ly", link(at, up=False), system(at, outcome="down", total_ms=None))
    feed.send("tan-phu", link(at), system(at, outcome="bad_response", error="a login page"))
    feed.send("dinh-quan", link(at), system(at, total_ms=4500.0, cert_days=9.0))
    # xuan-bac's poller said something once and went off.
    feed.send("xuan-bac", link(T0), system(T0))
    store.apply(statuses=[(status("offline", T0 + 1, agent="poller", commune="xuan-bac"), T0)])

    health = model(store).system("dong-nai", "mot-cua")
    assert health is not None
    states = {r.commune: r.state for r in health.reach}
    assert states == {
        "la-nga": "ok",
        "phu-ly": "line_down",  # the commune's line: its problem, alerted as the line
        "tan-phu": "bad_response",
        "xuan-bac": "silent",  # a PC switched off says nothing of the system
        "dinh-quan": "slow",  # slower than the catalogue's 3 s
    }
    assert (health.communes, health.probing, health.reaching) == (5, 4, 2)
    assert health.unreachable == ["tan-phu"] and health.line_down == ["phu-ly"]
    # One of the three communes with their line up cannot use it: not most of them.
    assert health.verdict == "local" and health.status == "warning"
    assert health.cert_days == 9.0  # the fewest days any commune saw
    assert health.median_ms == pytest.approx((180.0 + 4500.0) / 2)
    assert health.reach[2].error == "a login page"


def test_most_communes_with_their_line_up_failing_is_the_systems_problem(
    store: StateStore,
) -> None:
    feed = Feed(store, T0)
    feed.online(*COMMUNES)
    at = NOW - 60
    for commune in ("la-nga", "phu-ly", "tan-phu"):
        feed.send(commune, link(at), system(at, outcome="down"))
    feed.send("xuan-bac", link(at), system(at))
    feed.send("dinh-quan", link(at, up=False), system(at, outcome="down"))
    health = model(store).system("dong-nai", "mot-cua")
    assert health is not None
    assert health.verdict == "down" and health.status == "critical"
    assert health.unreachable == ["la-nga", "phu-ly", "tan-phu"]
    assert health.line_down == ["dinh-quan"]


def test_a_scope_sees_its_communes_only_and_no_system_they_do_not_use(
    store: StateStore,
) -> None:
    feed = Feed(store, T0)
    feed.online(*COMMUNES)
    at = NOW - 60
    for commune in COMMUNES:
        feed.send(commune, link(at), system(at, outcome="down" if commune != "xuan-bac" else "ok"))
    views = model(store)
    health = views.system("dong-nai", "mot-cua", scope=["xuan-bac"])
    assert health is not None and [r.commune for r in health.reach] == ["xuan-bac"]
    assert health.verdict == "ok"
    assert views.system("dong-nai", "lis", scope=["xuan-bac"]) is None
    assert [s.id for s in views.systems("dong-nai", scope=["tan-phu"])] == ["mot-cua"]
    assert [s.id for s in views.systems("dong-nai")] == ["mot-cua", "lis", "website"]


def test_the_figures_of_a_window_as_worked_out_by_hand(store: StateStore) -> None:
    """Two communes over ten hours. La Ngà: the system down 1 h with its line up (counts),
    down 30 min inside the system's maintenance. Phú Lý: down 2 h, of which 1 h its own
    line was down (excluded, shown apart). Maintenance 1 h for both communes."""
    feed = Feed(store, T0)
    feed.online("la-nga", "phu-ly")
    # (hours after T0, the system answers, the commune's line is up)
    la_nga = [(0.0, True, True), (1.0, False, True), (2.0, True, True), (6.0, False, True),
              (6.5, True, True), (9.9, True, True)]  # fmt: skip
    phu_ly = [(0.0, True, True), (3.0, False, False), (4.0, False, True), (5.0, True, True),
              (9.9, True, True)]  # fmt: skip
    for commune, history in (("la-nga", la_nga), ("phu-ly", phu_ly)):
        for hours, up, line_up in history:
            at = T0 + hours * HOUR
            feed.send(commune, link(at, line_up),
                      system(at, outcome="ok" if up else "down", total_ms=100.0))  # fmt: skip
    maintenance.add(store, province="dong-nai", device="mot-cua", starts=T0 + 6 * HOUR,
                    ends=T0 + 7 * HOUR, created_by="test", now=NOW)  # fmt: skip
    views = model(store)
    [figures] = [p.figures for p in views.period("dong-nai", T0, NOW) if p.id == "mot-cua"]
    assert figures.communes == 2
    assert figures.line_excluded_s == pytest.approx(1 * HOUR)
    assert figures.maintenance_s == pytest.approx(2 * HOUR)
    # Watched: 2 x 10 h less 1 h of line and 2 h of maintenance; down: 1 h + 1 h.
    assert figures.observed_s == pytest.approx(17 * HOUR)
    assert figures.down_s == pytest.approx(2 * HOUR)
    assert figures.availability == pytest.approx(100 * 15 / 17)
    # With maintenance counted: 19 h watched, 2.5 h down.
    assert figures.availability_with_maintenance == pytest.approx(100 * 16.5 / 19)


def test_response_times_are_counted_once_and_read_back_as_percentiles(
    store: StateStore,
) -> None:
    feed = Feed(store, T0)
    feed.online("la-nga")
    for n in range(20):
        at = T0 + n * 60
        sample = system(at, total_ms=100.0 if n < 17 else 2000.0)
        feed.send("la-nga", link(at), sample)
        if n % 5 == 0:  # a redelivered envelope: nothing counted twice
            store.apply([envelope(feed.seq["la-nga"], link(at), sample, agent="poller")])
    feed.send("la-nga", system(T0 + 30 * 60, outcome="down"))  # no time: not counted
    [figures] = [p.figures for p in model(store).period("dong-nai", T0, NOW) if p.id == "mot-cua"]
    assert figures.answers == 20
    assert figures.p50_ms == pytest.approx(100.0, rel=0.1)
    assert figures.p95_ms == pytest.approx(2000.0, rel=0.1)


def test_the_histograms_bucket_within_a_tenth() -> None:
    for ms in (1.5, 37.0, 250.0, 999.0, 3000.0, 59_000.0):
        assert systemtimes.value_of(systemtimes.bucket_of(ms)) == pytest.approx(ms, rel=0.1)
    assert systemtimes.bucket_of(float("nan")) == 0
    assert systemtimes.bucket_of(1e12) == systemtimes.bucket_of(systemtimes.MAX_MS)
    assert systemtimes.percentile({}, 0.5) is None


def test_a_systems_incidents_are_its_alerts_and_a_scope_sees_its_own(store: StateStore) -> None:
    with store.transaction() as db:
        for subject, commune in (
            (system_subject("dong-nai", "mot-cua"), ""),
            (system_subject("dong-nai", "mot-cua", "la-nga"), "la-nga"),
            (system_subject("dong-nai", "mot-cua", "phu-ly"), "phu-ly"),
        ):
            db.execute(
                """INSERT INTO alerts (rule, subject, province, commune, agent, name, target,
                   severity, state, started_at, fired_at, value, labels, late)
                   VALUES ('system_down', ?, 'dong-nai', ?, '', 'mot-cua', '', 'critical',
                           'firing', ?, ?, '3', '{}', 0)""",
                (subject, commune, T0, T0),
            )
    views = model(store)
    every = views.period("dong-nai", T0 - HOUR, NOW)[0].figures.incidents
    assert [i.communes for i in every] == ["", "la-nga", "phu-ly"]
    mine = views.period("dong-nai", T0 - HOUR, NOW, scope=["la-nga"])[0].figures.incidents
    assert [i.communes for i in mine] == ["", "la-nga"]


def test_the_store_carries_the_response_time_tables() -> None:
    assert LATEST >= 10
