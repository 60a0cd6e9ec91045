"""The whole chain with real processes: agent → Mosquitto → collector → API and VictoriaMetrics.

The agent polls a router and a Polycom served by snmpsim (a real Huawei
recording; a Polycom recording written from its MIB), probes the "dedicated
line" over TCP and reads its anti-malware state; the collector keeps the state,
answers the IOC's API and writes the series to VictoriaMetrics — which is
stopped for a while under the running collector and must still get every point.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent import wire
from agent.wire import Envelope, Sample
from collector.outputs.spool import Spool
from collector.state.store import StateStore
from tests.servers import (
    DEDUP,
    AgentProcess,
    CollectorProcess,
    Mosquitto,
    SnmpSim,
    VictoriaMetrics,
)

INVENTORY = """
province = "dong-nai"
name = "Đồng Nai"
[[communes]]
slug = "la-nga"
name = "Xã La Ngà"
pcs = 2
polycoms = 1
[[communes]]
slug = "phu-hoa"
name = "Xã Phú Hòa"
"""


def wait_until(probe: Any, timeout: float = 40.0, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last value {value!r}")
        time.sleep(every)


def test_a_real_agent_shows_in_the_api_and_victoriametrics(
    tmp_path: Path, snmpsim: SnmpSim
) -> None:
    broker = Mosquitto(tmp_path / "broker", extra="allow_anonymous true").start()
    vm = VictoriaMetrics(tmp_path / "vm").start()
    inventory = tmp_path / "dong-nai.toml"
    inventory.write_text(INVENTORY)
    collector = CollectorProcess(
        tmp_path / "collector",
        broker.port,
        sink_url=vm.url,
        extra=f'inventory = ["{inventory}"]',
    ).start()
    agent_config = tmp_path / "agent.toml"
    agent_config.write_text(
        f"""
[agent]
province = "dong-nai"
commune = "la-nga"
id = "pc-01"
interval = "1s"
state_dir = "{tmp_path / "state"}"
[mqtt]
url = "mqtt://127.0.0.1:{broker.port}"
[[checks.host]]
[[checks.antivirus]]
source = "clamav"
clamd_socket = "{tmp_path / "no-clamd.sock"}"
clamav_db_dir = "{tmp_path}"
[[checks.link]]
name = "tslcd-province"
network = "tslcd"
method = "tcp"
target = "127.0.0.1"
port = {broker.port}
[[checks.snmp]]
name = "router"
host = "127.0.0.1"
port = {snmpsim.port}
community = "huawei-s5720"
[[checks.polycom]]
name = "polycom"
host = "127.0.0.1"
port = {snmpsim.port}
community = "polycom-idle"
"""
    )
    agent = AgentProcess(agent_config).start()
    try:

        def commune() -> dict[str, Any] | None:
            status, body = collector.get("/api/v1/communes/la-nga")
            assert status == 200, body
            assert isinstance(body, dict)
            complete = (
                body["polycom"]["reporting"]
                and body["line"]["monitored"]
                and body["antimalware"]["reporting"]
                and body["interfaces"]["devices"]
            )
            return body if complete else None

        la_nga = wait_until(commune)
        assert la_nga["name"] == "Xã La Ngà"
        assert (la_nga["agents"], la_nga["agents_online"]) == (1, 1)
        # ClamAV without clamd: no product detected on this PC.
        antimalware = la_nga["antimalware"]
        assert (antimalware["reporting"], antimalware["unprotected"]) == (1, 1)
        assert (antimalware["expected"], antimalware["not_reporting"]) == (2, 1)
        assert antimalware["percent_protected"] == 0.0
        assert la_nga["line"]["up"] is True
        assert la_nga["line"]["availability"]["last_24h"] == 100.0
        assert la_nga["line"]["targets"][0]["rtt_ms"] is not None
        polycom = la_nga["polycom"]["devices"][0]
        assert (polycom["reachable"], polycom["ready"], polycom["in_call"]) == (True, True, False)
        interfaces = la_nga["interfaces"]["all"]
        assert interfaces and all(i["device"] == "router" for i in interfaces)
        assert la_nga["status"] == "critical"
        assert "unprotected" in {r["code"] for r in la_nga["reasons"]}

        status, province = collector.get("/api/v1/province")
        assert status == 200 and isinstance(province, dict)
        assert (province["province"], province["name"], province["communes"]) == (
            "dong-nai",
            "Đồng Nai",
            2,
        )
        assert province["communes_by_status"]["no_data"] == 1  # Phú Hòa
        assert (province["lines_monitored"], province["lines_up"]) == (1, 1)
        assert (province["polycoms_expected"], province["polycoms_ready"]) == (1, 1)

        status, communes = collector.get("/api/v1/communes?status=no_data")
        assert status == 200 and [c["slug"] for c in communes] == ["phu-hoa"]  # type: ignore[union-attr]

        status, agents = collector.get("/api/v1/agents")
        assert status == 200 and isinstance(agents, list)
        assert [(a["agent"], a["state"]) for a in agents] == [("pc-01", "online")]

        def every_check() -> set[str] | None:
            # The agent's own figures follow its first cycle: wait for them too.
            status, detail = collector.get("/api/v1/agents/pc-01")
            assert status == 200 and isinstance(detail, dict)
            checks = {s["check"] for s in detail["samples"]}
            wanted = {"host", "antivirus", "link", "snmp", "polycom", "agent"}
            return checks if wanted <= checks else None

        assert wait_until(every_check)

        status, report = collector.get("/api/v1/availability?commune=la-nga&from=2020-01-01")
        assert status == 200 and isinstance(report, dict)
        assert report["line"]["percent"] == 100.0 and report["line"]["outages"] == []

        # Tokens: none, or a wrong one, is refused; /healthz and the schema are open.
        assert collector.get("/api/v1/province", token=None)[0] == 401
        assert collector.get("/api/v1/province", token="not-the-token")[0] == 401
        assert collector.get("/metrics", token=None)[0] == 401
        assert collector.get("/healthz", token=None)[0] == 200
        status, schema = collector.get("/openapi.json", token=None)
        assert status == 200 and "/api/v1/communes/{commune}" in schema["paths"]  # type: ignore[index]
        assert collector.get("/docs", token=None)[0] == 200

        status, metrics = collector.get("/metrics")
        assert status == 200 and isinstance(metrics, str)
        figures = {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in metrics.splitlines()
            if line and not line.startswith("#")
        }
        assert figures["commune_collector_messages_received_total"] > 0
        assert figures['commune_collector_agents{state="online"}'] == 1
        commits = figures["commune_collector_commit_duration_seconds_count"]
        assert commits > 0
        assert figures['commune_collector_commit_duration_seconds_bucket{le="+Inf"}'] == commits

        def link_points() -> list[dict[str, object]]:
            return vm.export('{__name__="link_up",commune="la-nga"}')

        [series] = wait_until(link_points)
        assert set(series["values"]) == {1}  # type: ignore[arg-type]
    finally:
        agent.stop()
        collector.stop()
        vm.stop()
        broker.stop()
    assert "Traceback" not in collector.log
    assert "Traceback" not in agent.log


def envelope(seq: int, t0: float, up: bool | None = None) -> bytes:
    """The line at minute ``seq``; by default it alternates up/down at each envelope, so
    that any lost point changes the series."""
    is_up = seq % 2 == 0 if up is None else up
    sample = Sample(
        ts=t0 + 60 * seq,
        check="link",
        name="tslcd",
        outcome="ok" if is_up else "timeout",
        target="10.75.0.1",
        fields={"up": int(is_up)},
        tags={"network": "tslcd"},
    )
    return wire.encode(
        Envelope(
            v=1,
            agent="pc-01",
            province="dong-nai",
            commune="la-nga",
            seq=seq,
            ts=sample.ts,
            samples=[sample],
        )
    )


def test_victoriametrics_stopped_under_a_running_collector_gets_every_point(
    tmp_path: Path,
) -> None:
    t0 = float(int(time.time()) - 86400)  # within VictoriaMetrics' retention
    broker = Mosquitto(
        tmp_path / "broker", extra="allow_anonymous true\nmax_queued_messages 100000"
    ).start()
    # As deployed (deploy/OPERATIONS.md): after a failed write the sink writes its last
    # seconds again, and VictoriaMetrics keeps a point written twice once.
    vm = VictoriaMetrics(tmp_path / "vm", flags=DEDUP).start()
    collector = CollectorProcess(tmp_path / "collector", broker.port, sink_url=vm.url).start()
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="agent-pc-01")
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()

    def publish(seqs: range) -> None:
        infos = [
            publisher.publish("commune/dong-nai/la-nga/pc-01/data", envelope(s, t0), qos=1)
            for s in seqs
        ]
        for info in infos:
            info.wait_for_publish(30)

    def metric(name: str) -> float:
        _, text = collector.get("/metrics")
        for line in str(text).splitlines():
            if line.startswith(name + " "):
                return float(line.split(" ")[1])
        raise AssertionError(f"{name} not in /metrics")

    def last_seq_and_spool() -> tuple[int, int]:
        store = StateStore(collector.state)
        try:
            agents = store.agents()
            seq = agents[0].last_seq if agents and agents[0].last_seq is not None else -1
            return seq, Spool(store).stats().rows
        finally:
            store.close()

    try:
        publish(range(100))
        wait_until(lambda: last_seq_and_spool() == (99, 0))
        vm.stop()
        publish(range(100, 300))
        # Committed and acknowledged while the server is down: it waits in the spool.
        wait_until(lambda: last_seq_and_spool()[0] == 299)
        assert last_seq_and_spool()[1] > 0
        wait_until(lambda: metric("commune_collector_sink_write_errors_total") > 0)
        status, health = collector.get("/healthz")
        # Behind, not broken: the collector ingests, the points wait.
        assert status == 200 and health["detail"]["parts"]["sink"] == "behind"  # type: ignore[index]
        assert "Connection" not in str(health)  # no internal error texts for anyone to read
        time.sleep(3)  # down "for a while": several failed retries
        vm = VictoriaMetrics(tmp_path / "vm", port=vm.port, flags=DEDUP).start()
        wait_until(lambda: last_seq_and_spool() == (299, 0), timeout=60)
        [series] = vm.export('{__name__="link_up",commune="la-nga"}')
        assert metric("commune_collector_sink_points_written_total") >= 300
    finally:
        publisher.loop_stop()
        collector.stop()
        vm.stop()
        broker.stop()
    assert series["values"] == [1 - s % 2 for s in range(300)]
    assert series["timestamps"] == [int((t0 + 60 * s) * 1000) for s in range(300)]
    assert "Traceback" not in collector.log


def test_a_running_collector_pages_a_line_outage_to_a_real_receiver(tmp_path: Path) -> None:
    from tests.test_notify import HttpReceiver

    receiver = HttpReceiver()
    broker = Mosquitto(tmp_path / "broker", extra="allow_anonymous true").start()
    routes = (
        f'[alerts]\ngroup_wait = "1s"\n[[alerts.routes]]\nname = "technicians"\n'
        f'urls = ["{receiver.url}"]\n'
    )
    collector = CollectorProcess(tmp_path / "collector", broker.port, sections=routes).start()
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="agent-pc-01")
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    try:
        t0 = float(int(time.time()) - 240)
        for seq in range(5):  # down for four minutes, up to now
            payload = envelope(seq, t0, up=False)
            publisher.publish(
                "commune/dong-nai/la-nga/pc-01/data", payload, qos=1
            ).wait_for_publish(5)
        wait_until(lambda: receiver.received, timeout=30)
        [message] = receiver.received
        assert message["title"].startswith("[ĐANG XẢY RA] [NGHIÊM TRỌNG] Mất đường truyền")
        status, alerts = collector.get("/api/v1/alerts?state=firing")
        assert status == 200 and [a["rule"] for a in alerts] == ["line_down_tslcd"]  # type: ignore[union-attr]
        assert alerts[0]["started_at"] == t0  # type: ignore[index]
        _, metrics = collector.get("/metrics")
        assert "commune_collector_notifications_sent_total 1" in str(metrics)
    finally:
        publisher.loop_stop()
        collector.stop()
        broker.stop()
        receiver.stop()
    assert "Traceback" not in collector.log
