"""Collector ingest benchmark: sustained rate, p99 latency, zero loss, CPU, RSS, store growth.

    .venv/bin/python bench/collector_bench.py [--rate 5000] [--seconds 30] [--communes 80]
    .venv/bin/python bench/collector_bench.py --national --seconds 180
    .venv/bin/python bench/collector_bench.py --communes 3321 --commit-path 30000 [--cycles 3]

Starts a private Mosquitto and VictoriaMetrics. Publisher processes play the
agents of ``--communes`` simulated communes (``fleet.scenario``: 49 PCs and a
poller each, one envelope per check run with its realistic samples) and write
pre-encoded QoS 1 packets at ``--rate`` messages/s in total for ``--seconds``;
``--national`` is 3,321 communes at their real rate (60 s cycles);
``--tls`` runs the broker's listener with the TLS settings of
``deploy/mosquitto/mosquitto.conf`` (a test CA made for the run), the publishers,
the collector and the ceiling's subscriber connecting over it. Before the clock
starts, one cycle of every agent is committed through the same path without the
broker (``--no-warm`` skips it), its points written to the time-series server
before the clock starts too, so that what is measured is the steady state of a
collector that knows its agents and of a server that knows their series, not the
first sight of each (VictoriaMetrics creating ~40,000 series a second took most of
a core from the shared two; "series new to the server" says how many the run made). The
collector's path as ``commune-collector run`` wires it runs in this process
(MqttSource -> Ingestor -> StateStore + alert rules + spool, and its housekeeping
rounds every 10 s: silent agents, the agent and commune rules), with the sink in
its own process writing to VictoriaMetrics; every message is committed before
it is acknowledged. The health model's facts follow the commits as in `run`: the
read process's feed and the read process itself (warmed before the clock starts,
asked nothing), or with ``--reads collector`` the collector's own model, warm, as
``[api] read_process = false`` runs.

Reported: the commit path alone (no broker); messages/s and samples/s
committed (from the first commit to the last); loss (broker-acknowledged
minus committed); points written; publish-to-commit latency p50/p99; CPU of
the collector (and of its ingest and network threads), of its read process and of
its sink process;
RSS; the store's size and growth per day at the offered rate (pages in use but
the spool's, from the end of the first measured cycle, or from half-time without the
warm-up, to the end); and, in the same run, the drain rate of ``mosquitto_sub`` (C,
QoS 1) from the same broker under the same publishers at full speed, as the ceiling.

``--commit-path AGENTS`` measures the commit path alone, quicker and steadier than
the whole run: a store of ``--communes`` warmed as above (its 833,000 latest rows
for the country), then ``--cycles`` more cycles of AGENTS of its agents committed
in batches of 500 (decode, state, alert rules, spool; no broker, no sink), each a
minute after the last: CPU (the thread's) and wall time per message. From the fifth
cycle the subjects' newest observations held behind are written as in a steady hour
(every five minutes, ``collector/state/heldsubjects.py``): ``--cycles 10`` or more
measures that too.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import multiprocessing
import os
import queue
import resource
import select
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.configtypes import BrokerSection  # noqa: E402
from collector.alerts.engine import AlertEngine  # noqa: E402
from collector.alerts.rules import default_rules  # noqa: E402
from collector.common.gctuning import pace_for_ingest  # noqa: E402
from collector.config import ApiSection  # noqa: E402
from collector.ingest import codec  # noqa: E402
from collector.ingest.ingestor import Ingestor, Message  # noqa: E402
from collector.ingest.source import MqttSource, SourceSettings  # noqa: E402
from collector.outputs.sink import SinkSettings  # noqa: E402
from collector.outputs.sink_process import SinkProcess  # noqa: E402
from collector.outputs.spool import Spool  # noqa: E402
from collector.state.factsfeed import FactsFeed  # noqa: E402
from collector.state.housekeeping import Housekeeping, Task, mark_silent  # noqa: E402
from collector.state.livehealth import LiveHealth  # noqa: E402
from collector.state.store import StateStore  # noqa: E402
from collector.web.readprocess import ReadProcess, ReadSettings  # noqa: E402
from fleet.scenario import Fleet  # noqa: E402
from tests.servers import Mosquitto, VictoriaMetrics, broker_readable  # noqa: E402
from tests.tls import make_pki  # noqa: E402

NATIONAL_COMMUNES = 3321
ENVELOPES_PER_CYCLE = 3
"""Each simulated agent sends one envelope per check: 3 checks."""


class RawPublisher:
    """An MQTT 3.1.1 QoS 1 publisher that writes pre-encoded packets in bulk.

    Thousands of simulated agents from one process: paho's per-message cost
    (~40 µs) would make the load generator, not the collector, the bottleneck of a
    2-core machine. Counts what the broker acknowledged (PUBACK): the zero-loss
    figure compares committed messages with these.
    """

    def __init__(self, port: int, client_id: str, ca: Path | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        if ca is not None:
            context = ssl.create_default_context(cafile=str(ca))
            self.sock = context.wrap_socket(self.sock, server_hostname="localhost")
        self.reader = codec.PacketReader(protocol=4)
        self.sock.sendall(codec.connect(client_id, keepalive=0, clean_start=True, protocol=4))
        connack = self._read(block=True)
        assert connack and isinstance(connack[0], codec.Ack) and connack[0].reasons == (0,)
        self.sock.setblocking(False)
        self.sent = self.acked = 0

    def _read(self, block: bool = False) -> list[codec.Packet]:
        try:
            data = self.sock.recv(1 << 20)
        except (BlockingIOError, ssl.SSLWantReadError):
            if not block:
                return []
            raise
        if not data:
            raise ConnectionError("the broker closed the publisher's connection")
        return self.reader.feed(data)

    def publish(self, messages: list[tuple[str, bytes, bool]]) -> None:
        # Packet ids are 16 bits: never more than 60,000 unacknowledged at once.
        while self.sent - self.acked > 60_000 - len(messages):
            self.collect_acks(0.01)
        packets = []
        for topic, payload, retain in messages:
            self.sent += 1
            packets.append(
                codec.publish(topic, payload, (self.sent % 0xFFFF) + 1, 1, retain, protocol=4)
            )
        self.sock.setblocking(True)
        self.sock.sendall(b"".join(packets))
        self.sock.setblocking(False)
        self.collect_acks(0)

    def collect_acks(self, timeout: float) -> None:
        if timeout:
            select.select([self.sock], [], [], timeout)
        while True:
            packets = self._read()
            if not packets:
                return
            self.acked += sum(1 for p in packets if isinstance(p, codec.Ack))

    def finish(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.acked < self.sent and time.monotonic() < deadline:
            self.collect_acks(0.1)
        self.sock.setblocking(True)
        self.sock.sendall(codec.DISCONNECT_PACKET)
        self.sock.close()


#: Seqs the warm-up's one cycle may use per agent (a poller's envelopes are the most).
WARM_SEQS = 1000


def publisher_fleet(index: int, agents: int) -> Fleet:
    """The simulated communes of publisher ``index``."""
    # Communes of 49 PCs and a poller: each agent's cycle is 3 envelopes, one per check.
    # No line outages here: held-back envelopes would measure the outage, not the collector.
    communes = [f"c{index}-{i:04d}" for i in range(max(1, agents // 50))]
    return Fleet("dong-nai", communes, 49, seed=index + 1, outages_per_day=0)


def publish(
    port: int,
    index: int,
    agents: int,
    rate: float,
    seconds: float,
    done: multiprocessing.Queue[tuple[int, int]],
    ca: Path | None = None,
    finish_s: float = 300.0,
) -> None:
    """One publisher process: its own simulated communes, agents in turn, at ``rate`` msg/s;
    then up to ``finish_s`` for the broker's last acknowledgements."""
    fleet = publisher_fleet(index, agents)
    for agent in fleet.agents:
        # Past the warm-up's cycle (the same agents, played in the collector's process):
        # an envelope of a seq the store applied already is taken for a redelivery, and
        # its points are not written again.
        agent.seq = WARM_SEQS
    publisher = RawPublisher(port, f"bench-pub-{index}", ca)
    cursor = 0
    started = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= seconds:
            break
        due = int(elapsed * rate) if rate else publisher.sent + 3000
        batch: list[tuple[str, bytes, bool]] = []
        now = time.time()
        while publisher.sent + len(batch) < due:
            agent = fleet.agents[cursor % len(fleet.agents)]
            cursor += 1
            batch += fleet.cycle(agent, now)
        if batch:
            publisher.publish(batch)
        if rate:
            time.sleep(0.005)
    publisher.finish(finish_s)
    done.put((publisher.sent, publisher.acked))


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


def run_publishers(
    port: int,
    count: int,
    agents: int,
    rate: float,
    seconds: float,
    ca: Path | None = None,
    finish_s: float = 300.0,
) -> int:
    """Messages the broker acknowledged, from ``count`` processes sharing ``agents``; with
    ``finish_s`` under the default (the ceiling's flood), what was not acknowledged by
    then is not waited for nor held against the run."""
    done: multiprocessing.Queue[tuple[int, int]] = multiprocessing.Queue()
    processes = [
        multiprocessing.Process(
            target=publish,
            args=(port, i, agents // count, rate / count, seconds, done, ca, finish_s),
        )
        for i in range(count)
    ]
    for process in processes:
        process.start()
    results: list[tuple[int, int]] = []
    deadline = time.monotonic() + seconds + finish_s + 100
    while len(results) < count:
        try:
            results.append(done.get(timeout=1))
        except queue.Empty:
            failed = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            if failed or time.monotonic() > deadline:
                raise RuntimeError(f"publishers failed or stalled (exit codes {failed})") from None
    for process in processes:
        process.join()
    sent = sum(sent for sent, _ in results)
    acked = sum(acked for _, acked in results)
    if finish_s >= 300.0:
        assert acked == sent, f"the broker acknowledged {acked} of {sent} published"
    return acked


def live_bytes(path: Path) -> int:
    """The state store's pages in use, but the sink's spool's (drained, then reused):
    counted from the file's header, the spool's pages alone walked, so that a reading
    in the middle of a run costs the collector nothing (walking every page, as this
    did, took a core for a second there: a latency peak of the benchmark's own)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        (free,) = db.execute("PRAGMA freelist_count").fetchone()
        (size,) = db.execute("PRAGMA page_size").fetchone()
        (spool,) = db.execute(
            "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name = 'spool'"
        ).fetchone()
    return int((pages - free) * size - spool)


def drained(store: StateStore, deadline: float) -> int:
    """Wait until the sink has written the spool (or ``deadline``, monotonic): rows left."""
    while (left := Spool(store).stats().rows) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def memory_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time of this process, or of another one (the sink's) from /proc."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_seconds() -> dict[str, float]:
    """CPU time of each of this process's Python threads, by name, from /proc."""
    found: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:  # ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found[thread.name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def warm(store: StateStore, publishers: int, agents: int, at: float | None = None) -> int:
    """One cycle of every agent the publishers play, committed without the broker a
    minute before they start (or ``at``): the collector knows them (their rows exist),
    as it does in any steady hour. Messages committed."""
    ingestor = Ingestor(store, "commune")
    at = time.time() - 60 if at is None else at
    count = 0
    for index in range(publishers):
        fleet = publisher_fleet(index, agents // publishers)
        batch: list[Message] = []
        for agent in fleet.agents:
            batch += [Message(topic, payload, at) for topic, payload, _ in fleet.cycle(agent, at)]
            if len(batch) >= 1000:
                ingestor.process(batch)
                count += len(batch)
                batch = []
        ingestor.process(batch)
        count += len(batch)
    return count


def measure_collector(
    workdir: Path,
    broker: Mosquitto,
    rate: float,
    seconds: float,
    publishers: int,
    agents: int,
    ca: Path | None = None,
    warm_up: bool = True,
    reads: str = "process",
) -> dict[str, float]:
    vm = VictoriaMetrics(workdir / "vm").start()
    pace_for_ingest()  # as `run` sets the garbage collector
    path = workdir / "state.sqlite"
    store = StateStore(path)
    # The built-in alert rules evaluate every batch in its transaction, as in `run`.
    engine = AlertEngine(default_rules())
    engine.install(store)
    # The health model's facts follow every commit, as `run` wires them: the read
    # process's feed, then the collector's own model (its last observer).
    feed = FactsFeed() if reads == "process" else None
    if feed is not None:
        store.observers.append(feed.observe)
        store.watchers.append(feed)
    reader = StateStore(path)
    health = LiveHealth(reader)
    health.install(store)
    # The spool and the sink (in its own process, as `commune-collector run` starts it)
    # before the warm-up: its points reach the time-series server, which then knows the
    # country's series as in any steady hour. Written only during the measured run, every
    # point was a new series to it (VictoriaMetrics: ~40,000 a second at 1.5 x, most of a
    # core, taken from the collector on the shared cores).
    Spool(store).attach()
    sink = SinkProcess(path, SinkSettings(vm.url, "", "bench", "commune", batch_rows=2000))
    sink.start()
    sink_began = time.monotonic()
    warmed = 0
    if warm_up:
        started = time.monotonic()
        warmed = warm(store, publishers, agents)
        print(
            f"  warm-up    {warmed} messages, one cycle of every agent, committed in "
            f"{time.monotonic() - started:.0f} s (not measured)",
            flush=True,
        )
    read_process = None
    if feed is not None:
        # Once it is warm, the collector's own model holds nothing (`run` forgets it).
        read_process = ReadProcess(feed)
        read_process.start(ReadSettings(str(path), (), ApiSection(listen="127.0.0.1:0"), None))
        started = time.monotonic()
        while not read_process.warmed:
            if not read_process.running:
                raise SystemExit("the read process ended while warming")
            time.sleep(0.1)
        print(f"  read process (pid {read_process.pid}) warmed in "
              f"{time.monotonic() - started:.0f} s (not measured)",
              flush=True)  # fmt: skip
    elif reads == "collector":
        started = time.monotonic()
        health.warm()  # as `run` does at start with `read_process = false`
        print(f"  the collector's model warmed in {time.monotonic() - started:.0f} s",
              flush=True)  # fmt: skip
    if left := drained(store, time.monotonic() + 600):
        raise SystemExit(f"the warm-up's points not written after 600 s ({left} rows left)")
    if warm_up:
        print(f"  time-series server: the warm-up's {sink.stats.points_written} points written "
              f"{time.monotonic() - sink_began:.0f} s after the sink started (not measured; "
              f"{known if (known := vm_new_series(vm)) is not None else 'unknown'} series)",
              flush=True)  # fmt: skip
    gc.freeze()  # as `run` does once warm: what start built is left out of every pass
    ingestor = MeasuredIngestor(store, "commune")
    scheme, host = ("mqtts", "localhost") if ca else ("mqtt", "127.0.0.1")
    source = MqttSource(
        SourceSettings(
            BrokerSection(url=f"{scheme}://{host}:{broker.port}", ca_file=str(ca or "")),
            client_id="bench-collector",
        ),
        ingestor,
    )
    # The rounds `run` makes every 10 s beside ingest: silent agents, the agent and
    # commune rules over every agent.
    tasks = [
        Task("silence", mark_silent(store, 3.0, 60.0)),
        Task("alerts", lambda now: engine.tick(store, now)),
    ]
    if reads == "collector":  # the read process refreshes its own figures
        tasks.append(Task("health figures", lambda _: health.refresh()))
    housekeeping = Housekeeping(tasks)
    if warm_up:
        # A collector that has run a while has made its first round, which reads every
        # agent and commune (~1 s for the country, beside ingest); the later ones read
        # what changed. Made in the measured run, it was a stall at its start.
        housekeeping.run()
    stop = threading.Event()

    def rounds_every_10_s() -> None:
        while not stop.wait(10.0):
            housekeeping.run()

    rounds = threading.Thread(target=rounds_every_10_s, daemon=True)
    source.start()
    assert source.connected.wait(10)
    rounds.start()
    # Store growth is read from the end of the first measured cycle (each agent's first
    # envelope rewrites its row once: its seqs jump past the warm-up's) or, without the
    # warm-up, from half-time (by then every agent has reported): what grows after that
    # grows every day.
    first_cycle_end_s = warmed / rate + 5
    growth_from_s = (
        first_cycle_end_s if warmed and first_cycle_end_s < 0.9 * seconds else seconds / 2
    )
    growth_start: list[tuple[int, int]] = []
    started, cpu_started = time.time(), cpu_seconds()
    sink_started, points_started = cpu_seconds(sink.pid), sink.stats.points_written
    new_series_started = vm_new_series(vm)
    reads_pid = None if read_process is None else read_process.pid
    reads_started = 0.0 if reads_pid is None else cpu_seconds(reads_pid)
    threads_started = thread_seconds()
    measuring_cpu: list[float] = []

    def at_growth_start() -> None:
        # The benchmark's own reading of the store: not the collector's.
        started_cpu = time.thread_time()
        growth_start.append((ingestor.stats.applied_envelopes, live_bytes(path)))
        measuring_cpu.append(time.thread_time() - started_cpu)

    timer = threading.Timer(growth_from_s, at_growth_start)
    timer.start()
    published = run_publishers(broker.port, publishers, agents, rate, seconds, ca)
    deadline = time.monotonic() + 300
    while ingestor.stats.applied_envelopes < published and time.monotonic() < deadline:
        time.sleep(0.1)
    timer.join()
    cpu_used = cpu_seconds() - cpu_started - sum(measuring_cpu)
    if feed is not None:
        feed.flush()  # what the read process has still to follow is its cost too
    reads_cpu = 0.0 if reads_pid is None else cpu_seconds(reads_pid) - reads_started
    threads = {name: cpu - threads_started.get(name, 0.0) for name, cpu in thread_seconds().items()}
    spool_left = drained(store, deadline)
    sink_cpu = cpu_seconds(sink.pid) - sink_started
    sink_done = time.time()
    new_series_now = vm_new_series(vm)
    new_series = (  # -1: not known
        -1
        if new_series_now is None or new_series_started is None
        else new_series_now - new_series_started
    )
    stop.set()
    rounds.join()
    source.stop()
    sink.stop()
    if read_process is not None:
        read_process.stop()
    points = sink.stats.points_written - points_started
    health.close()
    reader.close()
    store.close()
    vm.stop()
    # From the first commit: starting the publisher processes is not the collector's time.
    span = ingestor.last_commit - ingestor.first_commit
    lat = sorted(ingestor.latencies)
    committed = ingestor.stats.applied_envelopes
    grown = live_bytes(path) - growth_start[0][1]
    per_message = grown / max(1, committed - growth_start[0][0])
    return {
        "published": published,
        "committed": committed,
        "rate": committed / span,
        "samples_rate": ingestor.samples / span,
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))],
        "rejected": sum(ingestor.stats.rejected.values()),
        "points": points,
        "sink_rate": points / (sink_done - started),
        "new_series": new_series,
        "spool_left": spool_left,
        "cpu_cores": cpu_used / span,
        "ingest_cores": threads.get("ingest", 0.0) / span,
        "network_cores": threads.get("mqtt", 0.0) / span,
        "sink_cpu_cores": sink_cpu / (sink_done - started),
        "reads_cpu_cores": reads_cpu / span,
        # CPU a message committed: what a run that fell behind (a busy machine) still
        # compares by.
        "cpu_us": 1e6 * cpu_used / committed,
        "ingest_us": 1e6 * threads.get("ingest", 0.0) / committed,
        "network_us": 1e6 * threads.get("mqtt", 0.0) / committed,
        "sink_us": 1e6 * sink_cpu / committed,
        "reads_us": 1e6 * reads_cpu / committed,
        "feed_us": 1e6 * threads.get("facts-feed", 0.0) / committed,
        "rss_mib": memory_kib("VmRSS") / 1024,
        "peak_rss_mib": memory_kib("VmHWM") / 1024,
        "store_mib": live_bytes(path) / 2**20,
        "growth_per_message": per_message,
        "growth_from_s": growth_from_s,
    }


def measure_in_process(workdir: Path, cycles: int = 5) -> float:
    """The commit path alone (decode, state, alert rules, spool), no broker: messages/s."""
    store = StateStore(workdir / "in-process.sqlite")
    AlertEngine(default_rules()).install(store)
    Spool(store).attach()
    ingestor = Ingestor(store, "commune")
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


def measure_commit_path(
    workdir: Path, communes: int, agents: int, cycles: int, batch: int = 500
) -> dict[str, float]:
    """The commit path alone on a store of ``communes`` (warmed as ``measure_collector``
    warms it: its latest rows, subjects and alert states exist), no broker nor sink:
    ``cycles`` more cycles of ``agents`` of them in batches of ``batch`` messages, CPU
    (this thread's) and wall time per message."""
    pace_for_ingest()
    store = StateStore(workdir / "commit-path.sqlite")
    AlertEngine(default_rules()).install(store)
    Spool(store).attach()
    # The warm-up's cycle and each measured one a minute apart, the last a minute ago:
    # from the fifth, the subjects' newest observations held since the first are due
    # to be written (``state/heldsubjects.py``), as in any steady hour.
    started, warmed_at = time.monotonic(), time.time() - 60 * (cycles + 1)
    warmed = warm(store, 2, communes * 50, at=warmed_at)
    print(
        f"  warm-up    {warmed} messages in {time.monotonic() - started:.0f} s (not measured)",
        flush=True,
    )
    gc.freeze()
    ingestor = Ingestor(store, "commune")
    fleets = [publisher_fleet(index, communes * 50 // 2) for index in range(2)]
    # A slice of every publisher's agents: the rows they touch are spread over the store.
    chosen = [
        (fleet, agent)
        for fleet in fleets
        for agent in fleet.agents[: max(1, agents // len(fleets))]
    ]
    cpu = wall = 0.0
    total = 0
    for cycle in range(cycles):
        at = warmed_at + 60 * (cycle + 1)
        messages = [
            Message(topic, payload, at + 1)
            for fleet, agent in chosen
            for topic, payload, _ in fleet.cycle(agent, at)
        ]
        wall_started, cpu_started = time.perf_counter(), time.thread_time()
        for i in range(0, len(messages), batch):
            ingestor.process(messages[i : i + batch])
        cpu += time.thread_time() - cpu_started
        wall += time.perf_counter() - wall_started
        total += len(messages)
    rejected = sum(ingestor.stats.rejected.values())
    assert not rejected, f"{rejected} messages rejected"
    store.close()
    return {"messages": total, "cpu_us": 1e6 * cpu / total, "wall_us": 1e6 * wall / total}


def measure_ceiling(
    broker: Mosquitto, seconds: float, publishers: int, agents: int, ca: Path | None = None
) -> float:
    drained = Path(tempfile.mkdtemp()) / "drained"
    command = [
        "mosquitto_sub",
        *(["--cafile", str(ca), "-h", "localhost"] if ca else []),
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
        # Over TLS the full-speed publishers outrun the broker, which queued 1.3 GB once and
        # took minutes to acknowledge it all: the ceiling is what was drained in a bound.
        published = run_publishers(broker.port, publishers, agents, 0, seconds, ca, finish_s=30)
        deadline = time.monotonic() + 120
        lines = 0
        while time.monotonic() < deadline:
            lines = drained.read_bytes().count(b"\n")
            if lines >= published:
                break
            time.sleep(0.1)
        elapsed = time.time() - started
        sub.terminate()
        try:
            sub.wait(10)
        except subprocess.TimeoutExpired:  # over TLS it was seen to ignore SIGTERM for minutes
            sub.kill()
            sub.wait()
    return lines / elapsed


def tls_listener(workdir: Path) -> tuple[Path, str]:
    """A test CA for the run, and the TLS lines of the shipped broker config's listener
    (files, protocol version, ciphers) with its files in their place (the broker's user
    must read them)."""
    pki = make_pki(workdir / "pki")
    ca, cert, key = broker_readable(pki.ca, pki.server_cert, pki.server_key)
    files = {"cafile": ca, "certfile": cert, "keyfile": key}
    shipped = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    start = shipped.index("listener 8883") + 1
    lines = []
    for line in shipped[start:]:
        if not line.strip() or line.startswith("listener"):
            break
        option = line.split()[0]
        # Its TLS alone: the bench's clients have no accounts (use_username_as_clientid).
        if not option.startswith(("cafile", "certfile", "keyfile", "tls_", "ciphers")):
            continue
        lines.append(f"{option} {files[option]}" if option in files else line)
    return pki.ca, "\n".join(lines) + "\n"


def vm_new_series(vm: VictoriaMetrics) -> int | None:
    """Series VictoriaMetrics has created since it started (its own counter): each costs
    it an index entry, many times a point's work. None: a version without the counter."""
    with urllib.request.urlopen(f"{vm.url}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("vm_new_timeseries_created_total "):
                return int(float(line.split()[1]))
    return None


def report(result: dict[str, float], rate: float) -> None:
    lost = result["published"] - result["committed"]
    print(
        f"  committed  {result['committed']:.0f} of {result['published']:.0f} published "
        f"(lost {lost:.0f}, rejected {result['rejected']:.0f})"
    )
    print(f"  sustained  {result['rate']:.0f} msg/s, {result['samples_rate']:.0f} samples/s")
    print(
        f"  sink       {result['points']:.0f} points written to VictoriaMetrics "
        f"({result['sink_rate']:.0f} points/s over the run; "
        f"left in spool {result['spool_left']:.0f}; series new to the server "
        f"{'unknown' if result['new_series'] < 0 else format(result['new_series'], '.0f')})"
    )
    print(
        f"  latency    publish to commit: p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms"
    )
    print(
        f"  collector  {result['cpu_cores']:.2f} cores of CPU (its ingest thread "
        f"{result['ingest_cores']:.2f}, network thread {result['network_cores']:.2f}; its sink "
        f"process {result['sink_cpu_cores']:.2f}); RSS {result['rss_mib']:.0f} MiB "
        f"(peak {result['peak_rss_mib']:.0f} MiB, with the benchmark's own bookkeeping)"
    )
    print(
        f"  cpu/msg    collector {result['cpu_us']:.1f} us (ingest thread "
        f"{result['ingest_us']:.1f}, network thread {result['network_us']:.1f}), sink "
        f"{result['sink_us']:.1f} us a message committed"
    )
    if result["reads_us"]:
        cores = result["cpu_cores"] + result["reads_cpu_cores"] + result["sink_cpu_cores"]
        print(
            f"  reads      the read process following the commits (no request): "
            f"{result['reads_cpu_cores']:.2f} cores, {result['reads_us']:.1f} us a message (the "
            f"collector's feed thread {result['feed_us']:.1f} us); "
            f"collector + read process + sink {cores:.2f} cores"
        )
    per_day = result["growth_per_message"] * rate * 86400 / 2**20
    print(
        f"  store      {result['store_mib']:.0f} MiB of state; grows "
        f"{result['growth_per_message']:.1f} bytes/message = {per_day:.0f} MiB/day at "
        f"{rate:.0f} msg/s (from {result['growth_from_s']:.0f} s to the end; pruned after "
        "[store] retention)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=5000, help="messages/s offered")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument(
        "--communes", type=int, default=80, help="simulated communes (49 PCs and a poller each)"
    )
    parser.add_argument(
        "--national",
        action="store_true",
        help="3,321 communes at 60 s cycles: the rate is what they send (~8,300 msg/s)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="over TLS, the listener set as deploy/mosquitto/mosquitto.conf sets it",
    )
    parser.add_argument(
        "--no-warm",
        dest="warm",
        action="store_false",
        help="measure from an empty store (every series seen for the first time)",
    )
    parser.add_argument(
        "--commit-path",
        type=int,
        metavar="AGENTS",
        default=0,
        help="measure only the commit path (no broker, no sink) on a store of --communes "
        "(warmed), AGENTS of them sending --cycles cycles: CPU and wall us per message",
    )
    parser.add_argument("--cycles", type=int, default=3, help="with --commit-path")
    parser.add_argument(
        "--reads",
        choices=("process", "collector"),
        default="process",
        help="where the health model's facts follow the commits: a read process fed by "
        "the collector (`run`'s default), or the collector's own model, warm "
        "([api] read_process = false)",
    )
    args = parser.parse_args()
    if args.national:
        args.communes = NATIONAL_COMMUNES
        args.rate = NATIONAL_COMMUNES * 50 * ENVELOPES_PER_CYCLE / 60
    agents = args.communes * 50
    if args.commit_path:
        with tempfile.TemporaryDirectory(prefix="commune-bench-") as tmp:
            print(
                f"commit path: a store of {args.communes} communes ({agents} agents), "
                f"{args.commit_path} of them for {args.cycles} cycles",
                flush=True,
            )
            found = measure_commit_path(Path(tmp), args.communes, args.commit_path, args.cycles)
            print(
                f"  commit     {found['messages']:.0f} messages: {found['cpu_us']:.1f} us CPU, "
                f"{found['wall_us']:.1f} us wall a message",
                flush=True,
            )
        return
    with tempfile.TemporaryDirectory(prefix="commune-bench-") as tmp:
        unbounded = "allow_anonymous true\nmax_queued_messages 0"
        ca, listener = tls_listener(Path(tmp)) if args.tls else (None, "")
        broker = Mosquitto(Path(tmp) / "broker", extra=unbounded, listener_options=listener).start()
        try:
            print(
                f"collector: {args.communes} communes ({agents} agents), "
                f"{args.publishers} publishers, {args.rate:.0f} msg/s for {args.seconds:.0f} s"
                + (", over TLS" if ca else ""),
                flush=True,
            )
            in_process = measure_in_process(Path(tmp))
            print(f"  in-process commit path (no broker): {in_process:.0f} msg/s", flush=True)
            result = measure_collector(
                Path(tmp),
                broker,
                args.rate,
                args.seconds,
                args.publishers,
                agents,
                ca,
                args.warm,
                args.reads,
            )
            report(result, args.rate)
            print("ceiling: mosquitto_sub (C, QoS 1), same publishers at full speed", flush=True)
            ceiling = measure_ceiling(broker, min(args.seconds, 15), args.publishers, agents, ca)
            print(
                f"  drain      {ceiling:.0f} msg/s; "
                f"collector / ceiling = {result['rate'] / ceiling:.2f}"
            )
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
