"""The shared systems' health over real HTTP: per system with who cannot reach it and why,
one system commune by commune, one commune's systems; scoped tokens; ISO times.

Five communes of Đồng Nai, each with its poller probing the systems and its own line
(samples applied to a real store as the ingest does). Ten hours ago every system
answered everywhere; an hour ago:

- mot-cua (every commune): La Ngà fine; Phú Lý's line went down (its line's problem);
  Tân Phú's line is up and the system does not answer; Xuân Bắc gets a login page;
  Định Quán waits 4.5 s, its certificate nine days from its end. Two of the four
  communes with their line up cannot use it: not most, a local problem.
- lis (La Ngà and Phú Lý, by TCP): down from La Ngà with its line up, and from Phú Lý
  with its line down: one commune with its line up is no quorum (every commune that uses
  it must see it fail), so it is La Ngà's own alert, not the system's.
- La Ngà's and Phú Lý's websites answer.

The real alert engine watches it all through the twelve minutes after the change: its
alerts are the systems' incidents.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.wire import Sample
from collector.alerts.engine import AlertEngine
from collector.alerts.rules import default_rules
from collector.config import ApiSection, ApiToken, ConsoleSection
from collector.state.health import HealthModel
from collector.state.inventory import Commune, Inventory
from collector.state.store import StateStore
from collector.state.systemhealth import SystemsModel
from collector.state.systems import parse_catalogue
from collector.web.auth import token_digest
from collector.web.factory import create_app
from collector.web.readable import iso
from tests.factories import envelope, link, status, system
from tests.servers import AppServer
from tests.test_api import Served

HOUR = 3600.0
NOW = float(int(time.time() // HOUR) * HOUR)
T0 = NOW - 10 * HOUR
CHANGED = NOW - HOUR

NAMES = {
    "la-nga": "Xã La Ngà",
    "phu-ly": "Xã Phú Lý",
    "tan-phu": "Xã Tân Phú",
    "xuan-bac": "Xã Xuân Bắc",
    "dinh-quan": "Xã Định Quán",
}
INVENTORY = Inventory(
    province="dong-nai",
    name="Đồng Nai",
    communes=[Commune(slug=slug, name=name) for slug, name in NAMES.items()],
)
MOT_CUA = "https://motcua.dongnai.gov.vn/"
LIS = "lis.dongnai.gov.vn:8443"
SITES = {"la-nga": "https://langa.dongnai.gov.vn/", "phu-ly": "https://phuly.dongnai.gov.vn/"}
CATALOGUE = parse_catalogue(
    {
        "province": "dong-nai",
        "systems": [
            {"id": "mot-cua", "name": "Hệ thống một cửa điện tử", "kind": "one-stop",
             "url": MOT_CUA, "network": "tslcd", "owner": "Sở KH&CN"},
            {"id": "lis", "name": "DongNai.LIS", "kind": "land", "host": "lis.dongnai.gov.vn",
             "port": 8443, "network": "tslcd", "communes": ["la-nga", "phu-ly"]},
        ],
        "websites": [{"commune": c, "url": url} for c, url in SITES.items()],
    },
    "dong-nai.systems.toml",
    INVENTORY,
)  # fmt: skip

#: name -> (provinces, communes): every token a technician.
SCOPES: dict[str, tuple[list[str], list[str]]] = {
    "province": (["dong-nai"], []),
    "la-nga": (["dong-nai"], ["la-nga"]),
    "tan-phu": (["dong-nai"], ["tan-phu"]),
    "elsewhere": (["lam-dong"], []),
}


def token(name: str) -> str:
    return f"systems-web-token-{name}-0123456789"


class Pollers:
    """Each commune's poller: its line and its probes, applied as the ingest does."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.seq: dict[str, int] = {}

    def send(self, commune: str, *samples: Sample) -> None:
        self.seq[commune] = self.seq.get(commune, 0) + 1
        self.store.apply(
            [envelope(self.seq[commune], *samples, agent="poller", commune=commune)],
            received=samples[0].ts,
        )


def feed(store: StateStore) -> None:
    """The history the module's docstring tells, the alerts engine watching it."""
    AlertEngine(default_rules()).install(store)
    pollers = Pollers(store)
    # The pollers say they run every 3 hours: a probe's answer stands until the next one.
    store.apply(
        statuses=[
            (status("online", T0, agent="poller", commune=c, interval=3 * HOUR), T0) for c in NAMES
        ]
    )
    for commune in NAMES:
        probes = [link(T0), system(T0, target=MOT_CUA)]
        if commune in ("la-nga", "phu-ly"):
            probes += [
                system(T0, "lis", target=LIS, status=None, total_ms=40.0),
                system(T0, "website", target=SITES[commune], network="internet"),
            ]
        pollers.send(commune, *probes)
    at = CHANGED
    refused = f"{LIS} refused the connection"
    pollers.send(
        "la-nga",
        link(at),
        system(at, target=MOT_CUA, total_ms=180.0, cert_days=40.0),
        system(at, "lis", "down", target=LIS, error=refused),
        system(at, "website", target=SITES["la-nga"], network="internet"),
    )
    pollers.send(
        "phu-ly",
        link(at, up=False),
        system(at, outcome="down", target=MOT_CUA, error="timed out"),
        system(at, "lis", "down", target=LIS, error="timed out"),
        system(at, "website", target=SITES["phu-ly"], network="internet"),
    )
    pollers.send(
        "tan-phu",
        link(at),
        system(at, outcome="down", target=MOT_CUA, error="motcua.dongnai.gov.vn refused"),
    )
    pollers.send(
        "xuan-bac",
        link(at),
        system(at, outcome="bad_response", target=MOT_CUA,
               error="answered 200 but 'Một cửa điện tử' not in the page"),
    )  # fmt: skip
    pollers.send("dinh-quan", link(at), system(at, target=MOT_CUA, total_ms=4500.0, cert_days=9.0))
    # The real engine judges them as the minutes pass after the change.
    clock = [CHANGED]
    views = SystemsModel(store, [INVENTORY], lambda: {"dong-nai": CATALOGUE}, lambda: clock[0])
    engine = AlertEngine(default_rules(), systems=views, clock=lambda: clock[0])
    for minutes in (0, 6, 12):
        clock[0] = CHANGED + 60 * minutes
        engine.tick(store, clock[0])


def build(tmp_path: Path) -> tuple[StateStore, Any]:
    """A store fed as above and the collector's app over it (API and console)."""
    store = StateStore(tmp_path / "state.sqlite", clock=lambda: NOW)
    feed(store)
    tokens = [
        ApiToken(name=name, role="technician", sha256=token_digest(token(name)),
                 provinces=provinces, communes=communes)
        for name, (provinces, communes) in SCOPES.items()
    ]  # fmt: skip
    app = create_app(
        HealthModel(store, [INVENTORY], clock=lambda: NOW), store,
        ApiSection(tokens=tokens, open_on_loopback=True), console=ConsoleSection(),
        systems=lambda: {"dong-nai": CATALOGUE},
    )  # fmt: skip
    return store, app


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    store, app = build(tmp_path_factory.mktemp("systems-web"))
    served = AppServer(app).start()
    yield Served(served.port)
    served.stop()
    store.close()


def get(api: Served, path: str, who: str = "province") -> Any:
    code, body = api.get(path, token(who))
    assert code == 200, (path, who, code, body)
    return body


def by_id(answer: dict[str, Any]) -> dict[str, Any]:
    return {s["id"]: s for s in answer["systems"]}


def test_every_system_with_the_communes_that_cannot_reach_it_and_why(api: Served) -> None:
    answer = get(api, "/api/v1/systems/health?province=dong-nai")
    assert answer["province"] == "dong-nai"
    assert [s["id"] for s in answer["systems"]] == ["mot-cua", "lis", "website"]
    systems = by_id(answer)
    mot_cua = systems["mot-cua"]
    assert (mot_cua["communes"], mot_cua["probing"], mot_cua["reaching"]) == (5, 5, 2)
    # Two of the four communes with their line up: their own problem, not the system's.
    assert (mot_cua["verdict"], mot_cua["status"]) == ("local", "warning")
    assert [(c["commune"], c["name"], c["reason"]) for c in mot_cua["cannot_reach"]] == [
        ("phu-ly", "Xã Phú Lý", "line_down"),
        ("tan-phu", "Xã Tân Phú", "unreachable"),
        ("xuan-bac", "Xã Xuân Bắc", "bad_response"),
    ]
    assert "not in the page" in mot_cua["cannot_reach"][2]["error"]
    assert mot_cua["slow"] == ["dinh-quan"] and mot_cua["silent"] == []
    assert mot_cua["cert_days"] == 9.0 and mot_cua["cert_min_days"] == 14
    # The one commune with its line up fails to reach lis: no quorum for "down".
    lis = systems["lis"]
    assert (lis["verdict"], lis["status"], lis["reaching"], lis["probing"]) == (
        "local", "warning", 0, 2,
    )  # fmt: skip
    assert [(c["commune"], c["reason"]) for c in lis["cannot_reach"]] == [
        ("la-nga", "unreachable"),
        ("phu-ly", "line_down"),
    ]
    assert lis["cannot_reach"][0]["error"] == f"{LIS} refused the connection"
    assert systems["website"]["verdict"] == "ok" and systems["website"]["reaching"] == 2


def test_the_windows_figures_as_worked_out_by_hand(api: Served) -> None:
    """lis over the last 24 hours, watched for ten: La Ngà 10 h of which 1 h down (its
    line up: counts); Phú Lý 10 h of which 1 h with its own line down (left out, shown
    apart). 18 h answered of 19 h watched."""
    lis = by_id(get(api, "/api/v1/systems/health"))["lis"]
    day = lis["last_24h"]
    assert day["start"] == NOW - 24 * HOUR and day["end"] == NOW
    assert day["start_iso"] == iso(NOW - 24 * HOUR) and day["end_iso"].endswith("+07:00")
    assert day["availability_percent"] == round(100 * 18 / 19, 2)  # 94.74
    assert day["observed_s"] == pytest.approx(19 * HOUR)
    assert day["down_s"] == pytest.approx(HOUR)
    assert day["line_excluded_s"] == pytest.approx(HOUR)
    assert day["maintenance_s"] == 0
    assert day["communes"] == 2
    # Thirty days hold the same ten hours.
    assert lis["last_30d"]["availability_percent"] == day["availability_percent"]
    # mot-cua's healthy answers: 200 ms from each commune ten hours ago, 180 ms and
    # 4.5 s an hour ago: the median 200 ms, the 95th percentile the slow one (each read
    # back from a histogram within a tenth).
    mot_cua = by_id(get(api, "/api/v1/systems/health"))["mot-cua"]["last_24h"]
    assert mot_cua["p50_ms"] == pytest.approx(200.0, rel=0.1)
    assert mot_cua["p95_ms"] == pytest.approx(4500.0, rel=0.1)


def test_one_system_commune_by_commune_with_its_incidents(api: Served) -> None:
    mot_cua = get(api, "/api/v1/systems/dong-nai/mot-cua")
    assert (mot_cua["target"], mot_cua["owner"], mot_cua["network"]) == (
        MOT_CUA, "Sở KH&CN", "tslcd",
    )  # fmt: skip
    states = {r["commune"]: r["state"] for r in mot_cua["reach"]}
    assert list(states) == list(NAMES)  # the inventory's order
    assert states == {
        "la-nga": "ok",
        "phu-ly": "line_down",
        "tan-phu": "unreachable",
        "xuan-bac": "bad_response",
        "dinh-quan": "slow",
    }
    slow = mot_cua["reach"][4]
    assert (slow["agent"], slow["total_ms"], slow["cert_days"], slow["status"]) == (
        "poller", 4500.0, 9.0, 200,
    )  # fmt: skip
    assert slow["ts"] == CHANGED and slow["ts_iso"] == iso(CHANGED)
    # Since when each commune's answer last changed: an hour ago where it failed.
    assert mot_cua["reach"][2]["since"] == CHANGED
    assert mot_cua["reach"][2]["since_iso"] == iso(CHANGED)
    lis = get(api, "/api/v1/systems/dong-nai/lis")
    assert lis["target"] == LIS
    # The engine's one alert on lis: La Ngà's own (Phú Lý's line is the line's), firing
    # since the change.
    [incident] = lis["last_30d"]["incidents"]
    assert (incident["rule"], incident["severity"], incident["commune"]) == (
        "system_unreachable_here", "warning", "la-nga",
    )  # fmt: skip
    assert incident["value"] == f"{LIS} refused the connection"
    assert incident["started_at"] == CHANGED and incident["started_at_iso"] == iso(CHANGED)
    assert incident["ended_at"] is None and incident["ended_at_iso"] is None
    # mot-cua's: the certificate (the system's), and the communes' own troubles.
    incidents = get(api, "/api/v1/systems/dong-nai/mot-cua")["last_30d"]["incidents"]
    # (Định Quán slow for twelve minutes: its alert waits for half an hour of it.)
    assert sorted((i["rule"], i["commune"]) for i in incidents) == [
        ("system_certificate_expiring", ""),
        ("system_unreachable_here", "tan-phu"),
        ("system_unreachable_here", "xuan-bac"),
    ]


def test_a_communes_systems_tell_its_line_from_the_system(api: Served) -> None:
    phu_ly = get(api, "/api/v1/communes/phu-ly/systems")
    assert (phu_ly["province"], phu_ly["name"], phu_ly["line_up"]) == (
        "dong-nai", "Xã Phú Lý", False,
    )  # fmt: skip
    assert [(s["id"], s["reach"]["state"]) for s in phu_ly["systems"]] == [
        ("mot-cua", "line_down"),
        ("lis", "line_down"),
        ("website", "ok"),
    ]
    assert phu_ly["can_use"] == ["website"] and phu_ly["cannot_use"] == ["mot-cua", "lis"]
    site = phu_ly["systems"][2]
    assert (site["name"], site["network"], site["reach"]["target"]) == (
        "Trang thông tin điện tử Xã Phú Lý", "internet", SITES["phu-ly"],
    )  # fmt: skip
    # Tân Phú's line is up: mot-cua does not answer it, and the others reach it or not.
    tan_phu = get(api, "/api/v1/communes/tan-phu/systems?province=dong-nai")
    assert tan_phu["line_up"] is True
    [mot_cua] = tan_phu["systems"]  # no lis, no website of its own
    assert (mot_cua["reach"]["state"], mot_cua["verdict"]) == ("unreachable", "local")
    assert (mot_cua["reaching"], mot_cua["probing"]) == (2, 5)
    code, body = api.get("/api/v1/communes/nowhere/systems", token("province"))
    assert code == 404 and body["detail"] == "no commune 'nowhere' in the inventory or the data"


def test_a_communes_token_sees_its_communes_rows_and_figures_alone(api: Served) -> None:
    mine = by_id(get(api, "/api/v1/systems/health", "la-nga"))
    assert list(mine) == ["mot-cua", "lis", "website"]
    # La Ngà's rows alone: nothing of the other communes shows but the system's own
    # verdict (local: some communes cannot use it), judged from every commune.
    assert (mine["mot-cua"]["verdict"], mine["mot-cua"]["communes"]) == ("local", 1)
    assert mine["mot-cua"]["cannot_reach"] == [] and mine["mot-cua"]["slow"] == []
    assert mine["mot-cua"]["cert_days"] == 40.0
    # lis over La Ngà alone: 10 h watched, 1 h down.
    assert mine["lis"]["last_24h"]["availability_percent"] == 90.0
    assert [c["commune"] for c in mine["lis"]["cannot_reach"]] == ["la-nga"]
    detail = get(api, "/api/v1/systems/dong-nai/mot-cua", "la-nga")
    assert [r["commune"] for r in detail["reach"]] == ["la-nga"]
    # Of the incidents, the system's own, without its value (another commune's
    # certificate): none of the other communes'.
    incidents = detail["last_30d"]["incidents"]
    assert [(i["rule"], i["commune"]) for i in incidents] == [("system_certificate_expiring", "")]
    assert incidents[0]["value"] == ""
    # Its commune's view: the systems' verdicts (every commune's), counts over its own.
    own = get(api, "/api/v1/communes/la-nga/systems", "la-nga")
    assert [(s["id"], s["verdict"], s["probing"]) for s in own["systems"]] == [
        ("mot-cua", "local", 1), ("lis", "local", 1), ("website", "ok", 1),
    ]  # fmt: skip
    # Tân Phú uses neither lis nor a website: none of them exists for its token.
    assert list(by_id(get(api, "/api/v1/systems/health", "tan-phu"))) == ["mot-cua"]
    hidden = api.get("/api/v1/systems/dong-nai/lis", token("tan-phu"))
    missing = api.get("/api/v1/systems/dong-nai/nowhere", token("province"))
    assert hidden[0] == missing[0] == 404
    assert hidden[1]["detail"].replace("lis", "?") == missing[1]["detail"].replace("nowhere", "?")
    assert api.get("/api/v1/communes/la-nga/systems", token("tan-phu"))[0] == 404
    # Another province's token: the province is none of its own.
    for path in ("/api/v1/systems/health?province=dong-nai", "/api/v1/systems/dong-nai/mot-cua",
                 "/api/v1/communes/la-nga/systems"):  # fmt: skip
        assert api.get(path, token("elsewhere"))[0] == 404, path


def test_the_routes_are_described_in_the_openapi_schema(api: Served) -> None:
    schema = get(api, "/openapi.json")
    for path in ("/api/v1/systems/health", "/api/v1/systems/{province}/{system_id}",
                 "/api/v1/communes/{commune}/systems"):  # fmt: skip
        route = schema["paths"][path]["get"]
        assert len(route["description"]) > 100, path
        assert {"200", "401", "404"} <= set(route["responses"]), path
    cannot = schema["components"]["schemas"]["CannotReach"]
    assert "line_down" in cannot["properties"]["reason"]["description"]
