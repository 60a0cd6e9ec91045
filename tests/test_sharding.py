"""Two collectors side by side on one broker, sharded by province, writing to one
VictoriaMetrics: each province's state is whole and only there; no point is lost or
counted twice."""

from __future__ import annotations

import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent import wire
from agent.wire import Envelope, Sample
from collector.outputs.spool import Spool
from collector.state.store import StateStore
from tests.servers import CollectorProcess, Mosquitto, VictoriaMetrics

N = 200  # envelopes per agent


def payload(province: str, commune: str, agent: str, seq: int, t0: float) -> bytes:
    sample = Sample(
        ts=t0 + 60 * seq,
        check="link",
        name="tslcd",
        outcome="ok",
        target="10.75.0.1",
        fields={"up": 1, "rtt_ms": float(seq)},
        tags={"network": "tslcd"},
    )
    envelope = Envelope(
        v=1,
        agent=agent,
        province=province,
        commune=commune,
        seq=seq,
        ts=sample.ts,
        samples=[sample],
    )
    return wire.encode(envelope)


def test_two_collectors_sharded_by_province(tmp_path: Path) -> None:
    broker = Mosquitto(
        tmp_path / "broker", extra="allow_anonymous true\nmax_queued_messages 100000"
    ).start()
    vm = VictoriaMetrics(tmp_path / "vm").start()
    shards = {
        province: CollectorProcess(
            tmp_path / province,
            broker.port,
            sink_url=vm.url,
            client_id=f"collector-{province}",
            extra=f'provinces = ["{province}"]',
        ).start()
        for province in ("dong-nai", "binh-duong")
    }
    agents = [
        ("dong-nai", "la-nga", "pc-01"),
        ("dong-nai", "phu-hoa", "pc-01"),
        ("binh-duong", "thu-dau-mot", "pc-01"),
    ]
    t0 = float(int(time.time()) // 60 * 60 - 2 * 86400)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="agents")
    publisher.max_inflight_messages_set(0)
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    try:
        time.sleep(1.0)
        infos = [
            publisher.publish(f"commune/{p}/{c}/{a}/data", payload(p, c, a, seq, t0), qos=1)
            for seq in range(N)
            for p, c, a in agents
        ]
        for info in infos:
            info.wait_for_publish(30)

        def settled() -> bool:
            for shard in shards.values():
                store = StateStore(shard.state)
                try:
                    done = (
                        all(a.last_seq == N - 1 for a in store.agents())
                        and not Spool(store).stats().rows
                    )
                    count = len(store.agents())
                finally:
                    store.close()
                if not done or count == 0:
                    return False
            return True

        deadline = time.monotonic() + 60
        while not settled() and time.monotonic() < deadline:
            time.sleep(0.3)
        seen = {}
        for province, shard in shards.items():
            store = StateStore(shard.state)
            seen[province] = sorted(a.agent_key for a in store.agents())
            store.close()
        series = vm.export('{__name__="link_rtt_ms"}')
    finally:
        publisher.loop_stop()
        for shard in shards.values():
            shard.stop()
        vm.stop()
        broker.stop()
    assert seen == {
        "dong-nai": ["dong-nai/la-nga/pc-01", "dong-nai/phu-hoa/pc-01"],
        "binh-duong": ["binh-duong/thu-dau-mot/pc-01"],
    }
    # One series per agent, every point once: no province written twice, none lost.
    assert sorted(s["metric"]["province"] for s in series) == [  # type: ignore[index]
        "binh-duong",
        "dong-nai",
        "dong-nai",
    ]
    for s in series:
        assert s["values"] == [float(seq) for seq in range(N)]
