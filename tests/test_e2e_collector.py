"""The collector as a real process: kill -9 in the middle of a stream loses nothing.

A publisher replays an agent's backlog in which the line changes state at every
envelope, so a single lost or misapplied envelope would merge two outages or
move a boundary; the outage table is compared with the answer computed by hand,
and the series in VictoriaMetrics with every point published.
"""

from __future__ import annotations

import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent import wire
from agent.wire import Envelope, Sample
from collector.outputs.spool import Spool
from collector.state.availability import Outage
from collector.state.store import StateStore
from tests.servers import DEDUP, CollectorProcess, Mosquitto, VictoriaMetrics

# Recent, on the hour: the collector refuses samples more than 30 days old.
T0 = float(int(time.time()) // 3600 * 3600 - 3 * 86400)
N = 3000


def backlog() -> list[bytes]:
    payloads = []
    for seq in range(N):
        up = seq % 2 == 0
        sample = Sample(
            ts=T0 + 60 * seq,
            check="link",
            name="tslcd",
            outcome="ok" if up else "timeout",
            target="10.10.1.1",
            fields={"up": int(up)},
            tags={"network": "tslcd"},
        )
        payloads.append(
            wire.encode(
                Envelope(
                    v=1,
                    agent="pc-01",
                    province="dong-nai",
                    commune="la-nga",
                    seq=seq,
                    ts=T0 + 60 * seq,
                    samples=[sample],
                )
            )
        )
    return payloads


def last_seq(path: Path) -> int:
    if not path.exists():
        return -1
    store = StateStore(path)
    try:
        agents = store.agents()
        return agents[0].last_seq if agents and agents[0].last_seq is not None else -1
    finally:
        store.close()


def spooled(path: Path) -> int:
    store = StateStore(path)
    try:
        return Spool(store).stats().rows
    finally:
        store.close()


def test_kill_9_mid_stream_loses_nothing(tmp_path: Path) -> None:
    # Mosquitto keeps at most 1,000 messages for an offline session by default and
    # drops the rest: a collector's broker must be configured for its outages.
    mosquitto = Mosquitto(
        tmp_path / "broker", extra="allow_anonymous true\nmax_queued_messages 100000"
    )
    mosquitto.start()
    # As deploy/OPERATIONS.md runs it: what a restarted sink writes again is kept once.
    vm = VictoriaMetrics(tmp_path / "vm", flags=DEDUP).start()
    try:
        kill_mid_stream(tmp_path, mosquitto, vm)
    finally:
        vm.stop()
        mosquitto.stop()


def kill_mid_stream(tmp_path: Path, mosquitto: Mosquitto, vm: VictoriaMetrics) -> None:
    collector = CollectorProcess(tmp_path / "collector", mosquitto.port, sink_url=vm.url).start()
    state = collector.state
    time.sleep(1.0)  # its persistent session exists from here on
    agent = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="agent-pc-01")
    agent.connect("127.0.0.1", mosquitto.port)
    agent.loop_start()
    infos = []
    killed_at = -1
    for seq, payload in enumerate(backlog()):
        infos.append(agent.publish("commune/dong-nai/la-nga/pc-01/data", payload, qos=1))
        if seq == N // 3:
            time.sleep(0.3)
            collector.kill()  # SIGKILL, mid-stream
            killed_at = last_seq(state)
        if seq % 200 == 0:
            time.sleep(0.05)
    for info in infos:
        info.wait_for_publish(30)
    agent.loop_stop()
    assert 0 <= killed_at < N - 1, "the kill must land in the middle of the stream"
    collector.start()
    try:
        deadline = time.monotonic() + 60
        while (last_seq(state) < N - 1 or spooled(state)) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        collector.stop()
    store = StateStore(state)
    [subject] = store.subjects("link")
    outages = store.outages(subject.id)
    # Odd sequence numbers are down: each outage ends at the next envelope; N is even, so
    # the last envelope is down and its outage is still open.
    expected = [Outage(T0 + 60 * s, T0 + 60 * (s + 1)) for s in range(1, N - 1, 2)]
    expected.append(Outage(T0 + 60 * (N - 1), None))
    assert outages == expected
    assert store.agents()[0].last_seq == N - 1
    # Every point reached the time-series server too, once per timestamp, in order.
    [series] = vm.export('{__name__="link_up"}')
    assert series["values"] == [1 - s % 2 for s in range(N)]
    assert series["timestamps"] == [int((T0 + 60 * s) * 1000) for s in range(N)]
    assert "Traceback" not in collector.log


def test_agents_data_reaches_the_store_and_victoriametrics(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:

    vm = VictoriaMetrics(tmp_path / "vm").start()
    collector = CollectorProcess(tmp_path / "collector", mosquitto.port, sink_url=vm.url)
    state = collector.state
    collector.start()
    try:
        time.sleep(1.0)
        agent = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="agent-pc-01")
        agent.connect("127.0.0.1", mosquitto.port)
        agent.loop_start()
        infos = [
            agent.publish("commune/dong-nai/la-nga/pc-01/data", p, qos=1) for p in backlog()[:50]
        ]
        for info in infos:
            info.wait_for_publish(10)
        agent.loop_stop()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if last_seq(state) == 49 and spooled(state) == 0:
                break
            time.sleep(0.2)
        [series] = vm.export('{__name__="link_up"}')
    finally:
        collector.stop()
        vm.stop()
    assert series["values"] == [1 - s % 2 for s in range(50)]
    assert series["timestamps"] == [int((T0 + 60 * s) * 1000) for s in range(50)]
    assert series["metric"]["commune"] == "la-nga"  # type: ignore[index]


def test_a_broker_restart_under_load_loses_nothing(tmp_path: Path) -> None:
    """Mosquitto is restarted (persistence on) while an agent publishes and the collector
    ingests: every envelope is committed once its publisher got its PUBACK, in the end all."""
    import threading

    mosquitto = Mosquitto(
        tmp_path / "broker", extra="allow_anonymous true\nmax_queued_messages 100000"
    ).start()
    collector = CollectorProcess(tmp_path / "collector", mosquitto.port).start()
    total = 1200
    publisher = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="agent-pc-01", clean_session=False
    )
    publisher.max_inflight_messages_set(50)
    publisher.reconnect_delay_set(0.2, 1)
    publisher.connect("127.0.0.1", mosquitto.port)
    publisher.loop_start()
    payloads = backlog()[:total]
    infos: list[mqtt.MQTTMessageInfo] = []

    def publish_steadily() -> None:
        # Like the agent's outbox: hand a message over only while connected; what is in
        # flight when the broker goes is sent again on reconnect (persistent session).
        for payload in payloads:
            while True:
                while not publisher.is_connected():
                    time.sleep(0.05)
                info = publisher.publish("commune/dong-nai/la-nga/pc-01/data", payload, qos=1)
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    break
                # Lost the broker in between: hand it over again (a repeat is harmless).
            infos.append(info)
            time.sleep(0.002)

    thread = threading.Thread(target=publish_steadily)
    try:
        time.sleep(1.0)
        thread.start()
        time.sleep(0.8)  # mid-stream
        committed_before = last_seq(collector.state)
        mosquitto.stop()
        time.sleep(1.0)
        mosquitto.start()
        thread.join(60)
        for info in infos:
            info.wait_for_publish(60)
        deadline = time.monotonic() + 60
        while last_seq(collector.state) < total - 1 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        publisher.loop_stop()
        collector.stop()
        mosquitto.stop()
    assert 0 < committed_before < total - 1, "the restart must land mid-stream"
    store = StateStore(collector.state)
    [subject] = store.subjects("link")
    expected = [Outage(T0 + 60 * s, T0 + 60 * (s + 1)) for s in range(1, total - 1, 2)]
    expected.append(Outage(T0 + 60 * (total - 1), None))
    assert store.outages(subject.id) == expected  # every boundary: nothing lost or moved
    assert store.agents()[0].last_seq == total - 1
    assert "Traceback" not in collector.log
