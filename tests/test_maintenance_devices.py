"""Maintenance by device: the words the README documents (``tslcd``, ``polycom``,
``router``…) hold the checks the shipped profiles name freely (``tslcd-province``,
``tslcd-gateway``), through the API, the alerts and the month's figures; an unknown
device is refused by name in the API and the command line."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from collector.alerts.engine import AlertEngine
from collector.alerts.notify import Notifier, Route
from collector.alerts.records import list_alerts
from collector.alerts.rules import default_rules
from collector.cli.main import main
from collector.config import ApiSection, ApiToken, ConsoleSection
from collector.outputs.report.build import build
from collector.state import maintenance
from collector.state.health import HealthModel
from collector.state.maintenance import Device, MaintenanceError, device_covered
from collector.state.store import StateStore
from collector.web.factory import create_app
from tests.factories import envelope, link
from tests.servers import AppServer
from tests.test_api import TOKEN, Served
from tests.test_health import INVENTORY

VN = dt.timezone(dt.timedelta(hours=7))
HOUR = 3600.0
OCT = dt.datetime(2026, 10, 1, tzinfo=VN).timestamp()
NOV = dt.datetime(2026, 11, 1, tzinfo=VN).timestamp()
LINE = Device("pc-01", "link", "tslcd-province", "tslcd")


@pytest.mark.parametrize(
    ("word", "device", "held"),
    [
        ("tslcd", LINE, True),
        ("tslcd", Device("pc-01", "link", "tslcd-gateway", "tslcd"), True),
        ("tslcd", Device("pc-01", "link", "tax-portal", "internet"), False),
        ("tslcd", Device("pc-01"), True),  # the agent's falling silent: it reports over the line
        ("tslcd", Device("pc-01", "polycom", "polycom"), False),
        ("internet", Device("pc-01", "link", "tax-portal", "internet"), True),
        ("lan", LINE, False),
        ("polycom", Device("poller", "polycom", "polycom-hall"), True),
        ("router", Device("poller", "snmp", "router"), True),
        ("router", Device("poller", "snmp", "router-2"), True),
        ("router", Device("poller", "snmp", "switch"), False),
        ("router", Device("poller", "snmp", "router-core-1"), True),
        ("router", Device("poller", "snmp", "routers"), False),
        ("switch", Device("poller", "snmp", "switch_b"), True),
        ("switch", Device("poller", "link", "switch"), False),
        ("tslcd-province", LINE, True),
        ("tslcd-province", Device("pc-01", "link", "tslcd-gateway", "tslcd"), False),
        ("pc-01", LINE, True),
        ("pc-02", LINE, False),
        ("", Device("pc-02", "host", "host"), True),
    ],
)
def test_each_device_word_holds_what_the_readme_says(word: str, device: Device, held: bool) -> None:
    assert device_covered(word, device) is held


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "state.sqlite")


def put(store: StateStore, ts: float, up: bool, seq: int, name: str, agent: str = "pc-01",
        network: str = "tslcd") -> None:  # fmt: skip
    target = {"tslcd": "10.75.0.1", "internet": "thuedientu.gdt.gov.vn"}[network]
    sample = link(ts, up, name=name, target=target, network=network)
    store.apply([envelope(seq, sample, agent=agent)], received=ts)


def test_an_unknown_device_is_refused_a_reported_check_or_pc_is_not(store: StateStore) -> None:
    put(store, OCT, True, 1, "tax-portal", network="internet")
    window = {"province": "dong-nai", "commune": "la-nga", "starts": OCT + HOUR,
              "ends": OCT + 2 * HOUR, "created_by": "tech", "now": OCT}  # fmt: skip
    for word in ("modem", "line", "tslcd-province"):  # the last: never reported here
        with pytest.raises(MaintenanceError, match=f"device: '{word}' is unknown: one of tslcd"):
            maintenance.add(store, device=word, **window)
    for word in ("tslcd", "polycom", "router", "switch", "internet", "lan", "tax-portal", "pc-01"):
        assert maintenance.add(store, device=word, **window).device == word
    # A check of La Ngà is no device of Phú Hòa.
    with pytest.raises(MaintenanceError, match="dong-nai/phu-hoa has reported"):
        maintenance.add(store, device="tax-portal", **(window | {"commune": "phu-hoa"}))
    assert len(maintenance.windows(store)) == 8


def test_a_tslcd_window_holds_lines_whatever_their_checks_are_named(store: StateStore) -> None:
    """The shipped profile's names: tslcd-province (every office), tslcd-gateway."""
    now = [OCT]
    engine = AlertEngine(default_rules(), clock=lambda: now[0])
    engine.install(store)
    sent: list[str] = []
    notifier = Notifier(
        store, [Route("duty", ("json://localhost",))], default_rules(), group_wait=0,
        send=lambda urls, title, body: sent.append(title) or True, clock=lambda: now[0],
    )  # fmt: skip
    put(store, OCT, True, 1, "tslcd-province")
    put(store, OCT, True, 1, "tslcd-gateway", agent="pc-02")
    put(store, OCT, True, 2, "tax-portal", network="internet")
    maintenance.add(store, province="dong-nai", commune="la-nga", device="tslcd",
                    starts=OCT + 10 * HOUR, ends=OCT + 14 * HOUR, created_by="tech",
                    now=OCT, reason="VNPT nâng cấp")  # fmt: skip
    # Both probes and the Internet down 11:00-12:00, inside the window.
    seq = 3
    for minute in range(6):
        now[0] = OCT + 11 * HOUR + 60 * minute
        put(store, now[0], False, seq, "tslcd-province")
        put(store, now[0], False, seq, "tslcd-gateway", agent="pc-02")
        put(store, now[0], False, seq + 1, "tax-portal", network="internet")
        seq += 2
    notifier.run_once()
    by_rule = {(a.rule, a.name): a for a in list_alerts(store, now[0])}
    assert by_rule[("line_down_tslcd", "tslcd-province")].maintenance
    assert by_rule[("line_down_tslcd", "tslcd-gateway")].maintenance
    internet = by_rule[("line_down_internet", "tax-portal")]
    assert not internet.maintenance  # the Internet is not the dedicated line
    assert sent and all("Internet" in title for title in sent)
    now[0] = OCT + 12 * HOUR
    put(store, now[0], True, seq, "tslcd-province")
    put(store, now[0], True, seq, "tslcd-gateway", agent="pc-02")
    put(store, NOV - 1, True, seq + 2, "tslcd-province")
    put(store, NOV - 1, True, seq + 2, "tslcd-gateway", agent="pc-02")
    [la_nga] = build(store, "dong-nai", "2026-10", now=NOV + HOUR).communes
    # 4 h of window (10:00-14:00), holding the hour the line was down.
    assert la_nga.line_maintenance_s == pytest.approx(4 * HOUR)
    assert la_nga.line_downtime_s == pytest.approx(HOUR)
    assert la_nga.line_downtime_excl_maintenance_s == 0.0
    assert la_nga.line_availability_excl_maintenance == 100.0


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[Served, StateStore]]:
    store = StateStore(tmp_path / "state.sqlite")
    token = ApiToken(
        name="tech", role="technician", sha256=hashlib.sha256(TOKEN.encode()).hexdigest()
    )
    app = create_app(
        HealthModel(store, [INVENTORY]), store, ApiSection(tokens=[token]), console=ConsoleSection()
    )
    served = AppServer(app).start()
    yield Served(served.port), store
    served.stop()
    store.close()


def test_the_api_refuses_an_unknown_device_and_counts_a_tslcd_window(
    api: tuple[Served, StateStore],
) -> None:
    served, store = api
    now = dt.datetime.now(VN).timestamp()
    # The line of La Ngà, probed under the shipped profile's name, down for the last 10 min.
    put(store, now - 1200, True, 1, "tslcd-province")
    put(store, now - 600, False, 2, "tslcd-province")
    window: dict[str, Any] = {"province": "dong-nai", "commune": "la-nga",
                              "starts": now - 3600, "ends": now + 3600}  # fmt: skip
    for word in ("modem", "line"):
        status, body = served.call("POST", "/api/v1/maintenance", TOKEN, window | {"device": word})
        assert status == 400, body
        assert (
            f"device: '{word}' is unknown: one of tslcd, internet, lan, polycom" in body["detail"]
        )
    status, created = served.call(
        "POST", "/api/v1/maintenance", TOKEN, window | {"device": "tslcd"}
    )
    assert status == 201 and created["device"] == "tslcd"
    month = dt.datetime.fromtimestamp(now, VN).strftime("%Y-%m")
    status, report = served.get(f"/api/v1/reports/monthly?month={month}&province=dong-nai")
    assert status == 200
    [la_nga] = [c for c in report["communes"] if c["slug"] == "la-nga"]
    watched = report["end"] - max(now - 1200, report["start"])
    # Everything watched lies in the window: it is all maintenance, none of it counts.
    assert la_nga["line_maintenance_s"] == pytest.approx(watched, abs=1.0)
    assert la_nga["line_downtime_excl_maintenance_s"] == 0.0
    assert la_nga["line_downtime_s"] > 0


def test_the_cli_refuses_an_unknown_device(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "state.sqlite"}"\n')
    StateStore(tmp_path / "state.sqlite").close()
    start = dt.datetime.now(VN) + dt.timedelta(days=1)
    times = [
        "--start",
        f"{start:%Y-%m-%d %H:%M}",
        "--end",
        f"{start + dt.timedelta(hours=2):%Y-%m-%d %H:%M}",
    ]
    base = [
        "maintenance",
        "add",
        "-c",
        str(config),
        "--province",
        "dong-nai",
        "--commune",
        "la-nga",
    ]
    wrong = CliRunner().invoke(main, [*base, "--device", "modem", *times])
    assert wrong.exit_code == 1
    assert "refused: device: 'modem' is unknown: one of tslcd" in wrong.output
    right = CliRunner().invoke(main, [*base, "--device", "tslcd", *times])
    assert right.exit_code == 0 and "dong-nai/la-nga tslcd" in right.output
