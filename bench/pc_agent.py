"""The typical commune PC's agent, for the agent benchmark: its profile, a PC's install,
the agent before the footprint work beside it, and a simulated day.

The profile is the office one (deploy/profiles/dong-nai.toml): host, anti-malware
(ClamAV's path on Linux; where ClamAV is absent the check reports so, as a Linux PC
without it does), two ICMP line probes, MQTT over TLS with a password, the outbox.
Time is accelerated: the agent's interval stands for its 60 s and the anti-malware
check runs every 10 intervals, as every 10 minutes, so a day of a PC's checks is
1,440 cycles.

A PC installs the agent and its runtime dependencies only (no editable install, no
typing_extensions, no test tools): ``pc_python`` makes a virtual environment that sees
exactly those, so the figures are a PC's and not the development venv's.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from packaging.requirements import Requirement
from paho.mqtt.enums import CallbackAPIVersion

from agent import wire
from collector.rollout.passwordfile import set_password
from tests.servers import Mosquitto, broker_readable, free_port
from tests.tls import make_pki

REPO = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
#: The agent before the footprint work (issue 23): 35 MB for this profile.
BASELINE_REF = "8da2485"
#: A PC's cycles in a day: its checks every 60 s.
DAY_CYCLES = 1440
#: The anti-malware check's interval, in cycles (10 min at 60 s).
ANTIVIRUS_EVERY = 10
USER = "dong-nai.la-nga.bench"
PASSWORD = "correct horse battery staple"


def runtime_distributions(name: str = "commune-monitor") -> list[importlib.metadata.Distribution]:
    """The distributions a PC installs with the agent: its requirements for this platform
    (no extras), and theirs, recursively."""
    found: dict[str, importlib.metadata.Distribution] = {}
    pending = list(importlib.metadata.requires(name) or [])
    while pending:
        requirement = Requirement(pending.pop())
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        key = requirement.name.lower().replace("_", "-")
        if key in found:
            continue
        distribution = importlib.metadata.distribution(requirement.name)
        found[key] = distribution
        pending.extend(distribution.requires or [])
    return list(found.values())


def top_level_entries(distribution: importlib.metadata.Distribution) -> set[Path]:
    """The packages and modules a distribution puts on ``sys.path``."""
    entries: set[Path] = set()
    for file in distribution.files or []:
        first = file.parts[0]
        if first == ".." or first.endswith((".dist-info", ".data")) or first == "__pycache__":
            continue
        if len(file.parts) == 1 and not first.endswith((".py", ".so", ".pyd")):
            continue
        entries.add(Path(str(distribution.locate_file(first))))
    return entries


def pc_python(workdir: Path) -> Path:
    """A virtual environment that imports the agent's runtime dependencies and nothing
    else from the development one; the agent itself comes from the working directory
    (``python -m agent.cli`` run in a source tree). Returns its interpreter."""
    venv = workdir / "pc-venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, cwd=workdir
    )
    packages = workdir / "pc-packages"
    packages.mkdir()
    for distribution in runtime_distributions():
        for entry in top_level_entries(distribution):
            link = packages / entry.name
            if not link.exists():
                link.symlink_to(entry)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "commune-agent-runtime.pth").write_text(f"{packages}\n")
    return venv / "bin" / "python"


def compile_modules(python: Path, folder: Path) -> None:
    """Byte-compile the agent under ``folder`` as its first start does on a PC, where the
    compiled files stay for the later ones: an agent that compiles as it imports keeps
    what compiling left in its heap (0.4 MB), which a checkout with its compiled files
    does not, so each agent measured starts with its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    command = [str(python), "-m", "compileall", "-q", str(folder / "agent")]
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)


def baseline_tree(ref: str, workdir: Path) -> Path:
    """A checkout of ``ref`` (a git worktree, removed by ``remove_tree``)."""
    tree = workdir / f"agent-{ref}"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(tree), ref],
        check=True,
    )
    return tree


def remove_tree(tree: Path) -> None:
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False
    )


@dataclass
class TlsBroker:
    """Mosquitto with a TLS listener that takes a password (as an enrolled PC logs in) and a
    plain one for the benchmark's own subscriber."""

    broker: Mosquitto
    tls_port: int
    ca: Path
    password_file: Path

    @property
    def plain_port(self) -> int:
        return self.broker.port

    def stop(self) -> None:
        self.broker.stop()


def tls_broker(workdir: Path) -> TlsBroker:
    pki = make_pki(workdir / "pki", client_name=USER)
    passwords = workdir / "passwords"
    set_password(passwords, USER, PASSWORD)
    ca, cert, key, passwords = broker_readable(pki.ca, pki.server_cert, pki.server_key, passwords)
    tls_port = free_port()
    broker = Mosquitto(
        workdir / "broker",
        preamble="per_listener_settings true",
        listener_options="allow_anonymous true\n",
        extra=(
            f"listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
            f"allow_anonymous false\npassword_file {passwords}\nmax_queued_messages 0\n"
        ),
    ).start()
    secret = workdir / "mqtt.password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    return TlsBroker(broker, tls_port, pki.ca, secret)


def pc_config(
    workdir: Path,
    broker: TlsBroker,
    agent_id: str,
    interval: float,
    probes: int,
    launcher: bool = False,
) -> Path:
    """The office profile at ``interval`` seconds a cycle; ``probes`` echoes per line run;
    ``launcher``: with the ``[update]`` section ``enroll`` writes for the launcher (the
    collector's releases: no order comes, as between two rollouts)."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "agent.toml"
    lines = "".join(
        f'[[checks.link]]\nname = "{name}"\nnetwork = "tslcd"\nmethod = "icmp"\n'
        f'target = "{target}"\ncount = {probes}\n'
        for name, target in (("tslcd-gateway", "127.0.0.1"), ("tslcd-province", "127.0.0.2"))
    )
    path.write_text(
        f'[agent]\nprovince = "dong-nai"\ncommune = "la-nga"\nid = "{agent_id}"\n'
        f'interval = "{interval}s"\nstate_dir = "{workdir / "state"}"\nlog_level = "warning"\n'
        f'[mqtt]\nurl = "mqtts://localhost:{broker.tls_port}"\nca_file = "{broker.ca}"\n'
        f'username = "{USER}"\npassword_file = "{broker.password_file}"\n'
        + (
            f'[update]\nurl = "https://localhost:{broker.tls_port}/releases"\n'
            f'ca_file = "{broker.ca}"\n'
            if launcher
            else ""
        )
        + "[[checks.host]]\n"
        f'[[checks.antivirus]]\ninterval = "{interval * ANTIVIRUS_EVERY}s"\n' + lines
    )
    return path


class CycleCounter:
    """Counts, per agent, the data envelopes of each check as they arrive (QoS 1)."""

    def __init__(self, port: int) -> None:
        self.counts: dict[str, dict[str, int]] = {}
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{time.time()}")
        self.client.on_connect = lambda c, *_: c.subscribe("commune/+/+/+/data", qos=1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("the benchmark's subscriber could not subscribe")

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        envelope = wire.decode_envelope(bytes(message.payload))
        with self.lock:
            counts = self.counts.setdefault(envelope.agent, {})
            for name in {s.name for s in envelope.samples}:
                counts[name] = counts.get(name, 0) + 1

    def cycles(self, agent: str, checks: tuple[str, ...]) -> int:
        """How many times every one of ``checks`` has reported."""
        with self.lock:
            counts = self.counts.get(agent, {})
            return min(counts.get(name, 0) for name in checks)

    def count(self, agent: str, check: str) -> int:
        with self.lock:
            return self.counts.get(agent, {}).get(check, 0)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Memory:
    rss: float
    uss: float
    pss: float


def memory(process: psutil.Process) -> Memory:
    info = process.memory_full_info()
    return Memory(info.rss / MB, info.uss / MB, info.pss / MB)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def thread_cpu_seconds(process: psutil.Process) -> float:
    """CPU time of the process's threads now alive, in nanoseconds' resolution (the
    scheduler's own count): an idle agent's 20 s are a few clock ticks of cpu_times."""
    total = 0
    for task in Path(f"/proc/{process.pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


#: Where a process's resident pages come from, by what they map (its smaps): the groups
#: ``resident_maps`` sums, in the order the report lists them.
MAP_GROUPS = (
    "the program (python + libpython, or zabbix_agent2)",
    "OpenSSL (libcrypto, libssl)",
    "SQLite (libsqlite3)",
    "C library (libc, libm, the loader)",
    "other libraries and extension modules",
    "malloc's heap (OpenSSL, SQLite, Python's large objects)",
    "anonymous: Python's object arenas, stacks, thread arenas",
    "other (locale, the outbox's -shm, vdso)",
)


def map_group(name: str, program: str) -> str:
    """The ``MAP_GROUPS`` entry of a mapping of ``name`` (a path, [heap], or nothing)."""
    base = Path(name).name
    if name == program or base.startswith("libpython"):
        return MAP_GROUPS[0]
    if base.startswith(("libcrypto.so", "libssl.so")):
        return MAP_GROUPS[1]
    if base.startswith("libsqlite3.so"):
        return MAP_GROUPS[2]
    if base.startswith(("libc.so", "libm.so", "ld-linux")):
        return MAP_GROUPS[3]
    if ".so" in base:
        return MAP_GROUPS[4]
    if name == "[heap]":
        return MAP_GROUPS[5]
    if not name:
        return MAP_GROUPS[6]
    return MAP_GROUPS[7]


def resident_maps(pid: int) -> dict[str, tuple[float, float]]:
    """MB resident per ``MAP_GROUPS`` entry: (all, of which shared with other processes:
    clean pages of files, counted in RSS but not in USS)."""
    program = os.path.realpath(f"/proc/{pid}/exe")
    totals = {group: [0, 0] for group in MAP_GROUPS}
    group = MAP_GROUPS[7]
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if not fields[0].endswith(":"):
                group = map_group(fields[5] if len(fields) > 5 else "", program)
            elif fields[0] == "Rss:":
                totals[group][0] += int(fields[1])
            elif fields[0] == "Shared_Clean:":
                totals[group][1] += int(fields[1])
    return {group: (rss / 1024, shared / 1024) for group, (rss, shared) in totals.items()}


@dataclass
class Watch:
    """One process over the simulated day: its memory after the warm-up hour and at the
    end of the day, the peak RSS between, and the CPU time the day's cycles took."""

    name: str
    process: psutil.Process
    steady: Memory | None = None
    final: Memory | None = None
    peak_rss: float = 0.0
    cycles0: int = 0
    cycles: int = 0
    cpu0: float = 0.0
    cpu: float = 0.0
    idle_cpu_per_s: float = 0.0
    """CPU seconds a second between checks, at the profile's real intervals."""
    marks: list[float] = field(default_factory=list)
    """RSS at the start of the day and after each quarter of it."""
    maps: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Where the steady RSS comes from (``resident_maps``)."""
    notes: list[str] = field(default_factory=list)

    def sample(self, cycles: int, warmup: int, day: int) -> None:
        """Called every half second with the cycles done so far."""
        if self.final is not None:
            return
        if self.steady is None:
            if cycles >= warmup:
                self.steady = memory(self.process)
                self.maps = resident_maps(self.process.pid)
                self.cpu0 = cpu_seconds(self.process)
                self.cycles0 = cycles
                self.peak_rss = self.steady.rss
                self.marks.append(self.steady.rss)
            return
        rss = self.process.memory_info().rss / MB
        self.peak_rss = max(self.peak_rss, rss)
        if cycles - self.cycles0 >= len(self.marks) * day / 4 and len(self.marks) < 4:
            self.marks.append(rss)
        if cycles >= self.cycles0 + day:
            self.cpu = cpu_seconds(self.process) - self.cpu0
            self.final = memory(self.process)
            self.marks.append(self.final.rss)
            self.cycles = cycles - self.cycles0

    @property
    def done(self) -> bool:
        return self.final is not None

    @property
    def growth(self) -> float:
        assert self.steady is not None and self.final is not None
        return self.final.rss - self.steady.rss

    def checks_cpu_per_day(self) -> float:
        """The day's cycles, run back to back."""
        return self.cpu * DAY_CYCLES / self.cycles if self.cycles else 0.0

    def cpu_per_day(self) -> float:
        """A real day: its cycles, and the time between them."""
        return self.checks_cpu_per_day() + self.idle_cpu_per_s * 86400


def service_environment(tree: Path) -> dict[str, str]:
    """The environment the systemd unit of the agent in ``tree`` gives it (its
    ``Environment=`` lines, agent/service.py), added to this one less Python's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MALLOC_"))}
    unit = (tree / "agent" / "service.py").read_text()
    env.update(re.findall(r"^(?:\{read_write\})?Environment=(\w+)=(.*)$", unit, flags=re.MULTILINE))
    return env


def start_pc_agent(python: Path, tree: Path, config: Path, log: Path) -> subprocess.Popen[bytes]:
    """The agent in ``tree`` as its service runs it (the unit's environment)."""
    env = service_environment(tree)
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(python), "-m", "agent.cli", "run", "-c", str(config)],
            cwd=tree,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


#: Lays out an agent home as ``commune-agent install-launcher`` does (the launcher, the
#: agent of the working directory as the committed version).
LAY_OUT = "import sys; from pathlib import Path; from agent.update import install; " \
    "install.lay_out(Path(sys.argv[1]))"  # fmt: skip


def can_run_under_launcher(tree: Path) -> bool:
    return (tree / "agent" / "update" / "install.py").is_file()


@dataclass
class UnderLauncher:
    """The launcher process and the agent it started."""

    launcher: subprocess.Popen[bytes]
    agent: psutil.Process

    def running(self) -> bool:
        return self.launcher.poll() is None and self.agent.is_running()


def start_under_launcher(
    python: Path, tree: Path, config: Path, log: Path, home: Path
) -> UnderLauncher:
    """The agent in ``tree`` as a PC runs it in production: ``home`` laid out as
    ``install-launcher`` lays it out, the launcher run as its unit runs it (the unit's
    environment, the default timings) and the agent it starts from ``versions/<v>``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    subprocess.run([str(python), "-c", LAY_OUT, str(home)], cwd=tree, env=env, check=True)
    for version in (home / "versions").iterdir():
        compile_modules(python, version)
    script = home / "launcher" / "launcher.py"
    command = [str(python), str(script), "--home", str(home), "--config", str(config)]
    with log.open("wb") as out:
        launcher = subprocess.Popen(
            [*command, "--python", str(python)], cwd=home.parent,
            env=service_environment(tree), stdout=subprocess.DEVNULL, stderr=out,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (children := psutil.Process(launcher.pid).children()):
        if launcher.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the launcher started no agent: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    return UnderLauncher(launcher, children[0])


def import_floor(python: Path, modules: str, tree: Path) -> float:
    """RSS of ``python`` once it has imported only ``modules`` (comma-separated), with the
    stand-ins ``run`` puts first (agent/deferred.py in ``tree``)."""
    code = (
        "import importlib\nfrom agent.deferred import defer_unused\ndefer_unused()\n"
        f"for m in {modules!r}.split(','): importlib.import_module(m)\n"
        "print(open('/proc/self/statm').read().split()[1])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True, cwd=tree, env=env
    )
    return int(out.stdout) * os.sysconf("SC_PAGE_SIZE") / MB


#: What any Python agent for this profile loads: MQTT over TLS, the outbox and the wire
#: codec (on Linux the host's figures come from /proc: no psutil; its checks are blocking
#: reads on threads: no event loop).
FLOOR_MODULES = "ssl,sqlite3,paho.mqtt.client,msgspec"


#: Where a PC agent's memory goes: what it imports, in groups, loaded in this order into a
#: fresh interpreter of the same install (a module counts in the first group that loads it;
#: the last group takes whatever only the agent's own modules load). A group's module that
#: the agent does not load by importing its modules and resolving the broker's name is
#: left out: psutil where /proc is read, the IDNA codec's tables where ASCII names go
#: around them, the event loop's executor (its threads' start is then "running").
#: "agent.deferred" puts the stand-ins ``run`` puts first (agent/deferred.py); putting one
#: in msgspec's place imports msgspec, which the stand-ins' row then counts (older trees'
#: come later).
FOOTPRINT_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("stand-ins, agent/deferred.py (+ typing; msgspec)", ("agent.deferred",)),
    ("TLS: ssl, socket, hashlib, OpenSSL, IDNA", ("ssl", "hashlib", "encodings.idna")),
    ("logging (+ threading, traceback)", ("logging",)),
    ("asyncio (+ subprocess; inspect; executor)", ("asyncio", "concurrent.futures.thread")),
    ("sqlite3 (the outbox)", ("sqlite3",)),
    ("msgspec (+ datetime, decimal, uuid)", ("msgspec",)),
    ("psutil", ("psutil",)),
    ("paho-mqtt", ("paho.mqtt.client",)),
    ("tomllib", ("tomllib",)),
    (
        "the agent's modules (+ what only they load)",
        ("agent.cli", "agent.start", "agent.runner", "agent.checks.host", "agent.checks.link",
         "agent.checks.antivirus"),
    ),
)  # fmt: skip

FOOTPRINT_SCRIPT = """
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1])

rows = [["Python itself (interpreter, site)", rss()]]
import importlib, json, sys
groups, loaded = json.loads(sys.argv[1]), sys.argv[2:]
for label, modules in groups:
    before = rss()
    for name in modules:
        if loaded and name not in loaded:
            continue
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if name == "agent.deferred":
            module.defer_unused()
    rows.append([label, rss() - before])
print(json.dumps(rows))
"""


#: The modules the agent's modules load (with the stand-ins in place) and resolving the
#: broker's name, one a line.
LOADED_SCRIPT = """
import importlib, json, sys
from agent.deferred import defer_unused
defer_unused()
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
import socket
socket.getaddrinfo("localhost", 1883)
print("\\n".join(n for n, m in sys.modules.items() if type(m).__name__ != "DeferredModule"))
"""


def launcher_modules(tree: Path) -> tuple[str, ...]:
    """What the agent in ``tree`` loads besides under the launcher: the update modules its
    runner imports (the order follower, the health writer, what they need)."""
    runner = (tree / "agent" / "runner.py").read_text()
    return tuple(sorted(set(re.findall(r"from (agent\.update\.\w+) import", runner))))


def footprint(python: Path, tree: Path, launcher: bool = False) -> list[tuple[str, float]] | None:
    """(group, MB of RSS) for the agent in ``tree``, as ``FOOTPRINT_GROUPS`` orders them;
    ``launcher``: the launcher's agent's (the agent's modules with ``launcher_modules``).
    For another tree than this one's, None when its modules are not the ones the groups
    name (an older layout, such as the default baseline's; why is printed): the rest of
    its run is reported all the same. This tree's agent must load them."""
    import json

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    label, modules = FOOTPRINT_GROUPS[-1]
    groups = (
        *FOOTPRINT_GROUPS[:-1],
        (label, modules + (launcher_modules(tree) if launcher else ())),
    )
    agent_modules = json.dumps(groups[-1][1])
    found = subprocess.run(
        [str(python), "-c", LOADED_SCRIPT, agent_modules],
        capture_output=True, text=True, check=False, cwd=tree, env=env,
    )  # fmt: skip
    if found.returncode != 0:
        if tree.resolve() == REPO:
            found.check_returncode()
        why = (found.stderr.strip().splitlines() or ["?"])[-1]
        print(f"  the agent in {tree}: its imports are not broken down ({why})")
        return None
    loaded = found.stdout.split()
    out = subprocess.run(
        [str(python), "-c", FOOTPRINT_SCRIPT, json.dumps(groups), *loaded],
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
        env=env,
    )
    page = os.sysconf("SC_PAGE_SIZE")
    return [(label, pages * page / MB) for label, pages in json.loads(out.stdout)]
