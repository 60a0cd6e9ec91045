"""An envelope delivered twice reaches VictoriaMetrics once: through the real path
(an agent's publisher, Mosquitto, the collector, its sink, VictoriaMetrics).

The outbox sends an envelope again when its PUBACK was lost; the broker delivers it
again when the collector died between its commit and its acknowledgement. Either way
the collector applies the same (agent, seq) twice, harmlessly for its state; spooled
twice, VictoriaMetrics (no deduplication by default) kept the point twice.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent import wire
from collector.outputs.spool import WAITING
from tests.factories import envelope, link
from tests.servers import CollectorProcess, Mosquitto, VictoriaMetrics, wait_for


def _settled(state: Path, last_seq: int) -> bool:
    if not state.exists():
        return False
    db = sqlite3.connect(f"{state.resolve().as_uri()}?mode=ro", uri=True)
    try:
        agent = db.execute("SELECT last_seq FROM agents").fetchone()
        waiting = db.execute(WAITING).fetchone()[0]
    except sqlite3.OperationalError:  # the collector is still making the store
        return False
    finally:
        db.close()
    return agent is not None and agent[0] == last_seq and waiting == 0


def test_an_envelope_published_twice_is_one_point_in_victoriametrics(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    vm = VictoriaMetrics(tmp_path / "vm").start()
    collector = CollectorProcess(
        tmp_path / "collector", broker.port, sink_url=vm.url, store="ledger = true"
    ).start()
    t0 = float(int(time.time()) // 60 * 60 - 3600)
    seqs = range(1000, 1004)
    payloads = [wire.encode(envelope(seq, link(t0 + 60 * (seq - 1000)))) for seq in seqs]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pc-01")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        wait_for(lambda: "subscribed to" in collector.log, 30, "the collector subscribed")
        topic = "commune/dong-nai/la-nga/pc-01/data"
        # 1001 sent again after a lost PUBACK, 1002 again much later (a rewind).
        for payload in [payloads[0], payloads[1], payloads[1], payloads[2], payloads[3]]:
            client.publish(topic, payload, qos=1).wait_for_publish(10)
        client.publish(topic, payloads[2], qos=1).wait_for_publish(10)
        wait_for(lambda: _settled(collector.state, seqs[-1]), 60, "the collector applied all")
        # The sink has sent everything it spooled: the export is complete.
        series = vm.export('{__name__="link_up"}')
        with contextlib.closing(sqlite3.connect(collector.state)) as db:
            rows = db.execute("SELECT seq, applied FROM applied_envelopes ORDER BY seq")
            counts = rows.fetchall()
    finally:
        client.loop_stop()
        collector.stop()
        vm.stop()
        broker.stop()
    assert counts == [(1000, 1), (1001, 2), (1002, 2), (1003, 1)]
    [only] = series
    assert only["timestamps"] == [int((t0 + 60 * i) * 1000) for i in range(4)]
