"""A release rolled out in rings, through the real parts: a Mosquitto on loopback, the
collector's ingest reading the agents' births, its config sender publishing signed
configs, and the rollout's round (``Rollouts.follow``) between them.

The agents are simulated: each is a birth (``Status`` with ``update``) published on its
status topic, as the agent's runner would after an update step, and a reader of its
retained config, verified with the keys it would trust (the agent's side of an update
is tested with real processes elsewhere)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion

from agent.configkeys import verify
from agent.configtypes import BrokerSection
from agent.wire import (
    AgentConfig,
    ReleaseOrder,
    Status,
    UpdateReport,
    decode_config,
    decode_signed_config,
    encode,
)
from collector.cli.main import main
from collector.ingest.ingestor import Ingestor
from collector.ingest.source import MqttSource, SourceSettings
from collector.rollout import configkey, registry
from collector.rollout.configs import ConfigSender
from collector.rollout.gates import parse_gate
from collector.rollout.profiles import load_all
from collector.rollout.rollouts import RolloutError, Rollouts
from collector.state import audit
from collector.state.store import StateStore
from tests.servers import Mosquitto, Subscriber, wait_for

PROFILES = """
province = "dong-nai"
[profiles.office]
interval = "1m"
[[profiles.office.checks.host]]
"""
LAB = ("dong-nai/lab/pc-kaspersky", "dong-nai/lab/pc-bkav")
COMMUNES = ("la-nga", "tan-phu", "phu-ly")
#: Three rings; a soak of nothing, on any day: the gate judges shares alone.
RINGS = "lab,pilot:1-communes,100%"
GATE = parse_gate(["soak=0s,soak-weekdays=no,offline-min=1000"])
ADMIN = audit.Actor("nga", "admin", "127.0.0.1", "api")


def fleet_keys() -> list[str]:
    keys = list(LAB)
    for commune in COMMUNES:
        keys += [f"dong-nai/{commune}/pc-{n:02d}" for n in range(10)]
    return keys


def enroll(store: StateStore, keys: list[str]) -> None:
    with store.transaction() as db:
        for key in keys:
            province, commune, agent = key.split("/")
            registry.enrolled(
                db, province=province, commune=commune, agent=agent,
                username=f"{key}@1", profile="office", token_id="t", now=1.0,
            )  # fmt: skip


class Site:
    """The collector's parts that a rollout goes through, on a real broker."""

    def __init__(self, tmp_path: Path, broker: Mosquitto, signed: set[str]) -> None:
        (tmp_path / "dong-nai.toml").write_text(PROFILES)
        self.store = StateStore(tmp_path / "state.sqlite")
        enroll(self.store, fleet_keys())
        self.keys = configkey.KeyFiles(tmp_path / configkey.DEFAULT_NAME)
        profiles = load_all([str(tmp_path / "dong-nai.toml")])
        self.book = Rollouts(self.store, lambda: signed)
        self.sender = ConfigSender(
            self.store, BrokerSection(url=f"mqtt://127.0.0.1:{broker.port}"), "configs",
            lambda: profiles,
        )  # fmt: skip
        self.sender.signing = self.keys
        self.sender.orders = self.book.orders
        self.sender.start()
        assert self.sender.wait_connected(10)
        self.ingestor = Ingestor(self.store, "commune")
        self.source = MqttSource(
            SourceSettings(BrokerSection(url=f"mqtt://127.0.0.1:{broker.port}"),
                           client_id="collector", provinces=("dong-nai",)),
            self.ingestor,
        )  # fmt: skip
        self.source.start()
        assert self.source.connected.wait(10)
        self.configs = Subscriber(broker.port, "commune/+/+/+/config").start()
        self.agents = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="the-agents")
        self.agents.connect("127.0.0.1", broker.port)
        self.agents.loop_start()
        self.births = 0

    def round(self) -> str:
        """The running collector's housekeeping: the gate judged, then configs sent if
        their orders changed."""
        happened, changed = self.book.follow()
        if changed:
            self.sender.pending = True
        if self.sender.pending:
            report = self.sender.sync()
            assert not report.failed, report.failed
        return happened

    def born(self, keys: list[str], state: str, version: str, reason: str = "") -> None:
        """Each agent of ``keys`` publishes its birth with an update report."""
        infos = []
        for key in keys:
            province, commune, agent = key.split("/")
            now = time.time()
            birth = Status(
                v=1, state="online", agent=agent, province=province, commune=commune,
                ts=now, version=version if state in ("committed", "idle") else "0.2.0",
                update=UpdateReport(state=state, version=version, ts=now, reason=reason),  # type: ignore[arg-type]
            )  # fmt: skip
            infos.append(self.agents.publish(f"commune/{key}/status", encode(birth), qos=1))
        for info in infos:
            info.wait_for_publish(10)
        self.births += len(keys)
        wait_for(lambda: self.ingestor.stats.applied_statuses >= self.births, 20,
                 "the births ingested")  # fmt: skip

    def order_of(self, key: str) -> ReleaseOrder | None:
        """The release order of the last config retained for ``key``, verified."""
        messages = self.configs.snapshot(f"{key}/config")
        assert messages, f"no config for {key}"
        return self.config_of(messages[-1].payload).release

    def config_of(self, payload: bytes) -> AgentConfig:
        trusted = {k.id: k.public for k in self.keys().public()}
        return decode_config(verify(decode_signed_config(payload), trusted))

    def wait_orders(self, want: Callable[[str, ReleaseOrder | None], bool], what: str) -> None:
        wait_for(
            lambda: all(
                self.configs.snapshot(f"{k}/config") and want(k, self.order_of(k))
                for k in fleet_keys()
            ),
            20,
            what,
        )

    def close(self) -> None:
        self.agents.loop_stop()
        self.agents.disconnect()
        self.configs.stop()
        self.source.stop()
        self.sender.stop()
        self.store.close()


@pytest.fixture
def site(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Site]:
    opened = Site(tmp_path, mosquitto, {"0.2.0", "0.3.0"})
    yield opened
    opened.close()


def pilot_of(site: Site) -> list[str]:
    latest = site.book.latest()
    assert latest is not None and len(latest.pilot) == 1
    return [k for k in fleet_keys() if k.startswith(latest.pilot[0] + "/")]


@pytest.mark.servers
def test_three_rings_promoted_by_their_gates_and_paused_by_a_breach(site: Site) -> None:
    site.round()  # before any rollout: every PC's config, without an order
    site.wait_orders(lambda _k, order: order is None, "configs without an order")
    rollout = site.book.start("0.3.0", RINGS, GATE, ADMIN, lab=LAB, spread_s=600)
    pilot = pilot_of(site)
    rest = [k for k in fleet_keys() if k not in LAB and k not in pilot]

    # Ring 1, the lab: asked at once, with the rollout, its ring and the spread.
    assert site.round() == ""  # nobody committed yet: the gate waits
    site.wait_orders(lambda k, o: (o is not None) == (k in LAB), "orders to the lab only")
    assert site.order_of(LAB[0]) == ReleaseOrder("0.3.0", rollout.id, "lab", False, 600.0)
    site.born(list(LAB), "trial", "0.3.0")
    assert site.round() == ""  # on trial is not committed
    site.born(list(LAB), "committed", "0.3.0")
    assert site.round() == f"rollout {rollout.id}: ring lab promoted"

    # Ring 2, the pilot commune: one PC of ten rolls back (10 % > 1 %): paused, and why.
    site.wait_orders(lambda k, o: (o is not None) == (k in LAB or k in pilot), "pilot ordered")
    assert site.order_of(pilot[0]) == ReleaseOrder("0.3.0", rollout.id, "pilot:1-communes",
                                                   False, 600.0)  # fmt: skip
    site.born(pilot[:9], "committed", "0.3.0")
    site.born(pilot[9:], "rolled_back", "0.3.0", "no health within 10m")
    happened = site.round()
    assert "paused: ring pilot:1-communes: 1 of 10 PCs of the ring rolled back" in happened
    paused = site.book.get(rollout.id)
    assert (paused.state, paused.breach) == ("paused", True)
    # Paused: the PCs asked are told so (no new download); the rest still get nothing.
    site.wait_orders(lambda k, o: (o is not None and o.paused) if k not in rest else o is None,
                     "the pause sent")  # fmt: skip
    assert site.round() == ""  # a paused rollout is not judged again

    # The operator accepts the pilot: the whole fleet is asked; then all commit: done.
    site.book.promote(rollout.id, ADMIN)
    site.round()
    site.wait_orders(lambda k, o: o is not None and not o.paused and
                     o.ring == ("lab" if k in LAB else "pilot:1-communes" if k in pilot
                                else "100%"), "everyone ordered")  # fmt: skip
    site.born(rest, "committed", "0.3.0")
    assert site.round() == f"rollout {rollout.id}: ring 100% promoted, done"
    done = site.book.get(rollout.id)
    assert done.state == "done"
    assert [r.promoted_by for r in done.ring_states] == ["gate", "nga", "gate"]
    with site.store.reading() as db:
        actions = [r[0] for r in db.execute("SELECT action FROM audit ORDER BY id")]
    assert actions == ["rollout_start", "rollout_promote"]


@pytest.mark.servers
def test_a_halted_rollout_orders_nothing_and_the_configs_say_so(site: Site) -> None:
    rollout = site.book.start("0.3.0", "lab,100%", GATE, ADMIN, lab=LAB[:1], spread_s=0)
    site.round()
    site.wait_orders(lambda k, o: (o is not None) == (k == LAB[0]), "the lab PC ordered")
    version_before = site.config_of(site.configs.snapshot(f"{LAB[0]}/config")[-1].payload)
    site.book.halt(rollout.id, "the Kaspersky lab PC rolled back", ADMIN)
    site.round()
    site.wait_orders(lambda _k, o: o is None, "the order withdrawn")
    after = site.config_of(site.configs.snapshot(f"{LAB[0]}/config")[-1].payload)
    assert after.version == version_before.version + 1  # a change the agent accepts
    with pytest.raises(RolloutError, match="halted"):
        site.book.resume(rollout.id, ADMIN)


def test_only_a_signed_version_starts_and_one_rollout_at_a_time(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.sqlite") as store:
        enroll(store, fleet_keys())
        book = Rollouts(store, lambda: {"0.3.0"})
        with pytest.raises(RolloutError, match=r"0\.4\.0 is not in the signed release"):
            book.start("0.4.0", RINGS, GATE, ADMIN, lab=LAB)
        with pytest.raises(RolloutError, match="not enrolled agents: dong-nai/lab/pc-99"):
            book.start("0.3.0", RINGS, GATE, ADMIN, lab=["dong-nai/lab/pc-99"])
        with pytest.raises(RolloutError, match="lab ring needs named lab PCs"):
            book.start("0.3.0", RINGS, GATE, ADMIN)
        with pytest.raises(RolloutError, match="not a version"):
            book.start("0.3.0; rm", RINGS, GATE, ADMIN, lab=LAB)
        first = book.start("0.3.0", RINGS, GATE, ADMIN, lab=LAB)
        with pytest.raises(RolloutError, match=f"rollout {first.id} is running: halt it first"):
            book.start("0.3.0", RINGS, GATE, ADMIN, lab=LAB)
        assert len(book.all()) == 1


# ---- the command line ----------------------------------------------------------------


def cli(config: Path, *arguments: str, signed: set[str] | None = None) -> tuple[int, str]:
    obj: dict[str, Any] = {"signed_versions": lambda: signed} if signed is not None else {}
    result = CliRunner().invoke(main, ["rollout", *arguments, "-c", str(config)], obj=obj)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture
def config(tmp_path: Path) -> Path:
    with StateStore(tmp_path / "state.sqlite") as store:
        enroll(store, fleet_keys())
    path = tmp_path / "collector.toml"
    path.write_text(f'[store]\npath = "{tmp_path / "state.sqlite"}"\n')
    return path


def test_the_command_line_starts_pauses_resumes_promotes_and_halts(config: Path) -> None:
    code, out = cli(config, "start", "0.3.0", "--lab", LAB[0], "--rings", RINGS)
    assert code == 1 and "0.3.0 is not in the signed release repository (signed: none)" in out
    signed = {"0.3.0"}
    code, out = cli(config, "start", "0.3.0", "--lab", LAB[0], "--rings", RINGS,
                    "--gate", "soak=2h", "--gate", "committed=90", signed=signed)  # fmt: skip
    assert code == 0, out
    assert "rollout 0.3.0-1 started: 0.3.0 to ring lab" in out and "committed ≥ 90 %" in out
    code, out = cli(config, "status", signed=signed)
    assert code == 0 and "rollout 0.3.0-1: 0.3.0, running" in out
    assert "fleet: ?: 32" in out  # no birth yet: versions unknown
    lab_line = next(line for line in out.splitlines() if line.strip().startswith("lab "))
    assert "open" in lab_line and "soaking" in lab_line
    code, out = cli(config, "pause", "--why", "helpdesk calls")
    assert code == 0 and "paused — helpdesk calls" in out
    code, out = cli(config, "pause")
    assert code == 1 and "is paused: it can only be done to a rollout running" in out
    code, out = cli(config, "resume")
    assert code == 0 and "rollout 0.3.0-1 running again at ring lab" in out
    code, out = cli(config, "status", signed=signed)
    assert code == 0 and "rollout 0.3.0-1: 0.3.0, running" in out and "helpdesk" not in out
    code, out = cli(config, "resume", "0.3.0-1")
    assert code == 1 and "is running: it can only be done to a rollout paused" in out
    code, out = cli(config, "promote", "0.3.0-1")
    assert code == 0 and "ring lab promoted; ring pilot:1-communes open" in out
    code, out = cli(config, "halt", "--why", "a bad build")
    assert code == 0 and "halted — a bad build" in out
    code, out = cli(config, "resume", "0.3.0-9")
    assert code == 1 and "no rollout '0.3.0-9'" in out
    code, out = cli(config, "start", "0.3.0", "--rings", "10%,lab", signed=signed)
    assert code == 1 and "lab first" in out
    code, out = cli(config, "start", "0.3.0", "--rings", "100%", "--gate", "speed=1",
                    signed=signed)  # fmt: skip
    assert code == 1 and "--gate 'speed=1'" in out
    with StateStore(config.parent / "state.sqlite") as store, store.reading() as db:
        rows = db.execute("SELECT action, via, object FROM audit ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["rollout_start", "rollout_pause", "rollout_resume",
                                    "rollout_promote", "rollout_halt"]  # fmt: skip
    assert {(r[1], r[2]) for r in rows} == {("cli", "0.3.0-1")}


@pytest.mark.parametrize("command", ["start", "status", "pause", "resume", "halt", "promote"])
def test_every_rollout_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(main, ["rollout", command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and "commune-collector rollout" in result.output


# ---- alerts ----------------------------------------------------------------------------


def firing(store: StateStore) -> dict[tuple[str, str], str]:
    with store.reading() as db:
        rows = db.execute("SELECT rule, subject, value FROM alerts WHERE state = 'firing'")
        return {(r[0], r[1]): r[2] for r in rows if r[0].startswith(("rollout", "agent_update"))}


def test_a_breach_and_agents_failing_to_update_raise_alerts(tmp_path: Path) -> None:
    from collector.alerts.engine import AlertEngine
    from collector.alerts.rules import default_rules

    with StateStore(tmp_path / "state.sqlite") as store:
        enroll(store, fleet_keys())
        engine = AlertEngine(default_rules())
        engine.install(store)
        book = Rollouts(store, lambda: {"0.3.0"})
        rollout = book.start("0.3.0", "lab,100%", GATE, ADMIN, lab=LAB)

        def birth(key: str, state: str, ts: float, reason: str = "") -> None:
            province, commune, agent = key.split("/")
            report = UpdateReport(state=state, version="0.3.0", ts=ts, reason=reason)  # type: ignore[arg-type]
            status = Status(v=1, state="online", agent=agent, province=province,
                            commune=commune, ts=ts, version="0.2.0", update=report)  # fmt: skip
            store.apply(statuses=[(status, ts)])

        now = time.time()
        birth(LAB[0], "committed", now)
        birth(LAB[1], "rolled_back", now, "crashed 3 times in 60s")
        pc = "dong-nai/la-nga/pc-00"
        birth(pc, "failed", now - 30, "metadata expired")
        birth(pc, "failed", now - 20, "metadata expired")
        engine.tick(store, now)
        assert firing(store) == {
            ("agent_update_rolled_back", LAB[1]): "0.3.0: crashed 3 times in 60s",
        }
        birth(pc, "refused", now - 10, "below the floor")  # the third in a row
        assert book.evaluate() == f"rollout {rollout.id} paused: ring lab: 1 of 2 PCs of the " \
            "ring rolled back (50.0 % > 1 %)"  # fmt: skip
        engine.tick(store, now + 1)
        alerts = firing(store)
        assert alerts[("agent_update_failing", pc)] == "0.3.0: below the floor"
        assert (
            "1 of 2 PCs of the ring rolled back"
            in alerts[("rollout_paused_by_breach", "collector/rollout")]
        )
        # An operator's pause is not a breach; halted, the alert resolves.
        book.halt(rollout.id, "fixed in 0.3.1", ADMIN)
        engine.tick(store, now + 2)
        assert ("rollout_paused_by_breach", "collector/rollout") not in firing(store)


def test_the_agent_page_shows_where_its_update_stands(tmp_path: Path) -> None:
    """The console over HTTP (a real uvicorn on loopback): the agent's last report."""
    import urllib.request

    from collector.config import ApiSection, ConsoleSection
    from collector.state.health import HealthModel
    from collector.web.factory import create_app
    from tests.servers import AppServer
    from tests.test_health import INVENTORY, build_province

    store = build_province(tmp_path)
    agent = store.agents()[0]
    report = UpdateReport(state="rolled_back", version="0.3.0", previous="0.2.0", ts=time.time(),
                          reason="exited 3 times within 60s")  # fmt: skip
    birth = Status(
        v=1, state="online", agent=agent.agent, province=agent.province, commune=agent.commune,
        ts=time.time(), version="0.2.0", update=report,
    )  # fmt: skip
    store.apply(statuses=[(birth, time.time())])
    app = create_app(HealthModel(store, [INVENTORY]), store,
                     ApiSection(listen="127.0.0.1:0", open_on_loopback=True),
                     console=ConsoleSection())  # fmt: skip
    served = AppServer(app).start()
    try:
        url = f"{served.url}/agents/{agent.agent_key}"
        with urllib.request.urlopen(url, timeout=10) as response:
            page = response.read().decode()
    finally:
        served.stop()
        store.close()
    assert 'id="update" data-state="rolled_back"' in page
    assert "0.3.0 — exited 3 times within 60s" in page


def test_the_lab_pcs_of_the_config_make_the_lab_ring_and_a_bad_one_is_named(
    config: Path,
) -> None:
    text = config.read_text()
    config.write_text(text + f'[rollouts]\nlab = ["{LAB[1]}"]\n')
    code, out = cli(config, "start", "0.3.0", "--rings", "lab,100%", signed={"0.3.0"})
    assert code == 0, out
    with StateStore(config.parent / "state.sqlite") as store:
        latest = Rollouts(store, set).latest()
        assert latest is not None and latest.lab == (LAB[1],)
    config.write_text(text + '[rollouts]\nlab = ["not a key"]\n')
    code, out = cli(config, "status")
    assert code == 1 and "rollouts.lab" in out


def test_the_config_hash_covers_the_release_order_and_is_unchanged_without_one() -> None:
    import hashlib

    import msgspec

    from agent.wire import WireError, config_digest

    checks: dict[str, list[dict[str, Any]]] = {"host": [{}]}
    before_orders = hashlib.sha256(
        msgspec.json.Encoder(order="sorted").encode({"interval": 60.0, "checks": checks})
    ).hexdigest()
    assert config_digest(60.0, checks) == config_digest(60.0, checks, None) == before_orders
    order = ReleaseOrder("0.3.0", "0.3.0-1", "lab")
    assert config_digest(60.0, checks, order) not in (
        before_orders, config_digest(60.0, checks, msgspec.structs.replace(order, paused=True)),
    )  # fmt: skip
    config = AgentConfig(
        v=1, agent="pc-01", province="dong-nai", commune="la-nga", version=2,
        hash=before_orders, interval=60.0, checks=checks, release=order,
    )  # fmt: skip
    with pytest.raises(WireError, match="bad_hash"):
        decode_config(encode(config))  # an order slipped in under the old hash
    honest = msgspec.structs.replace(config, hash=config_digest(60.0, checks, order))
    assert decode_config(encode(honest)).release == order
