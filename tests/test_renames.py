"""A commune renamed in the inventory (``formerly``): its agents still configured with
the old slug report under the new one, and the history recorded under the old slug
moves to it: one commune, one history, the same figures."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion

from agent import wire
from agent.configtypes import ConfigError
from collector.alerts.engine import AlertEngine
from collector.alerts.records import list_alerts
from collector.alerts.rules import default_rules
from collector.cli.main import main as collector_main
from collector.rollout import overview, registry
from collector.rollout.profiles import load_all
from collector.state.availability import availability
from collector.state.inventory import load_inventory
from collector.state.renames import move_renamed
from tests.factories import envelope, link
from tests.hostile.province import Http
from tests.servers import API_TOKEN, CollectorProcess, Mosquitto, VictoriaMetrics
from tests.test_alerts import T0, UPLINKS, Harness

OLD, NEW = "xa-la-nga", "la-nga"
RENAMES = {("dong-nai", OLD): NEW}


def inventory(tmp_path: Path, communes: str) -> Path:
    path = tmp_path / "dong-nai.toml"
    path.write_text(f'province = "dong-nai"\n{communes}')
    return path


LA_NGA = '[[communes]]\nslug = "la-nga"\nname = "Xã La Ngà"\ncode = "26227"\n'


def test_the_inventory_maps_former_slugs_and_refuses_ambiguous_ones(tmp_path: Path) -> None:
    found = load_inventory(inventory(tmp_path, LA_NGA + 'formerly = ["xa-la-nga", "langa"]\n'))
    assert found.renames() == {("dong-nai", "xa-la-nga"): NEW, ("dong-nai", "langa"): NEW}
    phu_hoa = '[[communes]]\nslug = "phu-hoa"\nname = "Xã Phú Hòa"\n'
    for communes, message in (
        (LA_NGA + phu_hoa + 'formerly = ["la-nga"]\n', "'la-nga' is the slug of communes[0] now"),
        (
            LA_NGA + 'formerly = ["old"]\n' + phu_hoa + 'formerly = ["old"]\n',
            "communes[1] (phu-hoa).formerly: 'old' is listed twice (also communes[0])",
        ),
        (LA_NGA + 'formerly = ["La Ngà"]\n', "formerly"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_inventory(inventory(tmp_path, communes))


def test_the_inventory_command_takes_official_slugs_and_keeps_the_old_ones(
    tmp_path: Path,
) -> None:
    path = inventory(
        tmp_path,
        '[[communes]]\nslug = "xa-la-nga"\nname = "Xã La Ngà"\ncode = "26227"\npcs = 41\n',
    )
    result = CliRunner().invoke(
        collector_main, ["inventory", "--province", "dong-nai", "-o", str(path)]
    )
    assert result.exit_code == 0, result.output
    kept = load_inventory(path).commune(OLD)
    assert kept is not None and kept.pcs == 41 and kept.formerly == []  # without the flag
    result = CliRunner().invoke(
        collector_main,
        ["inventory", "--province", "dong-nai", "--official-slugs", "-o", str(path)],
    )
    assert result.exit_code == 0, result.output
    renamed = load_inventory(path)
    la_nga = renamed.commune(NEW)
    assert la_nga is not None and la_nga.pcs == 41 and la_nga.formerly == [OLD]
    assert renamed.commune(OLD) is None and len(renamed.communes) == 95
    again = CliRunner().invoke(
        collector_main,
        ["inventory", "--province", "dong-nai", "--official-slugs", "-o", str(path)],
    )
    assert again.exit_code == 0 and load_inventory(path) == renamed  # stable when re-run


def line_history(h: Harness, commune: str, minutes: range, down: set[int]) -> None:
    for minute in minutes:
        ts = T0 + 60 * minute
        h.send(ts, link(ts, minute not in down), commune=commune)


def restart_with(h: Harness, renames: dict[tuple[str, str], str]) -> dict[str, int]:
    """As the collector starts: the move first, then the alert engine reads its state."""
    moved = move_renamed(h.store, renames)
    h.store.observers.clear()
    h.engine = AlertEngine(default_rules(), uplinks=UPLINKS, clock=lambda: h.now)
    h.engine.install(h.store)
    return moved


def test_the_history_under_a_former_slug_moves_to_the_commune(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    down = set(range(10, 25))  # a quarter of an hour down: the line alert fires
    line_history(h, OLD, range(0, 30), down)
    [subject] = h.store.subjects("link", f"dong-nai/{OLD}/")
    before = availability(
        h.store.outages(subject.id), T0, T0 + 1800, subject.monitored_since, T0 + 1800
    )
    [fired] = list_alerts(h.store, h.now, commune=OLD)
    assert fired.state == "resolved"
    line_history(h, OLD, range(30, 40), set(range(32, 40)))  # down again, still firing
    [firing] = [a for a in list_alerts(h.store, h.now, commune=OLD) if a.state == "firing"]

    moved = restart_with(h, RENAMES)

    assert moved["agents"] == 1 and moved["subjects"] == 1 and moved["alerts"] == 2
    assert h.store.subjects("link", f"dong-nai/{OLD}/") == []
    [after] = h.store.subjects("link", f"dong-nai/{NEW}/")
    assert after.id == subject.id and after.monitored_since == subject.monitored_since
    assert (
        availability(h.store.outages(after.id), T0, T0 + 1800, after.monitored_since, T0 + 1800)
        == before
    )
    assert before.down_s == 15 * 60
    assert [a.agent_key for a in h.store.agents()] == [f"dong-nai/{NEW}/pc-01"]
    assert {a.id for a in list_alerts(h.store, h.now, commune=NEW)} == {fired.id, firing.id}
    # The line comes back, reported under the new slug: the same alert resolves, none new.
    line_history(h, NEW, range(40, 45), set())
    alerts = list_alerts(h.store, h.now, commune=NEW)
    assert {a.id for a in alerts} == {fired.id, firing.id}
    assert all(a.state == "resolved" for a in alerts)
    assert move_renamed(h.store, RENAMES) == {}  # a second start moves nothing


def test_check_config_says_which_histories_the_next_start_moves(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    line_history(h, OLD, range(0, 5), set())
    path = inventory(tmp_path, LA_NGA + f'formerly = ["{OLD}"]\n')
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "state.sqlite"}"\n[collector]\ninventory = ["{path}"]\n'
    )
    said = CliRunner().invoke(collector_main, ["check-config", "-c", str(config)])
    assert said.exit_code == 0, said.output
    assert f"moves dong-nai/{OLD}'s history to {NEW}" in said.output
    assert len(h.store.subjects("link", f"dong-nai/{OLD}/")) == 1  # it said; it moved nothing
    restart_with(h, RENAMES)
    said = CliRunner().invoke(collector_main, ["check-config", "-c", str(config)])
    assert said.exit_code == 0 and "moves" not in said.output, said.output


def test_a_subject_under_both_slugs_keeps_both_histories(tmp_path: Path) -> None:
    """A PC re-enrolled under the new slug before the rename was declared."""
    h = Harness(tmp_path)
    line_history(h, OLD, range(0, 20), {5, 6})
    line_history(h, NEW, range(20, 40), {30})
    moved = move_renamed(h.store, RENAMES)
    assert moved["subjects"] == 1
    [subject] = h.store.subjects("link")
    assert subject.monitored_since == T0
    starts = [o.start for o in h.store.outages(subject.id)]
    assert starts == [T0 + 60 * 5, T0 + 60 * 30]
    assert [a.agent_key for a in h.store.agents()] == [f"dong-nai/{NEW}/pc-01"]


def publish(port: int, commune: str, seqs: range) -> None:
    agent = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"agent-{commune}")
    agent.connect("127.0.0.1", port)
    agent.loop_start()
    try:
        for seq in seqs:
            ts = NOW0 + 60 * seq
            payload = wire.encode(envelope(seq, link(ts, seq % 2 == 0), commune=commune))
            agent.publish(
                f"commune/dong-nai/{commune}/pc-01/data", payload, qos=1
            ).wait_for_publish(10)
    finally:
        agent.loop_stop()
        agent.disconnect()


NOW0 = float(int(time.time()) // 3600 * 3600 - 2 * 3600)


def wait_for(collector: CollectorProcess, path: str, check: Any, within_s: float = 20.0) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        status, answer = collector.get(path)
        if status == 200 and check(answer):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError((path, status, answer))
        time.sleep(0.2)


def metric(collector: CollectorProcess, name: str) -> float:
    request = urllib.request.Request(f"http://127.0.0.1:{collector.api_port}/metrics")
    request.add_header("Authorization", f"Bearer {API_TOKEN}")
    with urllib.request.urlopen(request, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def test_a_renamed_commune_in_the_real_collector(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A province ran with a hand-made slug; the operator takes the official one. The
    PCs are not visited: they go on publishing under the old topic."""
    workdir = tmp_path / "collector"
    first = CollectorProcess(workdir, mosquitto.port, client_id="collector-rename")
    first.start()
    try:
        time.sleep(1.0)
        publish(mosquitto.port, OLD, range(0, 20))
        wait_for(first, f"/api/v1/availability?commune={OLD}&from={NOW0}", lambda a: a["line"])
    finally:
        first.stop()
    path = inventory(tmp_path, LA_NGA + f'formerly = ["{OLD}"]\n')
    vm = VictoriaMetrics(tmp_path / "vm").start()
    second = CollectorProcess(
        workdir, mosquitto.port, client_id="collector-rename", sink_url=vm.url,
        extra=f'inventory = ["{path}"]',
    )  # fmt: skip
    second.start()
    try:
        time.sleep(1.0)
        publish(mosquitto.port, OLD, range(20, 40))
        window = f"from={NOW0}&to={NOW0 + 60 * 40}"
        report = wait_for(
            second,
            f"/api/v1/availability?commune={NEW}&{window}",
            lambda a: a["line"] and len(a["line"]["outages"]) == 20,
        )
        # Every odd minute down, the twenty of before the rename and the twenty after.
        starts = [o["start"] for o in report["line"]["outages"]]
        assert starts == [NOW0 + 60 * s for s in range(1, 40, 2)]
        assert report["line"]["percent"] == 50.0
        status, commune = second.get(f"/api/v1/communes/{NEW}")
        assert status == 200 and commune["code"] == "26227"  # type: ignore[index]
        assert commune["agents"] == 1  # type: ignore[index]
        # What the IOC and the technicians asked for under the old slug keeps working.
        assert second.get(f"/api/v1/availability?commune={OLD}&{window}") == (200, report)
        status, former = second.get(f"/api/v1/communes/{OLD}")
        assert status == 200 and former["slug"] == NEW  # type: ignore[index]
        assert former["agents"] == 1 and former["code"] == "26227"  # type: ignore[index]
        assert second.get("/api/v1/communes/no-such-place")[0] == 404
        http = Http(second.api_port)
        cookie = http.login(API_TOKEN)
        status, headers, _ = http.request(
            "GET", f"/communes/{OLD}", headers={"Cookie": f"commune_session={cookie}"}
        )
        assert (status, headers.get("location")) == (308, f"/communes/{NEW}?province=dong-nai")
        status, page = http.page(f"/communes/{NEW}", cookie)
        assert status == 200 and "Xã La Ngà" in page
        assert metric(second, "commune_collector_renamed_messages_total") == 20
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not vm.export('{__name__="link_up"}'):
            time.sleep(0.3)
        [series] = vm.export('{__name__="link_up"}')
        assert series["metric"]["commune"] == NEW and len(series["values"]) == 20
    finally:
        second.stop()
        vm.stop()
    assert "moved 1 rows of agents" in second.log and "Traceback" not in second.log


PROFILES = """
province = "dong-nai"
[vars]
gateway = "10.0.0.1"
[profiles.office]
[[profiles.office.checks.link]]
name = "gw"
network = "tslcd"
method = "tcp"
target = "${gateway}"
port = 443
[communes.la-nga]
gateway = "10.26.227.1"
"""


def test_an_agent_enrolled_under_a_former_slug_is_the_communes_in_the_rollout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dong-nai.profiles.toml"
    path.write_text(PROFILES)
    profiles = load_all([str(path)], RENAMES)
    [check] = profiles.effective("dong-nai", OLD, "pc-01", "office").checks["link"]
    assert check["target"] == "10.26.227.1"  # la-nga's gateway, not the province default
    h = Harness(tmp_path)
    with h.store.transaction() as db:
        registry.enrolled(
            db, province="dong-nai", commune=OLD, agent="pc-01", username="u-1",
            profile="office", token_id="t", now=T0,
        )  # fmt: skip
    h.status(T0, "online", commune=OLD)
    restart_with(h, RENAMES)
    found = load_inventory(inventory(tmp_path, LA_NGA + f'formerly = ["{OLD}"]\n'))
    [la_nga] = overview.communes(h.store, [found], "dong-nai", T0)
    assert (la_nga.commune, la_nga.code, la_nga.enrolled, la_nga.reporting) == (
        NEW, "26227", 1, 1,
    )  # fmt: skip


def test_a_renamed_communes_systems_alerts_and_response_times_move_with_it(
    tmp_path: Path,
) -> None:
    """A commune's reach of a shared system (subject "system:p/c/id") and its probes'
    histograms follow the rename; twin probes' counts add up."""
    from collector.state import systemtimes
    from collector.state.store import StateStore
    from collector.state.systemhealth import system_subject
    from tests.factories import envelope, system

    store = StateStore(tmp_path / "state.sqlite")
    at = 2e9
    for commune, seq in (("xa-la-nga", 1), ("la-nga", 1)):
        store.apply([envelope(seq, system(at, total_ms=300.0), agent="poller", commune=commune)])
    old, new = (
        system_subject("dong-nai", "mot-cua", "xa-la-nga"),
        system_subject("dong-nai", "mot-cua", "la-nga"),
    )
    with store.transaction() as db:
        db.execute("INSERT INTO alert_subjects VALUES ('system_unreachable_here', ?, "
                   "'firing', ?, ?, 7)", (old, at, at))  # fmt: skip
        db.execute(
            """INSERT INTO alerts (id, rule, subject, province, commune, agent, name, target,
               severity, state, started_at, fired_at, value, labels, late)
               VALUES (7, 'system_unreachable_here', ?, 'dong-nai', 'xa-la-nga', 'poller',
                       'mot-cua', '', 'warning', 'firing', ?, ?, '', '{}', 0)""",
            (old, at, at),
        )
    move_renamed(store, {("dong-nai", "xa-la-nga"): "la-nga"})
    with store.reading() as db:
        subjects = [row[0] for row in db.execute("SELECT subject FROM alert_subjects")]
        alert = db.execute("SELECT subject, commune FROM alerts WHERE id = 7").fetchone()
    [probe] = store.subjects("system")
    counts = store.system_times([probe.id], at - 86400, at + 1, hourly=False)
    store.close()
    assert subjects == [new] and alert == (new, "la-nga")
    assert counts == {probe.id: {systemtimes.bucket_of(300.0): 2}}
