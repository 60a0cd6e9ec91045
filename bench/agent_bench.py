"""Agent benchmark: memory, CPU per cycle, and backlog drain, with same-run baselines.

    .venv/bin/python bench/agent_bench.py [--cycles 10000] [--interval 0.05] [--backlog 26000]
    .venv/bin/python bench/agent_bench.py --pc-only [--pc-interval 0.05] [--baseline 8da2485]
                                          [--launcher]
    .venv/bin/python bench/agent_bench.py --signing-only

Starts a private Mosquitto, snmpd and a TCP listener on loopback, then:

0. the typical PC (bench/pc_agent.py): host, anti-malware, two ICMP line probes, MQTT
   over TLS with a password, the outbox, in a PC's install (the agent's runtime
   dependencies only), for a simulated day (1,440 cycles; the anti-malware check every
   10). Beside it, in the same window: the agent before the footprint work (a git
   worktree of ``--baseline``, same install, same profile) and Zabbix agent 2 asked for
   the same items at the same cadence (bench/zabbix_agent.py). Reported for each: RSS
   (and USS, PSS) after a warm-up hour, its growth over the day, peak, CPU per day (the
   day's cycles run back to back, and the time between checks, measured with the
   profile's real intervals for 20 s); the ratios to the target, to the agent before and
   to Zabbix, the import floor (Python and the libraries any agent of this profile
   loads) in the same install, where each process's RSS comes from (its smaps: the
   program, OpenSSL, SQLite, libc, malloc's heap, Python's arenas; shared file pages
   apart) and where the agent's goes (its imports, in groups).
   With ``--launcher`` each agent also runs as a PC runs it in production, under the
   self-update launcher (``commune-agent install-launcher``): a home laid out from its
   tree, the launcher run as its unit runs it, the config with the ``[update]`` section
   ``enroll`` writes; the agent the launcher started is measured, and the launcher's
   own memory said beside it.
   Targets: steady RSS <= 25 MB, growth < 1 MB a day.
1. runs ``commune-agent run`` with host, link (tcp) and snmp (snmpd) checks
   every ``--interval`` seconds for ``--cycles`` cycles (a cycle = every check
   ran once), sampling the process's RSS and CPU time. Baseline: the RSS of a
   Python process that only imports the agent's libraries (psutil, paho-mqtt,
   pysnmp, msgspec) — the floor any Python agent pays.
2. fills an outbox with ``--backlog`` envelopes (72 h of 6 checks at 60 s) and
   times an agent draining it into the broker until a subscriber has every
   one. Baseline: mosquitto_pub (C) publishing the same payloads at QoS 1 to
   the same broker, timed the same way.
3. what checking the collector's config signatures costs: the RSS of an enrolled
   agent that applied a signed config against the same agent with the same checks in
   its own file, and the import floor with and without ``cryptography``'s Ed25519,
   which the check loads in a process of its own (agent/sigcheck.py), not the agent.

Targets: steady RSS <= 40 MB, growth < 1 MB over the cycles, backlog <= 60 s.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent import wire  # noqa: E402
from agent.outbox import Outbox  # noqa: E402
from bench import pc_agent, zabbix_agent  # noqa: E402
from bench.pc_agent import DAY_CYCLES, Watch  # noqa: E402
from tests.servers import Mosquitto, Snmpd, stop_process  # noqa: E402

MB = 1024 * 1024


class Counter:
    """Counts data envelopes per check name as they arrive (QoS 1)."""

    def __init__(self, port: int, topic: str) -> None:
        self.per_check: dict[str, int] = {}
        self.total = 0
        self.seqs: set[int] = set()
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{time.time()}")
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.ready.wait(10)

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        envelope = wire.decode_envelope(bytes(message.payload))
        with self.lock:
            self.total += 1
            self.seqs.add(envelope.seq)
            for name in {s.name for s in envelope.samples}:
                self.per_check[name] = self.per_check.get(name, 0) + 1

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def tcp_listener() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    return server, server.getsockname()[1]


def agent_config(workdir: Path, port: int, interval: float, checks: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "agent.toml"
    path.write_text(
        f'[agent]\nprovince = "dong-nai"\ncommune = "la-nga"\nid = "bench"\n'
        f'interval = "{interval}s"\nstate_dir = "{workdir / "state"}"\nlog_level = "error"\n'
        f'[mqtt]\nurl = "mqtt://127.0.0.1:{port}"\ninflight = 200\n{checks}\n'
    )
    return path


def start_agent(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(config)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def import_rss(modules: str) -> float:
    """RSS of a Python process that has only imported ``modules`` (comma-separated)."""
    code = (
        f"import importlib, psutil\nfor m in {modules!r}.split(','): importlib.import_module(m)\n"
        "print(psutil.Process().memory_info().rss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout) / MB


AGENT_LIBRARIES = (
    "psutil,paho.mqtt.client,msgspec,sqlite3,asyncio,pysnmp.proto.api,pyasn1.codec.ber.decoder"
)
ENGINE_LIBRARIES = AGENT_LIBRARIES + ",pysnmp.hlapi.v3arch.asyncio"
#: What checking a config's signature loads (in agent/sigcheck.py's process, not the agent).
SIGNATURE_LIBRARIES = "cryptography.exceptions,cryptography.hazmat.primitives.asymmetric.ed25519"


def measure_memory(
    workdir: Path, broker: Mosquitto, snmpd: Snmpd, cycles: int, interval: float
) -> dict[str, float]:
    listener, port = tcp_listener()
    checks = (
        "[[checks.host]]\n"
        f'[[checks.link]]\nname = "lan"\nnetwork = "lan"\nmethod = "tcp"\ntarget = "127.0.0.1"\n'
        f"port = {port}\ncount = 1\n"
        f'[[checks.snmp]]\nname = "router"\nhost = "127.0.0.1"\nport = {snmpd.port}\n'
        'community = "public"\n'
    )
    config = agent_config(workdir, broker.port, interval, checks)
    counter = Counter(broker.port, "commune/+/+/+/data")
    agent = start_agent(config)
    process = psutil.Process(agent.pid)

    def completed() -> int:
        with counter.lock:
            names = ("host", "lan", "router")
            return min(counter.per_check.get(n, 0) for n in names)

    warmup = max(100, cycles // 50)
    started = time.monotonic()
    while completed() < warmup:
        time.sleep(0.2)
        if time.monotonic() - started > 300:
            raise RuntimeError("the agent did not warm up")
    steady_rss = process.memory_info().rss / MB
    cpu0 = sum(process.cpu_times()[:2])
    cycles0 = completed()
    t0 = time.monotonic()
    peak = steady_rss
    last_report = t0
    while completed() < cycles0 + cycles:
        time.sleep(0.5)
        rss = process.memory_info().rss / MB
        peak = max(peak, rss)
        if time.monotonic() - last_report > 30:
            last_report = time.monotonic()
            print(f"  … {completed() - cycles0}/{cycles} cycles, RSS {rss:.1f} MB", flush=True)
    elapsed = time.monotonic() - t0
    done = completed() - cycles0
    final_rss = process.memory_info().rss / MB
    cpu = sum(process.cpu_times()[:2]) - cpu0
    stop_process(agent)
    counter.stop()
    listener.close()
    return {
        "steady_rss_mb": steady_rss,
        "final_rss_mb": final_rss,
        "peak_rss_mb": peak,
        "growth_mb": final_rss - steady_rss,
        "cycles": done,
        "elapsed_s": elapsed,
        "cpu_ms_per_cycle": 1000 * cpu / done,
    }


def fill_backlog(workdir: Path, count: int, topic: str) -> list[bytes]:
    """``count`` envelopes as 6 checks at 60 s would leave over an outage."""
    box = Outbox(workdir / "state" / "outbox.sqlite", 10**9, 10**10)
    kinds = [("host", 8), ("antivirus", 5), ("link", 8), ("link", 8), ("snmp", 9), ("agent", 14)]
    start = time.time() - count * 10
    payloads: list[bytes] = []
    for n in range(count):
        kind, width = kinds[n % len(kinds)]
        ts = start + n * 10
        sample = wire.Sample(
            ts=ts,
            check=kind,
            name=f"{kind}-{n % 2}",
            outcome="ok",
            target="10.0.0.1",
            fields={f"field_{i}": float(i * n % 997) for i in range(width)},
            tags={"network": "tslcd"},
        )

        def make(seq: int, sample: wire.Sample = sample, ts: float = ts) -> bytes:
            envelope = wire.Envelope(
                v=1,
                agent="bench",
                province="dong-nai",
                commune="la-nga",
                seq=seq,
                ts=ts,
                samples=[sample],
            )
            payload = wire.encode(envelope)
            payloads.append(payload)
            return payload

        box.put(topic, make)
    box.close()
    return payloads


def wait_all(counter: Counter, count: int, limit: float = 600) -> float:
    started = time.monotonic()
    while True:
        with counter.lock:
            if len(counter.seqs) >= count:
                return time.monotonic() - started
        if time.monotonic() - started > limit:
            raise RuntimeError(f"only {len(counter.seqs)}/{count} arrived in {limit}s")
        time.sleep(0.02)


def wait_quiet(counter: Counter, quiet: float = 1.0) -> float:
    """Seconds until the last message arrived, once none has come for ``quiet`` seconds."""
    started = time.monotonic()
    last_total, last_change = -1, started
    while time.monotonic() - last_change < quiet:
        with counter.lock:
            total = counter.total
        if total != last_total:
            last_total, last_change = total, time.monotonic()
        time.sleep(0.02)
    return last_change - started


def paho_publish(port: int, topic: str, payloads: list[bytes], inflight: int) -> None:
    """A bare paho QoS 1 publisher: no outbox, no ordering bookkeeping."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare")
    client.max_inflight_messages_set(inflight)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(topic, payload, qos=1) for payload in payloads]
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


def measure_drain(workdir: Path, broker: Mosquitto, backlog: int) -> dict[str, float]:
    topic = "commune/dong-nai/la-nga/bench/data"
    payloads = fill_backlog(workdir, backlog, topic)
    size = sum(len(p) for p in payloads)

    # Ceiling: the C client publishing the same payloads at QoS 1; should it
    # exit with messages still in flight, its rate is taken over what arrived
    # and the rest is reported as lost.
    lines = workdir / "payloads.txt"
    lines.write_bytes(b"\n".join(payloads) + b"\n")
    counter = Counter(broker.port, topic)
    started = time.monotonic()
    with lines.open("rb") as stdin:
        command = ["mosquitto_pub", "-p", str(broker.port), "-q", "1", "-t", topic, "-l"]
        subprocess.run(command, stdin=stdin, check=True)
    c_seconds = max(time.monotonic() - started, wait_quiet(counter))
    c_arrived = len(counter.seqs)
    counter.stop()

    # Baseline: a bare paho publisher (Python, no outbox), same payloads and window.
    counter = Counter(broker.port, topic)
    started = time.monotonic()
    paho_publish(broker.port, topic, payloads, inflight=200)
    wait_all(counter, backlog)
    paho_seconds = time.monotonic() - started
    counter.stop()

    counter = Counter(broker.port, topic)
    agent = start_agent(agent_config(workdir, broker.port, 3600, ""))
    drain_s = wait_all(counter, backlog)
    stop_process(agent)
    counter.stop()
    return {
        "envelopes": backlog,
        "mb": size / MB,
        "agent_s": drain_s,
        "agent_rate": backlog / drain_s,
        "duplicates": counter.total - len(counter.seqs),
        "c_rate": c_arrived / c_seconds,
        "c_lost": backlog - c_arrived,
        "paho_s": paho_seconds,
        "paho_rate": backlog / paho_seconds,
    }


def settled_rss(process: subprocess.Popen[bytes], seconds: float) -> float:
    """The agent's RSS after ``seconds`` of running (the median of the last samples)."""
    watched = psutil.Process(process.pid)
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(watched.memory_info().rss / MB)
        time.sleep(0.2)
    return sorted(samples[-10:])[len(samples[-10:]) // 2]


def measure_signing(workdir: Path, broker: Mosquitto, seconds: float = 8.0) -> dict[str, float]:
    """RSS of two agents running host + link (tcp) every second: one from its own file
    (nothing loads cryptography), one enrolled, its checks from a signed config."""
    from tests.factories import central_config, trust

    checks = {"host": [{}], "link": [{"name": "gw", "network": "tslcd", "method": "tcp",
              "target": "127.0.0.1", "port": broker.port, "count": 1}]}  # fmt: skip
    local = agent_config(workdir / "local", broker.port, 1.0,
                         '[[checks.host]]\n[[checks.link]]\nname = "gw"\nnetwork = "tslcd"\n'
                         f'method = "tcp"\ntarget = "127.0.0.1"\nport = {broker.port}\n'
                         "count = 1\n")  # fmt: skip
    enrolled = agent_config(workdir / "enrolled", broker.port, 1.0, "[remote]\nenabled = true\n")
    trust(enrolled.parent)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-collector")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    payload = central_config(checks, version=1, interval=1.0, agent="bench")
    client.publish("commune/dong-nai/la-nga/bench/config", payload, qos=1, retain=True)
    result = {}
    for name, config in (("local", local), ("signed", enrolled)):
        process = start_agent(config)
        try:
            result[name] = settled_rss(process, seconds)
        finally:
            stop_process(process)
    cache = enrolled.parent / "state" / "central-config.json"
    if not cache.exists():
        raise RuntimeError("the enrolled agent did not apply the signed config")
    client.disconnect()
    client.loop_stop()
    return result


#: The checks that make a PC's cycle (the anti-malware check runs every 10 cycles).
PC_CYCLE = ("host", "tslcd-gateway", "tslcd-province")
#: A simulated hour: memory is "steady" after it.
WARMUP_CYCLES = 60
#: The typical PC's agent at most, steady (MB of RSS).
PC_TARGET_MB = 25.0


@dataclass(frozen=True)
class Way:
    """One agent of the run: the agent of a tree, as a service or under the launcher."""

    name: str
    tree: Path
    launcher: bool = False


class Started:
    """One agent started the ``Way`` says, with the office profile at ``interval``."""

    def __init__(
        self,
        way: Way,
        python: Path,
        workdir: Path,
        broker: pc_agent.TlsBroker,
        agent_id: str,
        interval: float,
        probes: int,
    ) -> None:
        self.way = way
        self.agent_id = agent_id
        folder = workdir / agent_id
        config = pc_agent.pc_config(folder, broker, agent_id, interval, probes, way.launcher)
        self.log = workdir / f"{agent_id}.log"
        self.launcher: psutil.Process | None = None
        if way.launcher:
            under = pc_agent.start_under_launcher(
                python, way.tree, config, self.log, folder / "home"
            )
            self.process = under.launcher
            self.agent = under.agent
            self.launcher = psutil.Process(under.launcher.pid)
        else:
            self.process = pc_agent.start_pc_agent(python, way.tree, config, self.log)
            self.agent = psutil.Process(self.process.pid)

    def running(self) -> bool:
        """The agent first started (an agent the launcher restarts is another process)."""
        return self.process.poll() is None and self.agent.is_running()

    def stop(self) -> None:
        stop_process(self.process)  # the launcher stops its agent
        if self.agent.is_running():
            self.agent.kill()


def measure_pc(workdir: Path, args: argparse.Namespace) -> list[Watch]:
    """The typical PC's agent (and the agent before, and Zabbix agent 2) over a day; with
    ``--launcher`` each agent also under the launcher, as a PC runs it in production."""
    broker = pc_agent.tls_broker(workdir / "tls")
    python = pc_agent.pc_python(workdir)
    floor = pc_agent.import_floor(python, pc_agent.FLOOR_MODULES, REPO)
    trees = [("agent", REPO)]
    if args.baseline != "none":
        trees.append((f"agent {args.baseline}", pc_agent.baseline_tree(args.baseline, workdir)))
    for _name, tree in trees:
        pc_agent.compile_modules(python, tree)
    ways = [Way(name, tree) for name, tree in trees]
    if args.launcher:
        for name, tree in trees:
            if pc_agent.can_run_under_launcher(tree):
                ways.append(Way(f"{name} (launcher)", tree, launcher=True))
            else:
                print(f"  ({name} has no launcher: measured as a service only)")
    counter = pc_agent.CycleCounter(broker.plain_port)
    listener, tcp_port = tcp_listener()
    agents: list[tuple[Watch, Started]] = []
    zabbix: tuple[Watch, subprocess.Popen[bytes], zabbix_agent.Poller] | None = None
    idle: list[Started] = []
    died: list[str] = []
    try:
        for n, way in enumerate(ways):
            started = Started(way, python, workdir, broker, f"bench-pc-{n}", args.pc_interval,
                              args.pc_probes)  # fmt: skip
            agents.append((Watch(way.name, started.agent), started))
        if zabbix_agent.installed():
            process, port = zabbix_agent.start(workdir / "zabbix")
            poller = zabbix_agent.Poller(port, args.pc_interval, tcp_port)
            zabbix = (Watch(zabbix_agent.version(), psutil.Process(process.pid)), process, poller)
        watches = [watch for watch, _ in agents] + ([zabbix[0]] if zabbix else [])
        limit = time.monotonic() + 120 + 3 * (WARMUP_CYCLES + args.pc_cycles) * args.pc_interval
        while not all(w.done for w in watches):
            time.sleep(0.5)
            for entry in list(agents):
                watch, started = entry
                cycles = counter.cycles(started.agent_id, PC_CYCLE)
                if started.running():
                    watch.sample(cycles, WARMUP_CYCLES, args.pc_cycles)
                    if started.launcher is not None and watch.steady and not watch.notes:
                        beside = pc_agent.memory(started.launcher)
                        watch.notes.append(f"the launcher beside it: RSS {beside.rss:.1f} MB,"
                                           f" USS {beside.uss:.1f}")  # fmt: skip
                    continue
                if entry is agents[0]:
                    raise RuntimeError(f"{watch.name} stopped: {started.log.read_text()[-2000:]}")
                # An agent before may die of what was fixed since: said, and left out.
                last = (started.log.read_text(errors="replace").strip().splitlines() or [""])[-1]
                died.append(f"{watch.name} died after {cycles} cycles"
                            f" (exit {started.process.returncode}): {last[-200:]}")  # fmt: skip
                agents.remove(entry)
                watches.remove(watch)
                ways.remove(started.way)
            if zabbix:
                zabbix[0].sample(zabbix[2].cycles, WARMUP_CYCLES, args.pc_cycles)
            if time.monotonic() > limit:
                raise RuntimeError("the simulated day did not end in time")
        for watch, started in agents:
            ran = counter.count(started.agent_id, "antivirus")
            watch.notes.append(f"anti-malware ran {ran} times")
        if zabbix and zabbix[2].failures:
            zabbix[0].notes.append(f"{zabbix[2].failures} items unanswered")
        for _watch, started in agents:
            started.stop()
        idle = measure_idle(workdir, broker, python, ways, counter, agents, zabbix, args)
        footprints = [pc_agent.footprint(python, way.tree, way.launcher) for way in ways]
    finally:
        if zabbix:
            zabbix[2].stop()
            stop_process(zabbix[1])
        for started in [started for _watch, started in agents] + idle:
            started.stop()
        counter.stop()
        listener.close()
        broker.stop()
        for _name, tree in trees[1:]:
            pc_agent.remove_tree(tree)
    for line in died:
        print(f"  {line}")
    report_pc(watches, floor)
    report_maps(watches)
    report_footprint([w for w, _ in agents], footprints)
    return watches


#: Seconds of an idle agent's CPU measured, between its first checks and its next ones.
IDLE_WINDOW_S = 20.0


def measure_idle(
    workdir: Path,
    broker: pc_agent.TlsBroker,
    python: Path,
    ways: list[Way],
    counter: pc_agent.CycleCounter,
    agents: list[tuple[Watch, Started]],
    zabbix: tuple[Watch, subprocess.Popen[bytes], zabbix_agent.Poller] | None,
    args: argparse.Namespace,
) -> list[Started]:
    """What each agent costs between checks, which the accelerated day leaves out: the
    agents at the profile's own intervals (60 s, 10 min) once their first checks are in,
    Zabbix agent 2 asked nothing, for ``IDLE_WINDOW_S``. Returns the agents started."""
    started = [
        Started(way, python, workdir, broker, f"bench-pc-idle-{n}", 60.0, args.pc_probes)
        for n, way in enumerate(ways)
    ]
    if zabbix:
        zabbix[2].stop()
    deadline = time.monotonic() + 60
    while any(counter.cycles(s.agent_id, PC_CYCLE) < 1 or counter.count(s.agent_id, "antivirus") < 1
              for s in started):  # fmt: skip
        if time.monotonic() > deadline:
            raise RuntimeError("the idle agents did not run their first checks")
        time.sleep(0.2)
    watched = [(w, s.agent) for (w, _), s in zip(agents, started, strict=True)]
    if zabbix:
        watched.append((zabbix[0], zabbix[0].process))
    before = [pc_agent.thread_cpu_seconds(process) for _w, process in watched]
    started_at = time.monotonic()
    time.sleep(IDLE_WINDOW_S)
    seconds = time.monotonic() - started_at
    for (watch, process), cpu0 in zip(watched, before, strict=True):
        watch.idle_cpu_per_s = (pc_agent.thread_cpu_seconds(process) - cpu0) / seconds
    return started


def report_pc(watches: list[Watch], floor: float) -> None:
    print(f"  {'':24} {'RSS':>7} {'USS':>7} {'PSS':>7} {'growth':>8} {'peak':>7}"
          f" {'CPU/day':>8} {'checks':>7} {'idle':>7} {'CPU/cycle':>9}")  # fmt: skip
    for w in watches:
        assert w.steady is not None
        print(
            f"  {w.name:24} {w.steady.rss:5.1f}MB {w.steady.uss:5.1f}MB {w.steady.pss:5.1f}MB"
            f" {w.growth:+6.2f}MB {w.peak_rss:5.1f}MB {w.cpu_per_day():7.1f}s"
            f" {w.checks_cpu_per_day():6.1f}s {w.idle_cpu_per_s * 86400:6.1f}s"
            f" {1000 * w.cpu / max(1, w.cycles):7.2f}ms"
            + (f"  ({'; '.join(w.notes)})" if w.notes else "")
        )
    agent = watches[0]
    assert agent.steady is not None
    rss = agent.steady.rss
    for other in watches[1:]:
        assert other.steady is not None
        print(f"  agent / {other.name}: RSS x{rss / other.steady.rss:.2f}, "
              f"USS x{agent.steady.uss / other.steady.uss:.2f}, "
              f"CPU x{agent.cpu_per_day() / max(1e-9, other.cpu_per_day()):.2f}")  # fmt: skip
    print(f"  import floor (Python + {pc_agent.FLOOR_MODULES}): {floor:.1f} MB;"
          f" agent / floor x{rss / floor:.2f}")  # fmt: skip
    for w in watches:
        print(f"  {w.name} RSS at the start and after each quarter (MB): "
              + " ".join(f"{m:.2f}" for m in w.marks))  # fmt: skip
    print(f"  steady RSS {rss:.1f} MB, agent / target x{rss / PC_TARGET_MB:.2f}"
          f" (target <= {PC_TARGET_MB:.0f}: {'met' if rss <= PC_TARGET_MB else 'missed'});"
          f" growth {agent.growth:+.2f} MB over {agent.cycles / DAY_CYCLES:.1f} day(s)"
          f" (target < 1: {'met' if agent.growth < 1 else 'missed'});"
          f" CPU {agent.cpu_per_day():.1f} s a day")  # fmt: skip


def report_maps(watches: list[Watch]) -> None:
    """Where each process's steady RSS comes from, by what its pages map."""
    print("  where the RSS comes from (MB resident at the steady point, from smaps; in"
          " brackets what of it is files' clean pages shared with other processes):")  # fmt: skip
    print(f"    {'':58}" + "".join(f"{w.name[:20]:>21}" for w in watches))
    for group in pc_agent.MAP_GROUPS:
        cells = [w.maps.get(group, (0.0, 0.0)) for w in watches]
        print(f"    {group:58}"
              + "".join(f"{mb:11.2f} ({shared:6.2f})" for mb, shared in cells))  # fmt: skip
    totals = [tuple(map(sum, zip(*w.maps.values(), strict=True))) for w in watches]
    print(f"    {'total':58}"
          + "".join(f"{mb:11.2f} ({shared:6.2f})" for mb, shared in totals))  # fmt: skip


def report_footprint(
    every_watch: list[Watch], every_footprint: list[list[tuple[str, float]] | None]
) -> None:
    """Where each agent's steady RSS goes: its imports in groups, then the rest."""
    pairs = [(w, f) for w, f in zip(every_watch, every_footprint, strict=True) if f is not None]
    if not pairs:
        return
    watches = [w for w, _ in pairs]
    footprints = [f for _, f in pairs]
    skipped = [w.name for w, f in zip(every_watch, every_footprint, strict=True) if f is None]
    print("  where the RSS goes (MB; imports loaded in this order into a fresh interpreter of the"
          " same install, a module counted in the first group that loads it; the last line is"
          " the steady RSS less them all):")  # fmt: skip
    if skipped:
        print(f"    (not for {', '.join(skipped)}: modules of another layout, said during the run)")
    print(f"    {'':46}" + "".join(f"{w.name:>16}" for w in watches))
    for row, (label, _mb) in enumerate(footprints[0]):
        print(f"    {label:46}" + "".join(f"{f[row][1]:16.2f}" for f in footprints))
    rest = []
    for watch, footprint in zip(watches, footprints, strict=True):
        assert watch.steady is not None
        rest.append(watch.steady.rss - sum(mb for _label, mb in footprint))
    print(f"    {'running: TLS session, outbox, threads, data':46}"
          + "".join(f"{mb:16.2f}" for mb in rest))  # fmt: skip
    print(f"    {'steady RSS':46}"
          + "".join(f"{w.steady.rss:16.2f}" for w in watches if w.steady))  # fmt: skip


def report_memory(memory: dict[str, float], floor: float) -> None:
    steady = memory["steady_rss_mb"]
    print(f"  steady RSS   {steady:.1f} MB (x{steady / floor:.2f} the import floor; target <= 40)")
    print(f"  final RSS    {memory['final_rss_mb']:.1f} MB, peak {memory['peak_rss_mb']:.1f} MB")
    print(
        f"  growth       {memory['growth_mb']:+.2f} MB over {memory['cycles']:.0f} cycles"
        f" ({memory['elapsed_s']:.0f} s; target < 1 MB)"
    )
    cpu = memory["cpu_ms_per_cycle"]
    print(f"  CPU          {cpu:.1f} ms per cycle (= {cpu / 600:.3f} % of a core at 60 s cycles)")


def report_drain(drain: dict[str, float]) -> None:
    print(
        f"  agent        {drain['agent_s']:.1f} s, {drain['agent_rate']:.0f} msg/s,"
        f" {drain['mb']:.1f} MB, duplicates {drain['duplicates']:.0f} (target <= 60 s)"
    )
    print(
        f"  bare paho    {drain['paho_s']:.1f} s, {drain['paho_rate']:.0f} msg/s (no outbox);"
        f" agent/bare = {drain['agent_rate'] / drain['paho_rate']:.2f}"
    )
    print(
        f"  C client     {drain['c_rate']:.0f} msg/s (mosquitto_pub, lost {drain['c_lost']:.0f}"
        f" at exit); agent/C = {drain['agent_rate'] / drain['c_rate']:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cycles", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--backlog", type=int, default=26_000)
    parser.add_argument("--signing-only", action="store_true", help="Only part 3.")
    parser.add_argument("--pc-only", action="store_true", help="Only part 0.")
    parser.add_argument("--pc-interval", type=float, default=0.05,
                        help="Seconds standing for the PC's 60 s cycle.")  # fmt: skip
    parser.add_argument("--pc-probes", type=int, default=1,
                        help="Echoes per line probe run (the profile's 3 need --pc-interval "
                             ">= 0.5: they are 0.2 s apart).")  # fmt: skip
    parser.add_argument("--pc-cycles", type=int, default=DAY_CYCLES,
                        help="Cycles measured after the warm-up hour (a day: 1440).")  # fmt: skip
    parser.add_argument("--baseline", default=pc_agent.BASELINE_REF,
                        help="The commit whose agent runs beside ('none': none).")  # fmt: skip
    parser.add_argument("--launcher", action="store_true",
                        help="Part 0: each agent also under the launcher, as a PC runs it in "
                             "production (its [update] section, its health file and order "
                             "follower).")  # fmt: skip
    args = parser.parse_args()
    if args.pc_only:
        with tempfile.TemporaryDirectory(prefix="commune-bench-") as tmp:
            run_pc(Path(tmp), args)
        return
    with tempfile.TemporaryDirectory(prefix="commune-bench-") as tmp:
        workdir = Path(tmp)
        # The counting subscriber is slower than the publishers: do not let the
        # broker drop its queue (the default cap is 1,000 QoS 1 messages).
        broker = Mosquitto(
            workdir / "mosquitto", extra="allow_anonymous true\nmax_queued_messages 0"
        ).start()
        snmpd = Snmpd(workdir / "snmpd").start()
        try:
            floor = import_rss(AGENT_LIBRARIES)
            signing = import_rss(AGENT_LIBRARIES + "," + SIGNATURE_LIBRARIES)
            print(f"signatures: the import floor {floor:.1f} MB, with cryptography's Ed25519 "
                  f"{signing:.1f} MB (+{signing - floor:.1f})")  # fmt: skip
            rss = measure_signing(workdir / "signing", broker)
            local, signed = rss["local"], rss["signed"]
            print(f"  an agent from its own file {local:.1f} MB RSS; enrolled, running a "
                  f"signed config {signed:.1f} MB (+{signed - local:.1f})")  # fmt: skip
            if args.signing_only:
                return
            run_pc(workdir / "pc", args)
            engine = import_rss(ENGINE_LIBRARIES)
            print(f"import floor: Python + the libraries this agent loads: {floor:.1f} MB RSS")
            print(f"  (with pysnmp's engine, as a v3 poller loads it: {engine:.1f} MB)")
            print(f"memory: {args.cycles} cycles of host + link + snmp every {args.interval}s")
            report_memory(
                measure_memory(workdir / "memory", broker, snmpd, args.cycles, args.interval),
                floor,
            )
            print(f"drain: a backlog of {args.backlog} envelopes")
            report_drain(measure_drain(workdir / "drain", broker, args.backlog))
        finally:
            snmpd.stop()
            broker.stop()


def run_pc(workdir: Path, args: argparse.Namespace) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    probes = f"{args.pc_probes} echo{'es' if args.pc_probes > 1 else ''}"
    print(f"typical PC: host, anti-malware, two ICMP line probes ({probes} a run), MQTT over"
          f" TLS, the outbox; {args.pc_cycles} cycles at {args.pc_interval}s after a warm-up"
          f" of {WARMUP_CYCLES}, in a PC's install")  # fmt: skip
    if not zabbix_agent.installed():
        print("  (zabbix_agent2 not installed: apt-get install zabbix-agent2 to compare)")
    measure_pc(workdir, args)


if __name__ == "__main__":
    main()
