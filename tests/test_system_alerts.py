"""The shared systems' alerts: one for a system most communes cannot use, none for a
commune whose own line is down, one for a commune alone with its line up; slow from
everywhere against slow here; a certificate near its end; the owner's route; maintenance."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from collector.alerts.engine import AlertEngine
from collector.alerts.notify import Notifier, Route
from collector.alerts.records import list_alerts
from collector.alerts.rules import default_rules, parse_rules
from collector.state import maintenance
from collector.state.inventory import Commune, Inventory
from collector.state.store import StateStore
from collector.state.systemhealth import SystemsModel
from collector.state.systems import parse_catalogue
from tests.factories import Feed, link, status, system
from tests.test_notify import HttpReceiver

COMMUNES = ["la-nga", "phu-ly", "tan-phu", "xuan-bac", "dinh-quan"]
INVENTORY = Inventory(
    province="dong-nai", communes=[Commune(slug=c, name=f"Xã {c}") for c in COMMUNES]
)
CATALOGUE = parse_catalogue(
    {
        "province": "dong-nai",
        "systems": [
            {"id": "mot-cua", "name": "Một cửa điện tử", "kind": "one-stop", "network": "tslcd",
             "url": "https://motcua.dongnai.gov.vn/", "route": "so-khcn"},
        ],
        "websites": [
            {"commune": c, "url": f"https://{c}.dongnai.gov.vn/", "route": "so-khcn"}
            for c in COMMUNES
        ],
    },
    "test",
    INVENTORY,
    routes=["so-khcn", "technicians"],
)  # fmt: skip
T0 = float(int(time.time()) // 60 * 60) - 3600


class World:
    """Five communes' pollers, the store, the engine with the default rules."""

    def __init__(self, tmp_path: Path) -> None:
        self.now = T0
        self.store = StateStore(tmp_path / "state.sqlite", clock=lambda: self.now)
        self.views = SystemsModel(
            self.store, [INVENTORY], lambda: {"dong-nai": CATALOGUE}, lambda: self.now
        )
        self.engine = AlertEngine(default_rules(), systems=self.views, clock=lambda: self.now)
        self.engine.install(self.store)
        self.feed = Feed(self.store, T0)
        self.feed.online(*COMMUNES)

    def minute(self, answers: dict[str, tuple[bool, str, float]]) -> None:
        """One probe round: per commune (its line up, the system's outcome, total ms);
        the websites answer well. Then the clock's rules."""
        self.now += 60
        for commune, (line_up, outcome, ms) in answers.items():
            self.feed.send(
                commune,
                link(self.now, line_up),
                system(self.now, outcome=outcome, total_ms=ms, cert_days=60.0),
                system(self.now, "website", target=f"https://{commune}.dongnai.gov.vn/"),
            )
        self.engine.tick(self.store, self.now)

    def firing(self) -> list[tuple[str, str]]:
        return sorted(
            (a.rule, a.commune)
            for a in list_alerts(self.store, self.now, state="firing")
            if a.rule.startswith(("system", "website"))
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    found = World(tmp_path)
    yield found
    found.store.close()


def everyone(outcome: str = "ok", ms: float = 150.0) -> dict[str, tuple[bool, str, float]]:
    return {c: (True, outcome, ms) for c in COMMUNES}


def test_a_system_most_communes_cannot_use_is_one_alert_to_its_owner(world: World) -> None:
    for _ in range(3):
        world.minute(everyone())
    answers = everyone("down")
    answers["xuan-bac"] = (True, "ok", 150.0)
    answers["dinh-quan"] = (False, "down", 0.0)  # its own line: not the system's count
    for _ in range(12):
        world.minute(answers)
    assert world.firing() == [("system_down", "")]
    [alert] = [a for a in list_alerts(world.store, world.now) if a.rule == "system_down"]
    assert alert.value == "3/4" and alert.labels == {"route": "so-khcn"}
    assert alert.name == "mot-cua" and alert.target == "Một cửa điện tử"
    # It comes back: resolved after resolve_after.
    for _ in range(7):
        world.minute(everyone())
    assert world.firing() == []


def test_a_commune_whose_line_is_down_raises_nothing_about_the_system(world: World) -> None:
    answers = everyone()
    answers["phu-ly"] = (False, "down", 0.0)
    for _ in range(15):
        world.minute(answers)
    assert world.firing() == []
    health = world.views.system("dong-nai", "mot-cua")
    assert health is not None and health.line_down == ["phu-ly"]


def test_one_commune_alone_with_its_line_up_is_a_local_alert_for_it(world: World) -> None:
    answers = everyone()
    answers["tan-phu"] = (True, "bad_response", 90.0)
    for _ in range(9):
        world.minute(answers)
    assert world.firing() == []  # for = 10 min
    for _ in range(3):
        world.minute(answers)
    assert world.firing() == [("system_unreachable_here", "tan-phu")]
    [alert] = [a for a in list_alerts(world.store, world.now) if a.commune == "tan-phu"]
    assert alert.labels == {}  # the commune's technicians, not the system's owner
    assert alert.agent == "poller" and "as the test says" in alert.value


def test_slow_from_everywhere_is_the_systems_and_from_one_commune_its_own(
    world: World,
) -> None:
    answers = everyone(ms=200.0)
    answers["la-nga"] = (True, "ok", 9000.0)
    for _ in range(32):
        world.minute(answers)
    assert world.firing() == [("system_slow_here", "la-nga")]
    for _ in range(17):
        world.minute(everyone(ms=8000.0))
    # Slow everywhere: the system's alert; la-nga's own has resolved into it.
    assert world.firing() == [("system_slow", "")]
    [alert] = [a for a in list_alerts(world.store, world.now, state="firing")
               if a.rule == "system_slow"]  # fmt: skip
    assert alert.value == "8000"


def test_a_certificate_near_its_end_is_an_alert(world: World) -> None:
    world.now += 60
    for commune in COMMUNES:
        world.feed.send(commune, link(world.now), system(world.now, cert_days=9.5))
    world.engine.tick(world.store, world.now)
    assert world.firing() == [("system_certificate_expiring", "")]
    [alert] = list_alerts(world.store, world.now, state="firing")
    assert alert.value == "9.5"


def test_one_commune_s_website_down_is_its_own_and_all_of_them_the_hosting(
    world: World,
) -> None:
    def round_(down: set[str]) -> None:
        world.now += 60
        for commune in COMMUNES:
            site = f"https://{commune}.dongnai.gov.vn/"
            outcome = "down" if commune in down else "ok"
            world.feed.send(commune, link(world.now), system(world.now, total_ms=100.0),
                            system(world.now, "website", outcome, target=site))  # fmt: skip
        world.engine.tick(world.store, world.now)

    for _ in range(12):
        round_({"la-nga"})
    assert world.firing() == [("website_down", "la-nga")]
    [alert] = [a for a in list_alerts(world.store, world.now) if a.rule == "website_down"]
    assert alert.target == "Trang thông tin điện tử Xã la-nga"
    assert alert.labels == {"route": "so-khcn"}
    for _ in range(12):
        round_(set(COMMUNES))
    assert world.firing() == [("system_down", "")]  # one alert for the hosting


def test_the_owners_route_hears_of_the_system_and_a_communes_route_does_not(
    world: World,
) -> None:
    owner, commune_route, everything = HttpReceiver(), HttpReceiver(), HttpReceiver()
    try:
        sender = Notifier(
            world.store,
            [
                Route("so-khcn", (owner.url,), communes=("nowhere",)),
                Route("technicians", (commune_route.url,), communes=("la-nga",)),
                Route("province", (everything.url,)),
            ],
            default_rules(),
            group_wait=0,
            clock=lambda: world.now,
        )
        for _ in range(7):
            world.minute(everyone("down"))
        assert world.firing() == [("system_down", "")]
        assert sender.run_once() == 2
        assert len(owner.received) == len(everything.received) == 1
        assert commune_route.received == []
        assert "Một cửa điện tử" in owner.received[0]["title"]
    finally:
        for receiver in (owner, commune_route, everything):
            receiver.stop()


def test_a_maintenance_window_on_the_system_keeps_its_alert_quiet(world: World) -> None:
    world.minute(everyone())
    maintenance.add(world.store, province="dong-nai", device="mot-cua", starts=world.now,
                    ends=world.now + 3600, created_by="test", now=world.now)  # fmt: skip
    sender = Notifier(
        world.store, [Route("province", ("json://127.0.0.1:9/none",))], default_rules(),
        group_wait=0, clock=lambda: world.now,
    )  # fmt: skip
    for _ in range(7):
        world.minute(everyone("down"))
    [alert] = list_alerts(world.store, world.now, state="firing")
    assert alert.rule == "system_down" and alert.maintenance
    assert sender.run_once() == 0


def test_system_rules_name_only_their_fields() -> None:
    with pytest.raises(Exception, match="not a field of system"):
        parse_rules(
            {"rules": [{"name": "x", "on": "system", "when": [
                {"field": "agents_online", "op": "==", "value": 0}]}]},
            "rules.toml",
        )  # fmt: skip
    [rule] = parse_rules(
        {"rules": [{"name": "x", "on": "reach", "when": [
            {"field": "total_ms", "op": ">", "value": 5000}]}]},
        "rules.toml",
    )  # fmt: skip
    assert rule.fields()["total_ms"] == "number"


# What an adversarial review found -------------------------------------------------------


def test_a_system_removed_from_the_catalogue_does_not_fire_for_ever(world: World) -> None:
    for _ in range(7):
        world.minute(everyone("down"))
    assert world.firing() == [("system_down", "")]
    # The catalogue loses mot-cua (the collector reads the file again).
    smaller = msgspec.structs.replace(CATALOGUE, systems=[])
    world.views.catalogues = lambda: {"dong-nai": smaller}
    for _ in range(7):
        world.minute(everyone("down"))
    assert world.firing() == []
    [alert] = list_alerts(world.store, world.now, state="resolved")
    assert alert.rule == "system_down"


def test_a_commune_back_under_a_system_down_everywhere_waits_before_its_own_alert(
    world: World,
) -> None:
    """Three of five fail: the system's alert. One comes back: two of five is local, and
    the two still failing are told as local problems only after their own ten minutes."""
    answers = everyone("down")
    answers["xuan-bac"] = answers["dinh-quan"] = (True, "ok", 150.0)
    for _ in range(7):
        world.minute(answers)
    assert world.firing() == [("system_down", "")]
    answers["tan-phu"] = (True, "ok", 150.0)
    for _ in range(8):
        world.minute(answers)
    assert world.firing() == []  # down resolved after 5 min; the two still pending
    for _ in range(3):
        world.minute(answers)
    assert world.firing() == [
        ("system_unreachable_here", "la-nga"),
        ("system_unreachable_here", "phu-ly"),
    ]


def test_one_pc_left_probing_at_night_is_no_quorum_for_the_system(world: World) -> None:
    for commune in COMMUNES[1:]:  # switched off for the night
        night = status("offline", world.now, agent="poller", commune=commune, reason="stopped")
        world.store.apply(statuses=[(night, world.now)])
    for _ in range(12):
        world.minute({"la-nga": (True, "down", 0.0)})
    assert world.firing() == [("system_unreachable_here", "la-nga")]


def test_every_line_down_says_nothing_of_the_system(world: World) -> None:
    for _ in range(12):
        world.minute({c: (False, "down", 0.0) for c in COMMUNES})
    health = world.views.system("dong-nai", "mot-cua")
    assert health is not None and health.verdict == "no_data" and health.status == "no_data"
    assert world.firing() == []


def test_a_websites_certificate_is_its_own_alert_to_its_owner(world: World) -> None:
    world.now += 60
    for commune in COMMUNES:
        site = f"https://{commune}.dongnai.gov.vn/"
        days = 5.0 if commune == "phu-ly" else 90.0
        world.feed.send(commune, link(world.now), system(world.now, cert_days=90.0),
                        system(world.now, "website", target=site, cert_days=days))  # fmt: skip
    world.engine.tick(world.store, world.now)
    assert world.firing() == [("website_certificate_expiring", "phu-ly")]
    [alert] = list_alerts(world.store, world.now, state="firing")
    assert (alert.target, alert.value) == ("Trang thông tin điện tử Xã phu-ly", "5")
    assert alert.labels == {"route": "so-khcn"}


def test_a_probe_that_stopped_answering_is_silent_not_its_last_word(world: World) -> None:
    answers = everyone()
    answers["tan-phu"] = (True, "bad_response", 90.0)
    for _ in range(12):
        world.minute(answers)
    assert world.firing() == [("system_unreachable_here", "tan-phu")]
    # Tân Phú's profile stops probing; its PC runs on (its line check answers).
    del answers["tan-phu"]
    for _ in range(25):
        world.minute(answers)
        world.feed.send("tan-phu", link(world.now))
        world.engine.tick(world.store, world.now + 30)
    health = world.views.system("dong-nai", "mot-cua")
    assert health is not None and health.silent == ["tan-phu"]
    assert world.firing() == []
