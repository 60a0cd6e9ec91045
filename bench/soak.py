"""The chaos soak: every envelope any agent created is in the store and the time series
exactly once, or counted as dropped by the outbox's bounds — under kills, partitions,
full disks, clock jumps, broker restarts and agent updates rolled back (issue 26).

    python bench/soak.py --seed 7 --minutes 60          # the long soak
    python bench/soak.py --seed 7 --minutes 5 --short   # every fault once, a few hundred agents
    python bench/soak.py --seed 7 --short --faults kill_vm@30+20,kill_sink@40  # these only

What runs: Mosquitto as deploy/mosquitto/dynsec.conf ships it (as its own user), the
collector with its sink and its store on a small filesystem of its own, VictoriaMetrics,
real ``commune-agent run`` processes probing TCP and HTTP services the soak takes down and
up, a few agents under the launcher (updated from the collector's signed releases, and
rolled back), and the fleet simulator's PCs sending through the agent's own outbox and
publisher (bench/soakfleet.py). Each commune's agents are in a network namespace of their
own, and so is the collector with its sink (bench/soaknet.py). The nemesis
(bench/nemesis.py) acts from the seed's schedule and writes what it did to truth.jsonl;
at the end the soak heals everything, lets every outbox drain, and hands the run to the
checker (fleet/soakcheck.py).

Runs as root (namespaces, mounts); everything it makes is removed when it ends, even when
it fails. The same seed replays the same schedule (not the same interleaving: the
machine's timing differs from run to run).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import random
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.update.state import Home
from bench import nemesis, soaknet
from bench.nemesis import Fault, TargetOutage, Truth
from bench.soakprocs import (
    ADMIN_TOKEN,
    LIBFAKETIME,
    AgentSpec,
    Broker,
    Collector,
    LaunchedAgent,
    Managed,
    Mount,
    ProbedTarget,
    RealAgent,
    SimGroup,
    VictoriaMetricsProcess,
    children,
    peak_rss_kib,
    wait_until,
)
from collector.outputs.spool import WAITING

log = logging.getLogger("soak")
PROVINCE = "dong-nai"
#: Per real commune: a TCP service (a link check) and an HTTP one (a system check).
TARGETS = (("gw", "link"), ("portal", "system"))
#: Clock jumps: within the collector's max_clock_ahead (300 s), so that the samples are
#: still taken; further would be refused by design (reason clock_ahead), not lost.
JUMP_AHEAD_S, JUMP_BACK_S = 120, -60
#: The agents run under the launcher, in the second real commune: the ones an update
#: and its rollback reach (no targets: a version switch is not an outage).
LAUNCHED = ("pc-upd-1", "pc-upd-2")
#: The version they are installed with; the n-th update rolls out 26.n.0 (the checkout
#: as it is, to be committed) then 26.n.1 (which crashes once started, to be rolled back).
FIRST_VERSION = "26.0.0"
#: How long an update may take to be decided on every agent it reaches (s).
UPDATE_TIMEOUT = 600.0


@dataclass
class Options:
    seed: int
    minutes: float
    run_dir: Path
    real_communes: int = 3
    agents_per_commune: int = 4
    sim_communes: int = 4
    sim_per_commune: int = 60
    interval: float = 2.0
    """The real agents' probe interval (s)."""
    sim_interval: float = 10.0
    short: bool = False
    only: tuple[str, ...] = ()
    """Replay only these kinds of the seed's schedule, at their times (a failure's
    shortest schedule); the soak ends 30 s after the last of them."""
    faults: tuple[Fault, ...] | None = None
    """These faults instead of the seed's (a failure's shortest schedule written out,
    ``--faults``); the soak ends 30 s after the last of them."""

    @classmethod
    def short_mode(cls, seed: int, run_dir: Path, minutes: float = 5.0) -> Options:
        return cls(seed, minutes, run_dir, 3, 4, 4, 60, 2.0, 10.0, short=True)

    @classmethod
    def long_mode(cls, seed: int, run_dir: Path, minutes: float) -> Options:
        # A few dozen real agents, 600 of the simulator's: what two busy cores carry.
        return cls(seed, minutes, run_dir, 5, 5, 8, 75, 2.0, 15.0)


@dataclass
class Commune:
    slug: str
    net: soaknet.CommuneNet
    targets: soaknet.Targets | None = None
    ports: list[int] = field(default_factory=list)
    agents: list[RealAgent] = field(default_factory=list)
    launched: list[LaunchedAgent] = field(default_factory=list)
    group: SimGroup | None = None


class Soak:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.root = options.run_dir
        self.root.mkdir(parents=True, exist_ok=True)
        self.ledger = self.root / "ledger"
        self.truth = Truth(self.root / "truth.jsonl")
        self.events = Truth(self.root / "events.jsonl")
        self.rng = random.Random(options.seed)
        self.mounts: list[Mount] = []
        self.communes: list[Commune] = []
        self.sim_communes: list[Commune] = []
        self.specs: list[AgentSpec] = []
        self.held: set[int] = set()
        """Processes the nemesis keeps down: the supervisor leaves them be."""
        self.locks: dict[str, threading.Lock] = {}
        self.stopping = threading.Event()
        self.peaks: dict[str, int] = {}
        self.started = 0.0
        self.host = soaknet.HostAddress()
        self.netem = False
        self.broker: Broker | None = None
        self.vm: VictoriaMetricsProcess | None = None
        self.collector: Collector | None = None
        self.collector_net: soaknet.CommuneNet | None = None
        self.updates = 0
        """Updates done (each rolls out versions of its own)."""
        self.clock_agent: RealAgent | None = None
        self.disk_agent: RealAgent | None = None
        self.store_fs: Mount | None = None
        self.agent_fs: Mount | None = None
        self.threads: list[threading.Thread] = []
        self._outages: list[TargetOutage] = []

    # set-up ------------------------------------------------------------------------

    def lock(self, name: str) -> threading.Lock:
        return self.locks.setdefault(name, threading.Lock())

    def start(self) -> None:
        from tests.tls import make_pki

        soaknet.remove_leftovers()
        self.netem = soaknet.netem_available()
        self.host.up()
        pki = make_pki(self.root / "pki",
                       server_ips=(soaknet.BROKER_ADDRESS, soaknet.COLLECTOR_ADDRESS))  # fmt: skip
        self.pki = pki
        self.store_fs = self.mount("store-fs", (512 if not self.options.short else 256) << 20)
        self.agent_fs = self.mount("agent-fs", 8 << 20)
        self.broker = Broker(self.root, pki)
        self.broker.start()
        # Where the collector's namespace reaches it.
        self.vm = VictoriaMetricsProcess(self.root, soaknet.BROKER_ADDRESS)
        self.vm.start()
        self.collector_net = soaknet.CommuneNet(soaknet.COLLECTOR_INDEX)
        self.collector_net.create()
        self.collector = Collector(
            self.root, self.store_fs.path, pki, self.broker, self.vm.url, self.root / "releases",
            self.collector_net.prefix(), soaknet.COLLECTOR_ADDRESS,
        )  # fmt: skip
        self.make_releases()
        self.collector.start()
        self.wait_healthy(120)
        self.make_communes()
        self.enroll_all()
        for commune in self.communes:
            for agent in [*commune.agents, *commune.launched]:
                agent.start()
        for commune in self.sim_communes:
            assert commune.group is not None
            commune.group.start()
        self.started = time.time()

    def make_releases(self) -> None:
        """The release manager's part, before the collector starts: the keys (offline in
        life: here in the run's folder), the repository, and the version the launched
        agents are installed with."""
        from collector.release import keys as keyfiles

        assert self.collector is not None
        keys = self.root / "release-keys"
        keys.mkdir()
        keyfiles.generate(keys / "root.key", "root")
        keyfiles.generate(keys / "targets.key", "targets")
        self.collector.cli("release", "init", "--root-key", str(keys / "root.key"),
                           "--targets-key", str(keys / "targets.key"))  # fmt: skip
        self.add_releases(FIRST_VERSION)

    def add_releases(self, *versions: str, crashing: str = "") -> None:
        """``versions`` built from this checkout, ``crashing`` from it changed to crash
        once started (its self-check passes), signed with the targets key and added."""
        from tests.update_home import CRASH_AT_START, build_bundles

        assert self.collector is not None
        bundles = self.root / "bundles"
        build_bundles(bundles, list(versions), {crashing: CRASH_AT_START} if crashing else {})
        key = str(self.root / "release-keys" / "targets.key")
        for version in (*versions, *([crashing] if crashing else [])):
            bundle = str(bundles / f"commune-agent-{version}.zip")
            self.collector.cli("release", "add", bundle, "--key", key)

    def mount(self, name: str, size: int) -> Mount:
        made = Mount(self.root / name, size).mount()
        self.mounts.append(made)
        return made

    def make_communes(self) -> None:
        o = self.options
        index = 1
        for number in range(o.real_communes):
            net = soaknet.CommuneNet(index)
            net.create()
            index += 1
            commune = Commune(f"real-{number + 1:02d}", net)
            commune.targets = soaknet.Targets(net.name).start()
            commune.ports = [commune.targets.open() for _ in TARGETS]
            self.communes.append(commune)
        for number in range(o.sim_communes):
            net = soaknet.CommuneNet(index)
            net.create()
            index += 1
            self.sim_communes.append(Commune(f"sim-{number + 1:02d}", net))

    def api(self, method: str, path: str, body: dict[str, object] | None = None,
            token: str = ADMIN_TOKEN) -> tuple[int, object]:  # fmt: skip
        assert self.collector is not None
        request = urllib.request.Request(
            self.collector.api + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
        )  # fmt: skip
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if body is not None:
            request.add_header("Content-Type", "application/json")
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        try:
            with urllib.request.urlopen(request, timeout=20, context=context) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except (OSError, ValueError) as exc:
            return 0, str(exc)

    def healthy(self) -> bool:
        status, body = self.api("GET", "/healthz", token="")
        if status not in (200, 503) or not isinstance(body, dict):
            return False
        return bool(body.get("detail", {}).get("parts", {}).get("broker") == "ok")

    def wait_healthy(self, timeout: float) -> float | None:
        """When the collector is in with the broker again (None: not within ``timeout``)."""
        return time.time() if wait_until(self.healthy, timeout, 0.5) else None

    def enroll_all(self) -> None:
        from agent import enroll as enrolling

        o = self.options
        env = {"COMMUNE_MONITOR_LEDGER": str(self.ledger)}
        for commune, sim in [(c, False) for c in self.communes] + [
            (c, True) for c in self.sim_communes
        ]:
            count = o.sim_per_commune if sim else o.agents_per_commune
            names = [f"pc-{i + 1:02d}" for i in range(count)]
            if not sim and commune is self.communes[0]:
                names += ["pc-clock", "pc-disk"]  # their own faults, no targets
            if not sim and commune is self.communes[1 % len(self.communes)]:
                names += list(LAUNCHED)
            status, made = self.api("POST", "/api/v1/enrollment/tokens", {
                "province": PROVINCE, "commune": commune.slug, "profile": "office",
                "uses": len(names), "ttl_s": 3600.0, "allow_replace": True,
            })  # fmt: skip
            assert status == 201 and isinstance(made, dict), (status, made)
            entries = []
            for name in names:
                password = enrolling.new_password()
                answer = enrolling.request(
                    self.collector.api + "/api/v1/enroll" if self.collector else "",
                    str(made["token"]), name, password, replace=True, commune=commune.slug,
                    ca_file=str(self.pki.ca),
                )  # fmt: skip
                home = self.root / "agents" / commune.slug / name
                state = home / "state"
                if name == "pc-disk":  # its outbox on a filesystem the nemesis fills
                    assert self.agent_fs is not None
                    state = self.agent_fs.path / name
                home.mkdir(parents=True, exist_ok=True)
                state.mkdir(exist_ok=True)
                secret = home / "mqtt-password"
                secret.write_text(password)
                spec = AgentSpec(PROVINCE, commune.slug, name, answer.username, secret,
                                 answer.broker_url, home, state)  # fmt: skip
                self.specs.append(spec)
                if name in LAUNCHED:
                    commune.launched.append(self.launched_agent(spec, commune, answer.config_keys,
                                                                env))  # fmt: skip
                    continue
                entries.append(spec)
            if sim:
                spec_file = self.root / "agents" / f"{commune.slug}.json"
                spec_file.write_text(json.dumps({
                    "interval": o.sim_interval, "seed": o.seed, "ca_file": str(self.pki.ca),
                    "max_age": 72 * 3600, "max_size": 64 << 20,
                    "agents": [{"province": s.province, "commune": s.commune, "agent": s.agent,
                                "username": s.username, "password_file": str(s.password_file),
                                "broker_url": s.broker_url, "state_dir": str(s.state_dir)}
                               for s in entries],
                }))  # fmt: skip
                commune.group = SimGroup(spec_file, commune.net.prefix(), env)
                continue
            for spec in entries:
                special = spec.agent in ("pc-clock", "pc-disk")
                probed = [] if special else [
                    ProbedTarget(check, kind, self.target_name(kind, port), port)
                    for (check, kind), port in zip(TARGETS, commune.ports, strict=True)
                ]  # fmt: skip
                agent = RealAgent(spec, commune.net.prefix(), self.pki.ca, probed, o.interval,
                                  env=dict(env))  # fmt: skip
                if spec.agent == "pc-clock":
                    if not Path(LIBFAKETIME).exists():
                        # Preloading a missing library only warns: the clock would not move.
                        raise RuntimeError(f"{LIBFAKETIME} missing: apt-get install faketime")
                    agent.faketime = spec.home / "faketime"
                    agent.faketime.write_text("+0\n")
                    self.clock_agent = agent
                if spec.agent == "pc-disk":
                    self.disk_agent = agent
                commune.agents.append(agent)

    def launched_agent(self, spec: AgentSpec, commune: Commune, config_keys: list[str],
                       env: dict[str, str]) -> LaunchedAgent:  # fmt: skip
        """An agent's home as ``install-launcher`` leaves it (the launcher, the first
        version committed), the collector's release root trusted by ``commune-agent
        update-root fetch`` run in the commune's namespace (so that a commune that cannot
        reach the collector's API fails the soak here, not its update), its config
        signing key as enrollment writes it."""
        from agent.configkeys import decode_public_key, key_file_text
        from tests.servers import REPO
        from tests.update_home import new_home

        assert self.collector is not None
        home = new_home(spec.home / "home", self.root / "bundles", FIRST_VERSION)
        fetched = subprocess.run(
            [*commune.net.prefix(), sys.executable, "-m", "agent.cli", "update-root", "fetch",
             "--home", str(home.root), "--collector", self.collector.api,
             "--ca", str(self.pki.ca)],
            check=False, capture_output=True, text=True, cwd=REPO, timeout=120,
        )  # fmt: skip
        if fetched.returncode != 0:
            raise RuntimeError(f"{spec.key}: update-root fetch: {fetched.stderr[-1000:]}")
        config_key = spec.home / "config-key.pub"
        keys = [decode_public_key(k) for k in config_keys]
        config_key.write_text(key_file_text(keys, "the collector, at enrollment"))
        return LaunchedAgent(spec, commune.net.prefix(), self.pki.ca, home.root,
                             f"{self.collector.api}/releases", config_key, self.options.interval,
                             env=dict(env))  # fmt: skip

    @staticmethod
    def target_name(kind: str, port: int) -> str:
        """The target as the agent's check names it in its samples."""
        return "127.0.0.1" if kind == "link" else f"http://127.0.0.1:{port}/"

    # the run --------------------------------------------------------------------------

    def processes(self) -> list[Managed]:
        found: list[Managed] = [p for p in (self.broker, self.vm, self.collector) if p]
        for commune in self.communes:
            found += commune.agents
            found += commune.launched
        found += [c.group for c in self.sim_communes if c.group is not None]
        return found

    def supervise(self) -> None:
        """Like systemd's Restart=always: whatever dies unasked is started again (and said)."""
        while not self.stopping.wait(1.0):
            for process in self.processes():
                if id(process) in self.held or process.alive:
                    if process.pid is not None:
                        key = process.name
                        self.peaks[key] = max(self.peaks.get(key, 0), peak_rss_kib(process.pid))
                    continue
                code = process.process.returncode if process.process else None
                self.events.write({"kind": "exit", "process": process.name, "code": code,
                                   "at": time.time()})  # fmt: skip
                log.warning("%s exited (%s) unasked; starting it again", process.name, code)
                with contextlib.suppress(Exception):
                    process.start()

    def chaos(self, faults: list[Fault], outages: list[TargetOutage], window: float) -> None:
        self.events.write({"kind": "schedule", "faults": [vars(f) for f in faults],
                           "targets": [vars(t) for t in outages]})  # fmt: skip
        supervisor = threading.Thread(target=self.supervise, name="supervisor", daemon=True)
        supervisor.start()
        targets = threading.Thread(target=self.play_targets, args=(outages,), daemon=True)
        targets.start()
        for fault in sorted(faults, key=lambda f: f.at):
            if self.sleep_until(fault.at):
                break
            thread = threading.Thread(target=self.play, args=(fault,), name=fault.kind)
            thread.start()
            self.threads.append(thread)
        self.sleep_until(window)
        for thread in self.threads:
            thread.join()
        targets.join()
        self.stopping.set()
        supervisor.join()

    def sleep_until(self, offset: float) -> bool:
        """Until ``offset`` seconds into the soak; True if the soak is being stopped."""
        return self.stopping.wait(max(0.0, self.started + offset - time.time()))

    def play_targets(self, outages: list[TargetOutage]) -> None:
        """Each outage as scheduled; written to the truth once it ended."""
        events = sorted([(o.start, 0, o) for o in outages] + [(o.end, 1, o) for o in outages],
                        key=lambda e: (e[0], e[1]))  # fmt: skip
        began: dict[tuple[int, int], float] = {}
        for at, ending, outage in events:
            if self.sleep_until(at):
                break
            commune = self.communes[outage.commune]
            assert commune.targets is not None
            port = commune.ports[outage.target]
            if not ending:
                commune.targets.down(port)
                began[(outage.commune, outage.target)] = time.time()
                continue
            commune.targets.up(port)
            self.record_outage(
                commune, outage.target, began.pop((outage.commune, outage.target)), time.time()
            )
        for (number, target), start in began.items():  # stopped mid-outage: up again
            commune = self.communes[number]
            assert commune.targets is not None
            commune.targets.up(commune.ports[target])
            self.record_outage(commune, target, start, time.time())

    def record_outage(self, commune: Commune, target: int, start: float, end: float) -> None:
        check, kind = TARGETS[target]
        for agent in commune.agents:
            if agent.targets:
                self.truth.target_down(
                    agent.spec.key, check, self.target_name(kind, commune.ports[target]), start, end
                )

    def play(self, fault: Fault) -> None:
        try:
            getattr(self, f"do_{fault.kind}")(fault)
        except Exception as exc:  # one fault failing must not stop the soak: said, counted
            log.exception("fault %s failed", fault.kind)
            self.events.write({"kind": "fault_error", "fault": fault.kind, "error": repr(exc),
                               "at": time.time()})  # fmt: skip

    def kill_for(self, process: Managed, fault: Fault, lock: str,
                 recovered: object = None) -> None:  # fmt: skip
        """SIGKILL, dead for ``fault.hold`` seconds, started again; recovered when
        ``recovered()`` says so (a timestamp or None), else once started."""
        with self.lock(lock):
            self.held.add(id(process))
            at = time.time()
            process.kill()
            self.stopping.wait(fault.hold)
            lifted = time.time()
            try:
                process.start()
            except Exception as exc:  # not up in time: the supervisor starts it again
                log.warning("%s did not start again: %s", process.name, exc)
            finally:
                self.held.discard(id(process))
            back = recovered() if callable(recovered) else time.time()  # type: ignore[operator]
            self.truth.fault(fault, at, lifted, back, process.name)

    def do_kill_agent(self, fault: Fault) -> None:
        commune = self.communes[fault.subject % len(self.communes)]
        agents = [a for a in commune.agents if a.targets]
        agent = agents[fault.subject % len(agents)]
        self.kill_for(agent, fault, f"agent-{agent.spec.key}")

    def do_kill_fleet(self, fault: Fault) -> None:
        commune = self.sim_communes[fault.subject % len(self.sim_communes)]
        assert commune.group is not None
        self.kill_for(commune.group, fault, f"fleet-{commune.slug}")

    def do_kill_collector(self, fault: Fault) -> None:
        assert self.collector is not None
        self.kill_for(self.collector, fault, "collector", lambda: self.wait_healthy(300))

    def do_kill_sink(self, fault: Fault) -> None:
        assert self.collector is not None
        collector = self.collector
        with self.lock("collector"):
            wait_until(lambda: collector.sink_pid() is not None, 300, 0.5)
            at = time.time()
            pid = collector.sink_pid()
            if pid is None:
                self.truth.fault(fault, at, at, None, "no sink process")
                return
            os.kill(pid, signal.SIGKILL)

            def again() -> bool:
                found = collector.sink_pid()
                return found is not None and found != pid

            back = time.time() if wait_until(again, 300, 0.5) else None
            self.truth.fault(fault, at, at, back, f"sink pid {pid}")

    def do_kill_broker(self, fault: Fault) -> None:
        assert self.broker is not None
        self.kill_for(self.broker, fault, "broker", lambda: self.wait_healthy(300))

    def do_kill_vm(self, fault: Fault) -> None:
        assert self.vm is not None
        self.kill_for(self.vm, fault, "vm")

    def do_broker_config(self, fault: Fault) -> None:
        """A planned restart (SIGTERM) with another config; the next one goes back."""
        broker = self.broker
        assert broker is not None
        with self.lock("broker"):
            self.held.add(id(broker))
            at = time.time()
            broker.stop()
            broker.changes += 1
            broker.write_config(changed=broker.changes % 2 == 1)
            try:
                broker.start()
            finally:
                self.held.discard(id(broker))
            lifted = time.time()
            self.truth.fault(
                fault,
                at,
                lifted,
                self.wait_healthy(300),
                f"config {'changed' if broker.changes % 2 else 'as shipped'}",
            )

    def do_partition(self, fault: Fault) -> None:
        everyone = self.communes + self.sim_communes
        commune = everyone[fault.subject % len(everyone)]
        with self.lock(f"net-{commune.slug}"):
            at = time.time()
            commune.net.partition()
            self.stopping.wait(fault.hold)
            commune.net.heal()
            lifted = time.time()
            outboxes = [s.outbox for s in self.specs if s.commune == commune.slug]
            # Recovered: the backlog the cut left in the commune's outboxes sent (what waits
            # for the collector's receipt only has been).
            drained = wait_until(lambda: all(unsent(o) <= 2 for o in outboxes), 600, 0.5)
            self.truth.fault(fault, at, lifted, time.time() if drained else None,
                             f"{commune.slug} cut (link down)")  # fmt: skip

    def fill(self, fault: Fault, mount: Mount | None, what: str) -> None:
        assert mount is not None
        with self.lock(f"fs-{what}"):
            at = time.time()
            mount.fill()
            self.stopping.wait(fault.hold)
            mount.free()
            lifted = time.time()
            recovered = self.wait_healthy(300) if what == "store" else lifted
            self.truth.fault(fault, at, lifted, recovered, f"{what} filesystem full")

    def do_fill_store(self, fault: Fault) -> None:
        self.fill(fault, self.store_fs, "store")

    def do_fill_agent_disk(self, fault: Fault) -> None:
        self.fill(fault, self.agent_fs, "agent")

    def do_clock_jump(self, fault: Fault) -> None:
        """pc-clock's wall clock ahead, then behind, then right (libfaketime reads the
        offset from its file at most once a second)."""
        agent = self.clock_agent
        assert agent is not None and agent.faketime is not None
        with self.lock("clock"):
            at = time.time()
            agent.faketime.write_text(f"+{JUMP_AHEAD_S}\n")
            self.stopping.wait(fault.hold / 2)
            agent.faketime.write_text(f"{JUMP_BACK_S}\n")
            self.stopping.wait(fault.hold / 2)
            agent.faketime.write_text("+0\n")
            lifted = time.time()
            self.truth.fault(
                fault,
                at,
                lifted,
                lifted,
                f"{agent.spec.key} {JUMP_AHEAD_S:+d} s then {JUMP_BACK_S:+d} s",
            )

    def do_partition_collector(self, fault: Fault) -> None:
        """The collector's link down: its session with the broker drops (its keepalive is
        shorter than the cut), the broker queues what the agents send for it, and its
        sink cannot reach VictoriaMetrics. Recovered: in with the broker again."""
        net = self.collector_net
        assert net is not None
        with self.lock("net-collector"):
            at = time.time()
            net.partition()
            self.stopping.wait(fault.hold)
            net.heal()
            lifted = time.time()
            self.truth.fault(fault, at, lifted, self.wait_healthy(300),
                             "collector cut from the broker (link down)")  # fmt: skip

    def do_update_agents(self, fault: Fault) -> None:
        """The launched agents updated, then rolled back, while envelopes flow. The
        release manager builds and signs two versions; a rollout (the API, its lab ring:
        these agents) orders the first, which each launcher fetches (TUF), tries and
        commits; then the second, which crashes once started: each launcher rolls it back
        to the first. Recovered: every one of them sending again after the rollback.
        Each agent's outbox file is noted before and after (the same file, or its data
        would start a new sequence): ``version_switch`` in the truth."""
        agents = [a for c in self.communes for a in c.launched]
        with self.lock("update"):
            self.updates += 1
            good, crashing = f"26.{self.updates}.0", f"26.{self.updates}.1"
            self.add_releases(good, crashing=crashing)
            before = {a.spec.key: outbox_identity(a.spec.outbox) for a in agents}
            at = time.time()
            committed = self.roll_out(good, agents)
            switched = time.time()
            rolled_back = self.roll_out(crashing, agents)
            lifted = time.time()
            seqs = {a.spec.key: next_seq(a.spec.outbox) for a in agents}

            def sending_again() -> bool:
                return all(next_seq(a.spec.outbox) >= seqs[a.spec.key] + 2
                           and unsent(a.spec.outbox) <= 2 for a in agents)  # fmt: skip

            recovered = time.time() if wait_until(sending_again, 300, 0.5) else None
            for agent in agents:
                self.truth.write({
                    "kind": "version_switch", "agent_key": agent.spec.key,
                    "outbox": str(agent.spec.outbox), "before": before[agent.spec.key],
                    "after": outbox_identity(agent.spec.outbox),
                    "decisions": [committed.get(agent.spec.key, ""),
                                  rolled_back.get(agent.spec.key, "")],
                    "running": Home(agent.home).current(), "at": at,
                })  # fmt: skip
            self.truth.fault(
                fault, at, lifted, recovered,
                f"{len(agents)} agents: {good} {sorted(set(committed.values()))} in "
                f"{switched - at:.0f} s, {crashing} {sorted(set(rolled_back.values()))} in "
                f"{lifted - switched:.0f} s",
            )  # fmt: skip

    def roll_out(self, version: str, agents: list[LaunchedAgent]) -> dict[str, str]:
        """A rollout of ``version`` to ``agents`` (its lab ring, a gate that never opens
        the next ring: no other PC is asked), halted once each launcher decided; agent
        key -> its decision (committed, rolled_back; "" if none in time)."""
        self.halt_rollouts()
        status, made = self.api_retry("POST", "/api/v1/rollouts", {
            "version": version, "rings": "lab", "lab": [a.spec.key for a in agents],
            "gate": ["soak=30d"], "spread_s": 0.0,
        })  # fmt: skip
        if status != 201 or not isinstance(made, dict):
            raise RuntimeError(f"rollout of {version} refused: {status} {made}")

        def decision(agent: LaunchedAgent) -> str:
            found = Home(agent.home).decision()
            if found is None or found.version != version or found.state == "trial":
                return ""
            return found.state

        wait_until(lambda: all(decision(a) for a in agents), UPDATE_TIMEOUT, 0.5)
        self.api_retry("POST", f"/api/v1/rollouts/{made['id']}/halt", {"why": "soak: decided"})
        return {a.spec.key: decision(a) for a in agents}

    def halt_rollouts(self) -> None:
        """Any rollout still running or paused (an update cut short) halted."""
        status, listed = self.api_retry("GET", "/api/v1/rollouts")
        if status != 200 or not isinstance(listed, dict):
            return
        for rollout in listed.get("rollouts", []):
            if rollout.get("state") in ("running", "paused"):
                self.api_retry("POST", f"/api/v1/rollouts/{rollout['id']}/halt", {"why": "soak"})

    def api_retry(self, method: str, path: str,
                  body: dict[str, object] | None = None) -> tuple[int, object]:  # fmt: skip
        """``api``, again while the collector cannot answer (killed, cut, restarting)."""
        found: tuple[int, object] = (0, "not asked")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not self.stopping.is_set():
            found = self.api(method, path, body)
            if found[0] != 0 and found[0] < 500:
                return found
            time.sleep(1.0)
        return found

    # the end -----------------------------------------------------------------------------

    def settle(self, timeout: float) -> dict[str, object]:
        """Everything healed and running; the agents stopped once their outboxes are empty
        (an agent stopped with rows left is started again to send them); then until the
        store holds every agent's last envelope and the sink's spool is empty."""
        for commune in self.communes + self.sim_communes:
            if commune.net.cut:
                commune.net.heal()
        if self.collector_net is not None and self.collector_net.cut:
            self.collector_net.heal()
        for mount in (self.store_fs, self.agent_fs):
            if mount is not None:
                mount.free()
        for process in self.processes():
            if not process.alive:
                process.start()
        self.wait_healthy(timeout)
        groups = [threading.Thread(target=c.group.stop) for c in self.sim_communes if c.group]
        for thread in groups:
            thread.start()
        agents: list[RealAgent | LaunchedAgent] = [
            a for c in self.communes for a in [*c.agents, *c.launched]
        ]
        assert self.collector is not None
        store = self.collector.state

        def settled(spec: AgentSpec) -> bool:
            # What an outbox keeps for the collector's receipt and the store has is done
            # with; a running agent always has a few such rows.
            return unapplied(spec.outbox, store, spec.key) == 0

        for _attempt in range(5):
            wait_until(lambda: all(settled(a.spec) for a in agents), timeout / 5, 0.5)
            for agent in agents:
                agent.stop()
            left = [a for a in agents if not settled(a.spec)]
            if not left:
                break
            for agent in left:
                agent.start()
        for thread in groups:
            thread.join()
        created = {s.key: next_seq(s.outbox) - 1 for s in self.specs}
        caught_up = wait_until(lambda: caught(store, created), timeout, 1.0)
        left = sum(unapplied(s.outbox, store, s.key) for s in self.specs)
        return {"caught_up": caught_up, "outbox_rows_left": left}

    def close(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)
        for process in reversed(self.processes()):
            with contextlib.suppress(Exception):
                process.stop()
        if self.collector is not None and self.collector.process is not None:
            for pid in children(self.collector.process.pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        for commune in self.communes:
            if commune.targets is not None:
                commune.targets.stop()
        for commune in self.communes + self.sim_communes:
            commune.net.destroy()
        if self.collector_net is not None:
            self.collector_net.destroy()
        self.host.down()
        for mount in self.mounts:
            mount.unmount()
        if self.broker is not None:
            self.broker.remove()

    def keep(self) -> None:
        """Copies of what lives on the small filesystems (gone with them): the store, once
        the collector has stopped, and the outboxes there."""
        import shutil

        assert self.collector is not None
        self.collector.stop()
        kept = self.root / "kept"
        kept.mkdir(exist_ok=True)
        source = sqlite3.connect(self.collector.state)
        copy = sqlite3.connect(kept / "state.sqlite")
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
        self.collector.state = kept / "state.sqlite"
        for spec in self.specs:
            if self.agent_fs is not None and self.agent_fs.path in spec.outbox.parents:
                target = kept / spec.agent
                shutil.copytree(spec.state_dir, target, dirs_exist_ok=True)
                spec.state_dir = target

    def wait_for_future_samples(self) -> None:
        """Until no sample is timed in the future: pc-clock's, taken while its clock ran
        ahead, are not yet in VictoriaMetrics' export (it ends at the present)."""
        from agent.ledger import read_ledger

        latest = max((line.last_ts for path in self.ledger.glob("*.ledger")
                      for line in read_ledger(path)), default=0.0)  # fmt: skip
        time.sleep(max(0.0, latest + 2.0 - time.time()))

    def describe(self) -> dict[str, object]:
        """run.json: where the checker finds what it reads."""
        assert self.collector is not None and self.vm is not None
        return {
            "seed": self.options.seed, "minutes": self.options.minutes,
            "ledger": str(self.ledger), "store": str(self.collector.state),
            "victoria_url": self.vm.url, "truth": str(self.truth.path),
            "probe_interval": self.options.interval,
            "outboxes": {s.key: str(s.outbox) for s in self.specs},
            # The real agents: none reports an outage the soak did not cause (the
            # simulator's PCs play anti-malware going stale and such, on purpose).
            "watched_agents": [a.spec.key for c in self.communes
                               for a in [*c.agents, *c.launched]],
            "partition": "link down" + (" (netem available)" if self.netem else
                                        " (no netem in this kernel)"),
            "peak_rss_kib": self.peaks,
        }  # fmt: skip

    def plan(self, window: float) -> tuple[list[Fault], list[TargetOutage]]:
        o = self.options
        self._outages = nemesis.target_schedule(o.seed, window, o.real_communes, len(TARGETS),
                                                o.interval)  # fmt: skip
        schedule = nemesis.short_schedule if o.short else nemesis.long_schedule
        faults = list(o.faults) if o.faults is not None else schedule(o.seed, window * 0.8)
        # An agent dead when its target goes down or up sees it late: the kill's doing,
        # not the availability history's. Its commune's targets hold still meanwhile.
        margin = 3 * o.interval
        for fault in faults:
            if fault.kind == "kill_agent":
                commune = fault.subject % o.real_communes
                self._outages = [
                    t for t in self._outages
                    if nemesis.clear_of([t], commune, fault.at - margin,
                                        fault.at + fault.hold + 20 + margin)
                ]  # fmt: skip
        if o.only:
            faults = [f for f in faults if f.kind in o.only]
        return faults, self._outages


def outbox_identity(outbox: Path) -> list[int]:
    """The outbox file's (device, inode): the same file, or another made in its place."""
    try:
        found = outbox.stat()
    except OSError:
        return []
    return [found.st_dev, found.st_ino]


def rows(outbox: Path) -> int:
    return int(read_one(outbox, "SELECT COUNT(*) FROM outbox") or 0)


def unsent(outbox: Path) -> int:
    """Rows the broker has not acknowledged (an outbox of a release before receipts: all)."""
    found = read_one(outbox, "SELECT COUNT(*) FROM outbox WHERE acked IS NULL")
    return int(found if found is not None else rows(outbox))


def unapplied(outbox: Path, store: Path, key: str) -> int:
    """Rows of an outbox the store has not applied (its applied record): not yet sent, sent
    and not yet committed, or lost. Rows kept for the collector's receipt of what it has
    applied are not counted."""
    if not outbox.exists():
        return 0
    with (
        contextlib.suppress(sqlite3.Error),
        contextlib.closing(sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=10)) as db,
    ):
        try:
            seqs = [row[0] for row in db.execute("SELECT seq FROM outbox")]
        except sqlite3.OperationalError:  # an outbox of a release before receipts
            return rows(outbox)
        if not seqs:
            return 0
        if None in seqs or not store.exists():
            return len(seqs)
        with contextlib.closing(
            sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)
        ) as state:
            applied = {
                row[0]
                for row in state.execute(
                    "SELECT seq FROM applied_envelopes WHERE agent_key = ? AND applied > 0"
                    " AND seq >= ?",
                    (key, min(seqs)),
                )
            }
        return sum(1 for seq in seqs if seq not in applied)
    return rows(outbox)


def next_seq(outbox: Path) -> int:
    return int(read_one(outbox, "SELECT value FROM meta WHERE key = 'next_seq'") or 0)


def read_one(path: Path, query: str) -> object:
    if not path.exists():
        return None
    with (
        contextlib.suppress(sqlite3.Error),
        contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db,
    ):
        found = db.execute(query).fetchone()
        return found[0] if found else None
    return None


def caught(store: Path, created: dict[str, int]) -> bool:
    """The store's last seq of every agent is its outbox's last, and the spool is empty."""
    with (
        contextlib.suppress(sqlite3.Error),
        contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)) as db,
    ):
        last = dict(db.execute("SELECT agent_key, last_seq FROM agents").fetchall())
        spooled = db.execute(WAITING).fetchone()[0]
        return spooled == 0 and all((last.get(k) or -1) >= seq for k, seq in created.items())
    return False


@contextlib.contextmanager
def soak(options: Options, kind: type[Soak] | None = None) -> Iterator[Soak]:
    """A soak set up, and torn down whatever happens (processes, namespaces, mounts)."""
    running = (kind or Soak)(options)
    try:
        running.start()
        yield running
    finally:
        running.close()


@dataclass
class Outcome:
    described: dict[str, object]
    ok: bool
    table: str
    problems: tuple[str, ...] = ()
    """The checker's findings, each in a few words (none when ``ok``)."""


def run(options: Options) -> Outcome:
    """The soak from start to settled, checked while its servers still run; the store
    and the outboxes on small filesystems copied into the run's folder for later."""
    window = options.minutes * 60
    with soak(options) as running:
        faults, outages = running.plan(window)
        last = max((f.at + f.hold for f in faults), default=0.0) + 30.0
        if options.faults is not None:  # a schedule written out: as long as it needs
            window = last
        elif options.only:
            window = min(window, last)
        if options.faults is not None or options.only:
            outages = [t for t in outages if t.end <= window]
        running.chaos(faults, outages, window)
        settled = running.settle(600)
        running.keep()
        running.wait_for_future_samples()
        described = {**running.describe(), **settled}
        (options.run_dir / "run.json").write_text(json.dumps(described, indent=1))
        ok, table, problems = check(options.run_dir)
    return Outcome(described, ok, table, problems)


def check(run_dir: Path, victoria_url: str = "") -> tuple[bool, str, tuple[str, ...]]:
    """The checker's verdict, table and findings, if this checkout has the checker;
    ``victoria_url``: where VictoriaMetrics listens now, if not where the run had it."""
    try:
        from fleet import soakcheck
    except ImportError:
        return False, "fleet/soakcheck.py is not in this checkout: no verdict", ("no checker",)
    run = soakcheck.SoakRun.from_dir(run_dir)
    if victoria_url:
        run = dataclasses.replace(run, victoria_url=victoria_url)
    verdict = soakcheck.check(run)
    return bool(verdict.ok), str(verdict.table()), tuple(verdict.problems())


def check_again(run_dir: Path) -> tuple[bool, str, tuple[str, ...]]:
    """A finished run checked again: its VictoriaMetrics started on its data."""
    described = json.loads((run_dir / "run.json").read_text())
    vm = VictoriaMetricsProcess(run_dir)
    vm.port = int(str(described["victoria_url"]).rsplit(":", 1)[1])
    vm.start()
    try:
        return check(run_dir, vm.url)
    finally:
        vm.stop()


def _faults(text: str) -> tuple[Fault, ...]:
    try:
        return nemesis.parse_faults(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--short", action="store_true", help="every fault once, fewer agents")
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--real-communes", type=int, default=None)
    parser.add_argument("--agents-per-commune", type=int, default=None)
    parser.add_argument("--sim-communes", type=int, default=None)
    parser.add_argument("--sim-per-commune", type=int, default=None)
    parser.add_argument("--only", default="", metavar="KIND,...",
                        help="replay only these faults of the seed's schedule")  # fmt: skip
    parser.add_argument("--faults", default=None, metavar="KIND@AT[+HOLD],...",
                        type=_faults,
                        help="these faults instead of the seed's, e.g. "
                             "kill_vm@30+20,kill_sink@40")  # fmt: skip
    parser.add_argument("--check", type=Path, metavar="RUN_DIR",
                        help="check a finished run again (no soak)")  # fmt: skip
    arguments = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s")
    if arguments.check:
        ok, table, _problems = check_again(arguments.check)
        print(table)
        return 0 if ok else 1
    if os.geteuid() != 0:
        print("the soak makes network namespaces and mounts: run it as root", file=sys.stderr)
        return 2

    def interrupted(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # so that the namespaces and mounts are removed

    signal.signal(signal.SIGTERM, interrupted)
    run_dir = arguments.run_dir or Path(f"/tmp/commune-soak-{arguments.seed}-{int(time.time())}")
    make = Options.short_mode if arguments.short else Options.long_mode
    options = make(arguments.seed, run_dir, arguments.minutes)
    options.only = tuple(k for k in arguments.only.split(",") if k)
    options.faults = arguments.faults
    unknown = set(options.only) - set(nemesis.KINDS)
    if unknown:
        parser.error(f"--only: no such fault {sorted(unknown)}; one of {', '.join(nemesis.KINDS)}")
    for name in ("real_communes", "agents_per_commune", "sim_communes", "sim_per_commune"):
        if getattr(arguments, name) is not None:
            setattr(options, name, getattr(arguments, name))
    outcome = run(options)
    print(f"run: {run_dir}  seed {options.seed}  partition by {outcome.described['partition']}")
    print(outcome.table)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
