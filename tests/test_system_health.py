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
    assert health.unreachable == [] and health.reaching == 1
    assert health.verdict == "down"  # the system's, judged from every commune
    assert views.system("dong-nai", "lis", scope=["xuan-bac"]) is None
    assert [s.id for s in views.systems("dong-nai", scope=["tan-phu"])] == ["mot-cua"]
    assert [s.id for s in views.systems("dong-nai")] == ["mot-cua", "lis", "website"]


def test_the_figures_of_a_window_as_worked_out_by_hand(store: StateStore) -> None:
    """Two communes over ten hours. La Ngà: the system down 1 h with its line up (counts),
    down 30 min inside the system's maintenance. Phú Lý: down 2 h, of which 1 h its own
    line was down (excluded, shown apart). Maintenance 1 h for both communes."""
    feed = Feed(store, T0)
    feed.online("la-nga", "phu-ly", interval=300)
    # From each time on (hours after T0): the system answers, the commune's line is up.
    la_nga = {0.0: (True, True), 1.0: (False, True), 2.0: (True, True), 6.0: (False, True),
              6.5: (True, True)}  # fmt: skip
    phu_ly = {0.0: (True, True), 3.0: (False, False), 4.0: (False, True), 5.0: (True, True)}
    for commune, history in (("la-nga", la_nga), ("phu-ly", phu_ly)):
        play(feed, commune, history, until=10 * HOUR)
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


def play(
    feed: Feed,
    commune: str,
    history: dict[float, tuple[bool, bool]],
    until: float,
    off: tuple[float, float] | None = None,
) -> None:
    """The commune's poller every 5 minutes from T0 to T0 + ``until``, as ``history``
    says from each hour on; nothing while it is ``off`` (hours)."""
    for step in range(int(until // 300)):
        hours = step * 300 / HOUR
        if off is not None and off[0] <= hours < off[1]:
            continue
        up, line_up = history[max(h for h in history if h <= hours)]
        at = T0 + step * 300
        feed.send(commune, link(at, line_up),
                  system(at, outcome="ok" if up else "down", total_ms=100.0))  # fmt: skip


def test_the_time_a_probing_pc_was_off_counts_neither_up_nor_down(store: StateStore) -> None:
    """La Ngà's poller is switched off from 2 h to 5 h while the system is down (from
    1 h to 6 h). Its last word (down, at 1:55) holds one interval; the rest of the
    silence is nobody's: 2 h down, not 5."""
    feed = Feed(store, T0)
    feed.online("la-nga", interval=300)
    play(feed, "la-nga", {0.0: (True, True), 1.0: (False, True), 6.0: (True, True)},
         until=10 * HOUR, off=(2.0, 5.0))  # fmt: skip
    [figures] = [p.figures for p in model(store).period("dong-nai", T0, NOW) if p.id == "mot-cua"]
    # 1:55's word holds to 2:00; nobody watched from 2:00 to 5:00.
    assert figures.unwatched_s == pytest.approx(3 * HOUR)
    assert figures.observed_s == pytest.approx(10 * HOUR - 3 * HOUR)
    assert figures.down_s == pytest.approx(5 * HOUR - 3 * HOUR)
    # The PC off now (its goodbye): from one interval after its last word, unwatched too.
    store.apply(statuses=[(status("offline", NOW, agent="poller", reason="stopped"), NOW)])
    [later] = [p.figures for p in model(store).period("dong-nai", T0, NOW) if p.id == "mot-cua"]
    assert later.unwatched_s == pytest.approx(3 * HOUR)  # its last word was at 9:55


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


def test_a_replaced_probing_pc_says_nothing_after_its_last_word(store: StateStore) -> None:
    """La Ngà's old poller answered "up" until 2 h and was replaced (switched off for
    good); the new one, from 2 h, sees the system down from 4 h to 5 h. The old one's
    last word does not outvote the new one's."""
    feed = Feed(store, T0)
    feed.online("la-nga", interval=300)
    play(feed, "la-nga", {0.0: (True, True)}, until=2 * HOUR)
    store.apply(statuses=[(status("offline", T0 + 2 * HOUR, agent="poller", reason="stopped"),
                           T0 + 2 * HOUR)])  # fmt: skip
    store.apply(statuses=[(status("online", T0 + 2 * HOUR, agent="poller-2", interval=300),
                           T0 + 2 * HOUR)])  # fmt: skip
    for step in range(int(2 * HOUR // 300), int(10 * HOUR // 300)):
        at = T0 + step * 300
        up = not (4 * HOUR <= step * 300 < 5 * HOUR)
        store.apply([envelope(step, link(at), system(at, outcome="ok" if up else "down"),
                              agent="poller-2")])  # fmt: skip
    [figures] = [p.figures for p in model(store).period("dong-nai", T0, NOW) if p.id == "mot-cua"]
    assert figures.down_s == pytest.approx(HOUR)
    assert figures.unwatched_s == pytest.approx(0.0)


def test_the_same_answer_twice_in_one_envelope_counts_once(store: StateStore) -> None:
    feed = Feed(store, T0)
    feed.online("la-nga")
    answer = system(T0 + 60, total_ms=300.0)
    feed.send("la-nga", answer, answer)
    [figures] = [p.figures for p in model(store).period("dong-nai", T0, NOW) if p.id == "mot-cua"]
    assert figures.answers == 1


def test_a_window_on_the_probing_pc_leaves_its_time_out(store: StateStore) -> None:
    feed = Feed(store, T0)
    feed.online("la-nga", interval=300)
    play(feed, "la-nga", {0.0: (True, True), 3.0: (False, True), 4.0: (True, True)},
         until=10 * HOUR)  # fmt: skip
    # The PC's own window (its whole place), and one on its probe of mot-cua.
    maintenance.add(store, province="dong-nai", commune="la-nga", agent="poller",
                    starts=T0 + 3 * HOUR, ends=T0 + 4 * HOUR, created_by="t", now=NOW)  # fmt: skip
    maintenance.add(store, province="dong-nai", commune="la-nga", agent="poller",
                    device="mot-cua", starts=T0 + 8 * HOUR, ends=T0 + 9 * HOUR,
                    created_by="test", now=NOW)  # fmt: skip
    [figures] = [p.figures for p in model(store).period("dong-nai", T0, NOW) if p.id == "mot-cua"]
    assert figures.down_s == pytest.approx(0.0)
    assert figures.maintenance_s == pytest.approx(2 * HOUR)
