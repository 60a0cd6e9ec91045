"""Ingest through a real Mosquitto: validate, commit, then acknowledge."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent import wire
from agent.configtypes import BrokerSection
from agent.wire import Envelope, Sample, Status
from collector.ingest.ingestor import Ingestor, Message, RejectionLog
from collector.ingest.source import MqttSource, SourceSettings
from collector.state.store import Applied, StateStore, agent_key
from tests.servers import Mosquitto

# Recent, on the hour: the collector refuses samples more than 30 days old.
T0 = float(int(time.time()) // 3600 * 3600 - 3 * 86400)
TOPIC = "commune/dong-nai/la-nga/pc-01"


def envelope(seq: int, agent: str = "pc-01", v: int = 1) -> bytes:
    sample = Sample(
        ts=T0 + seq, check="host", name="host", outcome="ok", fields={"cpu_percent": 1.0}
    )
    return wire.encode(
        Envelope(
            v=v,
            agent=agent,
            province="dong-nai",
            commune="la-nga",
            seq=seq,
            ts=T0 + seq,
            samples=[sample],
        )
    )


def publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-agent")
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def publish_all(client: mqtt.Client, items: list[tuple[str, bytes]]) -> None:
    infos = [client.publish(topic, payload, qos=1) for topic, payload in items]
    for info in infos:
        info.wait_for_publish(10)


def wait(predicate: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError("condition not met")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    state = StateStore(tmp_path / "state.sqlite")
    yield state
    state.close()


def source(port: int, ingestor: Ingestor) -> MqttSource:
    settings = SourceSettings(
        BrokerSection(url=f"mqtt://127.0.0.1:{port}"),
        client_id="collector-test",
        provinces=("dong-nai",),
    )
    started = MqttSource(settings, ingestor)
    started.start()
    assert started.connected.wait(10)
    return started


def test_good_traffic_lands_and_bad_messages_are_rejected_by_reason(
    mosquitto: Mosquitto, store: StateStore
) -> None:
    ingestor = Ingestor(store, "commune")
    collector = source(mosquitto.port, ingestor)
    agent = publisher(mosquitto.port)
    birth = Status(
        v=1,
        state="online",
        agent="pc-01",
        province="dong-nai",
        commune="la-nga",
        ts=T0,
        version="0.1.0",
        checks=["host:host"],
    )
    items = [(f"{TOPIC}/status", wire.encode(birth))]
    for seq in range(40):
        items.append((f"{TOPIC}/data", envelope(seq)))
        if seq % 10 == 5:  # bad ones in the middle of good traffic
            items += [
                (f"{TOPIC}/data", b"\x00not json"),
                (f"{TOPIC}/data", envelope(seq, agent="pc-02")),  # spoofed identity
                (f"{TOPIC}/data", envelope(seq, v=9)),
                (f"{TOPIC}/data", b"{" + b" " * 300_000 + b"}"),
                (f"{TOPIC}/data", json.dumps({"v": 1, "agent": "pc-01"}).encode()),
            ]
    publish_all(agent, items)
    try:
        wait(lambda: ingestor.stats.acked == len(items))
    finally:
        agent.loop_stop()
        collector.stop()
    [state] = store.agents()
    assert (state.state, state.version, state.last_seq) == ("online", "0.1.0", 39)
    assert ingestor.stats.applied_envelopes == 40
    assert dict(ingestor.stats.rejected) == {
        "not_json": 4,
        "identity_mismatch": 4,
        "schema_version": 4,
        "too_large": 4,
        "invalid": 4,
    }
    assert store.latest(agent_key("dong-nai", "la-nga", "pc-01"))[0].ts == T0 + 39


def test_acknowledged_messages_are_not_delivered_again(
    mosquitto: Mosquitto, store: StateStore
) -> None:
    first = Ingestor(store, "commune")
    collector = source(mosquitto.port, first)
    agent = publisher(mosquitto.port)
    publish_all(
        agent,
        [(f"{TOPIC}/data", envelope(seq)) for seq in range(20)] + [(f"{TOPIC}/data", b"junk")],
    )
    wait(lambda: first.stats.acked == 21)
    collector.stop()
    # Messages published while the collector is away wait in its persistent session.
    publish_all(agent, [(f"{TOPIC}/data", envelope(seq)) for seq in range(20, 30)])
    second = Ingestor(store, "commune")
    collector = source(mosquitto.port, second)
    try:
        wait(lambda: second.stats.acked >= 10)
        time.sleep(1)
    finally:
        agent.loop_stop()
        collector.stop()
    assert second.stats.received == 10  # only the new ones: nothing acked came back
    assert store.agents()[0].last_seq == 29


class FlakyStore(StateStore):
    """A store whose disk fails twice before it works again."""

    failures = 2

    def apply(self, *args: object, **kwargs: object) -> Applied:  # type: ignore[override]
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("disk I/O error")
        return super().apply(*args, **kwargs)  # type: ignore[arg-type]


def test_a_failing_commit_is_retried_and_nothing_is_acknowledged_before_it(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    flaky = FlakyStore(tmp_path / "state.sqlite")
    ingestor = Ingestor(flaky, "commune")
    collector = source(mosquitto.port, ingestor)
    agent = publisher(mosquitto.port)
    publish_all(agent, [(f"{TOPIC}/data", envelope(seq)) for seq in range(5)])
    try:
        wait(lambda: ingestor.stats.acked == 5)
    finally:
        agent.loop_stop()
        collector.stop()
    assert flaky.failures == 0
    assert flaky.agents()[0].last_seq == 4
    assert ingestor.stats.applied_envelopes == 5


def test_rejections_are_logged_once_per_sender_and_reason(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    rejections = RejectionLog(interval=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        results = [rejections("dong-nai/la-nga/pc-01", "not_json", "x") for _ in range(5)]
        results.append(rejections("dong-nai/la-nga/pc-02", "not_json", "x"))
        now[0] = 61
        results.append(rejections("dong-nai/la-nga/pc-01", "not_json", "x"))
    assert results == [True, False, False, False, False, True, True]
    assert "and 4 more since the last report" in caplog.records[-1].getMessage()


def test_topic_filters() -> None:
    shared = SourceSettings(
        BrokerSection(url="mqtt://h:1"),
        client_id="c",
        provinces=("dong-nai", "binh-duong"),
        share_group="collectors",
    )
    assert shared.topic_filters() == [
        "commune/dong-nai/+/+/status",
        "$share/collectors/commune/dong-nai/+/+/data",
        "commune/binh-duong/+/+/status",
        "$share/collectors/commune/binh-duong/+/+/data",
    ]
    assert SourceSettings(BrokerSection(url="mqtt://h:1"), client_id="c").topic_filters() == [
        "commune/+/+/+/status",
        "commune/+/+/+/data",
    ]


def test_an_agent_with_a_wrong_clock_is_refused_by_name_not_stored_at_the_wrong_time(
    store: StateStore,
) -> None:
    from agent.wire import Status

    now = time.time()

    def at(ts: float, seq: int) -> Message:
        sample = Sample(ts=ts, check="host", name="host", outcome="ok", fields={"up": 1})
        payload = wire.encode(
            Envelope(
                v=1,
                agent="pc-01",
                province="dong-nai",
                commune="la-nga",
                seq=seq,
                ts=ts,
                samples=[sample],
            )
        )
        return Message(f"{TOPIC}/data", payload, now, lambda: None)

    def birth(ts: float) -> Message:
        status = Status(
            v=1, state="online", agent="pc-01", province="dong-nai", commune="la-nga", ts=ts
        )
        return Message(f"{TOPIC}/status", wire.encode(status), now, lambda: None)

    ingestor = Ingestor(store, "commune")
    ingestor.process(
        [
            at(now + 3600, 1),  # an hour ahead
            at(now - 40 * 86400, 2),  # 40 days behind
            birth(now + 86400 * 365),  # a year ahead: would freeze the agent's state
            at(now - 3 * 86400, 3),  # a three-day backlog: fine
            at(now + 60, 4),  # a minute ahead: within the tolerance
        ]
    )
    assert ingestor.stats.rejected == {"clock_ahead": 2, "clock_behind": 1}
    assert ingestor.stats.applied_envelopes == 2
    [agent] = store.agents()
    assert agent.last_seq == 4 and agent.state == "unknown"  # the future birth was refused
    ingestor.process([birth(now)])
    assert store.agents()[0].state == "online"
    # With the applied record on (the chaos soak's), each envelope refused whole is kept
    # by seq and reason, beside those applied.
    from collector.state import applied

    applied.install(store)
    ingestor.refusals = applied.record_refused
    ingestor.process([at(now + 3600, 5), at(now - 40 * 86400, 6), at(now, 7)])
    with store.reading() as db:
        assert applied.refusals(db) == {
            "dong-nai/la-nga/pc-01": {5: "clock_ahead", 6: "clock_behind"}
        }
        assert applied.applied_counts(db) == {"dong-nai/la-nga/pc-01": {7: 1}}
