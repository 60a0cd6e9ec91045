"""Collector ingest benchmark: sustained rate, p99 latency, zero loss, broker ceiling.

    .venv/bin/python bench/collector_bench.py [--rate 5000] [--seconds 30] [--publishers 2]

Starts a private Mosquitto. Publisher processes play agents with the fleet
simulator (``fleet.scenario``; 2,000 agents per process: 40 communes x 49 PCs
and a poller, one envelope per check run with its realistic samples) and publish
at QoS 1 at ``--rate`` messages/s in total for ``--seconds``. The collector's ingest
path (MqttSource -> Ingestor -> StateStore + alert rules + spool -> Sink ->
VictoriaMetrics, as ``commune-collector run`` with a sink) runs in this process; every message is
committed, with its points spooled, before it is acknowledged.
Reported: messages/s and samples/s committed, points written to the sink,
end-to-end latency (publish to commit) p50/p99, loss (published minus
committed), and, in the same run, the
drain rate of ``mosquitto_sub`` (C, QoS 1) from the same broker under the same
publishers at full speed, as the ceiling.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from collector.alerts.engine import AlertEngine  # noqa: E402
from collector.alerts.rules import default_rules  # noqa: E402
from collector.ingest import Ingestor, Message  # noqa: E402
from collector.mqtt_source import MqttSource, SourceSettings  # noqa: E402
from collector.sink import Sink  # noqa: E402
from collector.store import StateStore  # noqa: E402
from fleet.scenario import Fleet  # noqa: E402
from tests.servers import Mosquitto, VictoriaMetrics  # noqa: E402

AGENTS_PER_PUBLISHER = 2000


def publish(
    port: int, index: int, rate: float, seconds: float, done: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    """One publisher process: its own simulated communes, agents in turn, at ``rate`` msg/s."""
    # 40 communes x (49 PCs + a poller): each agent's cycle is 3 envelopes, one per check.
    # No line outages here: held-back envelopes would measure the outage, not the collector.
    communes = [f"c{index}-{i:02d}" for i in range(AGENTS_PER_PUBLISHER // 50)]
    fleet = Fleet("dong-nai", communes, 49, seed=index + 1, outages_per_day=0)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{index}")
    # No client-side window: paho's own queueing behind a full window stalled long runs.
    client.max_inflight_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    sent = 0
    cursor = 0
    started = time.monotonic()
    infos = []
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= seconds:
            break
        due = int(elapsed * rate) if rate else sent + 200
        while sent < due:
            agent = fleet.agents[cursor % len(fleet.agents)]
            cursor += 1
            for topic, payload, _ in fleet.cycle(agent, time.time()):
                infos.append(client.publish(topic, payload, qos=1))
                sent += 1
        time.sleep(0.005)
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()
    done.put(sent)


class MeasuredIngestor(Ingestor):
    """The real ingestor, also noting each envelope's publish-to-commit delay."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.latencies: list[float] = []
        self.samples = 0
        self.first_commit = 0.0
        self.last_commit = 0.0

    def process(self, batch: list[Message]) -> None:  # type: ignore[override]
        super().process(batch)
        now = time.time()
        self.first_commit = self.first_commit or now
        self.last_commit = now
        for message in batch:
            self.samples += message.payload.count(b'"check":')
            # The envelope's ts is when it was published (see publish()).
            start = message.payload.find(b'"ts":') + 5
            end = message.payload.find(b",", start)
            self.latencies.append(now - float(message.payload[start:end]))


def run_publishers(port: int, count: int, rate: float, seconds: float) -> int:
    done: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    processes = [
        multiprocessing.Process(target=publish, args=(port, i, rate / count, seconds, done))
        for i in range(count)
    ]
    for process in processes:
        process.start()
    total = sum(done.get(timeout=seconds + 180) for _ in processes)
    for process in processes:
        process.join()
    return total


def measure_collector(
    workdir: Path, broker: Mosquitto, rate: float, seconds: float, publishers: int
) -> dict[str, float]:
    vm = VictoriaMetrics(workdir / "vm").start()
    store = StateStore(workdir / "state.sqlite")
    # The built-in alert rules evaluate every batch in its transaction, as in `run`.
    AlertEngine(default_rules()).install(store)
    ingestor = MeasuredIngestor(store, "commune", spool=True)
    sink = Sink(store, vm.url, token="", org="bench", bucket="commune", batch_rows=2000)
    source = MqttSource(
        SourceSettings(host="127.0.0.1", port=broker.port, client_id="bench-collector"), ingestor
    )
    sink.start()
    source.start()
    assert source.connected.wait(10)
    started = time.time()
    published = run_publishers(broker.port, publishers, rate, seconds)
    deadline = time.monotonic() + 120
    while ingestor.stats.applied_envelopes < published and time.monotonic() < deadline:
        time.sleep(0.1)
    while store.spool_stats()[0] and time.monotonic() < deadline:
        time.sleep(0.1)
    sink_done = time.time()
    spool_left = store.spool_stats()[0]
    source.stop()
    sink.stop()
    store.close()
    vm.stop()
    span = ingestor.last_commit - started
    lat = sorted(ingestor.latencies)
    return {
        "published": published,
        "committed": ingestor.stats.applied_envelopes,
        "rate": ingestor.stats.applied_envelopes / span,
        "samples_rate": ingestor.samples / span,
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))],
        "rejected": sum(ingestor.stats.rejected.values()),
        "points": sink.stats.points_written,
        "sink_rate": sink.stats.points_written / (sink_done - started),
        "spool_left": spool_left,
    }


def measure_in_process(workdir: Path, cycles: int = 5) -> float:
    """The commit path alone (decode, state, alert rules, spool), no broker: messages/s."""
    store = StateStore(workdir / "in-process.sqlite")
    AlertEngine(default_rules()).install(store)
    ingestor = Ingestor(store, "commune", spool=True)
    fleet = Fleet("dong-nai", [f"c{i:03d}" for i in range(40)], 49, seed=9, outages_per_day=0)
    now = time.time() - cycles * 60
    total, elapsed = 0, 0.0
    for cycle in range(cycles):
        at = now + 60 * cycle
        batch = [
            Message(topic, payload, at, lambda: None)
            for agent in fleet.agents
            for topic, payload, _ in fleet.cycle(agent, at)
        ]
        started = time.perf_counter()
        for i in range(0, len(batch), 500):
            ingestor.process(batch[i : i + 500])
        elapsed += time.perf_counter() - started
        total += len(batch)
    store.close()
    return total / elapsed


def measure_ceiling(broker: Mosquitto, seconds: float, publishers: int) -> float:
    drained = Path(tempfile.mkdtemp()) / "drained"
    command = [
        "mosquitto_sub",
        "-p",
        str(broker.port),
        "-q",
        "1",
        "-t",
        "commune/#",
        "-i",
        "bench-ceiling",
        "-F",
        "%t",
    ]
    with drained.open("wb") as out:
        sub = subprocess.Popen(command, stdout=out)
        time.sleep(1)
        started = time.time()
        published = run_publishers(broker.port, publishers, 0, seconds)
        deadline = time.monotonic() + 120
        lines = 0
        while time.monotonic() < deadline:
            lines = drained.read_bytes().count(b"\n")
            if lines >= published:
                break
            time.sleep(0.1)
        elapsed = time.time() - started
        sub.terminate()
        sub.wait()
    return lines / elapsed


def report(result: dict[str, float]) -> None:
    lost = result["published"] - result["committed"]
    print(
        f"  committed  {result['committed']:.0f} of {result['published']:.0f} published "
        f"(lost {lost:.0f}, rejected {result['rejected']:.0f})"
    )
    print(f"  sustained  {result['rate']:.0f} msg/s, {result['samples_rate']:.0f} samples/s")
    print(
        f"  sink       {result['points']:.0f} points written to VictoriaMetrics "
        f"({result['sink_rate']:.0f} points/s over the run; "
        f"left in spool {result['spool_left']:.0f})"
    )
    print(
        f"  latency    publish to commit: p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--seconds", type=float, default=30)
    # Two publisher processes reach the target on 2 cores; more only compete for them.
    parser.add_argument("--publishers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="commune-bench-") as tmp:
        unbounded = "allow_anonymous true\nmax_queued_messages 0"
        broker = Mosquitto(Path(tmp) / "broker", extra=unbounded).start()
        try:
            print(
                f"collector: {args.publishers} publishers, {args.rate:.0f} msg/s "
                f"for {args.seconds:.0f} s",
                flush=True,
            )
            in_process = measure_in_process(Path(tmp))
            print(f"  in-process commit path (no broker): {in_process:.0f} msg/s", flush=True)
            result = measure_collector(Path(tmp), broker, args.rate, args.seconds, args.publishers)
            report(result)
            print("ceiling: mosquitto_sub (C, QoS 1), same publishers at full speed", flush=True)
            ceiling = measure_ceiling(broker, min(args.seconds, 15), args.publishers)
            print(
                f"  drain      {ceiling:.0f} msg/s; "
                f"collector / ceiling = {result['rate'] / ceiling:.2f}"
            )
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
