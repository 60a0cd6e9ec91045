"""The soak's processes: the broker as deploy/mosquitto/dynsec.conf ships it, the collector
(its store on a small filesystem of its own) with its sink in a network namespace of
their own, VictoriaMetrics, and the agents (some under the launcher, which updates them);
each one started, killed with SIGKILL and started again the same way.

The processes are the ones the tests start (tests/servers.py, tests/test_dynsec.py); what
differs is where they listen (the broker on every address, so that the communes'
namespaces reach it) and that each can be killed and restarted many times.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import API_TOKEN, REPO, free_port, stop_process, wait_tcp
from tests.test_broker_security import DEPLOY, lay_out_for_the_broker
from tests.test_dynsec import crl_folder, empty_crl
from tests.tls import Pki

ADMIN, ADMIN_PASSWORD = "commune-admin", "soak-dynsec-admin-password-0123"
COLLECTOR_USER, COLLECTOR_PASSWORD = "commune-collector", "soak-collector-password-0123456"
#: The admin API token (enrollment tokens, agents' state).
ADMIN_TOKEN = "soak-admin-token-0123456789"
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

#: The offices' profile: the agents' own checks are in their local config.
PROFILES = """
province = "dong-nai"
[profiles.office]
interval = "2s"
[[profiles.office.checks.host]]
"""


class Mount:
    """A small tmpfs of its own (``size``: bytes), so that it can be filled."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self.mounted = False

    def mount(self) -> Mount:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0755", "tmpfs", str(self.path)],
            check=True,
            capture_output=True,
        )
        self.mounted = True
        return self

    def fill(self) -> Path:
        """Every free byte taken by one file; its path (delete it to free them)."""
        filler = self.path / "filler"
        with contextlib.suppress(OSError), filler.open("ab") as out:
            block = b"\0" * (1 << 20)
            while True:
                out.write(block)
                out.flush()
        with contextlib.suppress(OSError), filler.open("ab") as out:  # the last partial block
            while True:
                out.write(b"\0" * 4096)
                out.flush()
        return filler

    def free(self) -> None:
        (self.path / "filler").unlink(missing_ok=True)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
            self.mounted = False


class Managed:
    """A process the soak starts, kills and starts again; ``name`` for the figures."""

    name = "process"
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        raise NotImplementedError

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


class Broker(Managed):
    """deploy/mosquitto/dynsec.conf, changed only where it says (folders, ports) and in
    where the password listener listens: on every address, for the communes."""

    name = "broker"

    def __init__(self, root: Path, pki: Pki) -> None:
        import tempfile

        # Its files where the broker's own user reaches them: a run's folder may sit in a
        # private one (pytest's are 0700).
        self.home = Path(tempfile.mkdtemp(prefix="commune-soak-broker-"))
        self.home.chmod(0o755)
        logs = root / "broker"
        logs.mkdir(parents=True)
        self.etc, self.var = self.home / "etc", self.home / "var"
        self.etc.mkdir()
        self.var.mkdir()
        for source, name in ((pki.ca, "ca.crt"), (pki.server_cert, "server.crt"),
                             (pki.server_key, "server.key")):  # fmt: skip
            shutil.copy(source, self.etc / name)
        state = self.var / "dynamic-security.json"
        subprocess.run(["mosquitto_ctrl", "dynsec", "init", str(state), ADMIN, ADMIN_PASSWORD],
                       check=True, capture_output=True)  # fmt: skip
        lay_out_for_the_broker(self.etc, self.var)
        if os.geteuid() == 0:
            user = pwd.getpwnam("mosquitto")
            os.chown(state, user.pw_uid, user.pw_gid)
        crl = crl_folder(self.home)
        self.crl = crl / "client-crl.pem"
        empty_crl(pki, self.crl)
        self.port, self.cert_port = free_port(), free_port()
        self.conf = logs / "mosquitto.conf"
        self.log_path = logs / "mosquitto.log"
        self.changes = 0
        self.write_config()

    def write_config(self, changed: bool = False) -> None:
        """``changed``: the config a restart with another config brings (smaller inflight
        window and queue limits per client than the shipped ones, a shorter autosave)."""
        text = (DEPLOY / "dynsec.conf").read_text()
        for old, new in (
            ("/etc/mosquitto/commune/", f"{self.etc}/"),
            ("/var/lib/mosquitto/", f"{self.var}/"),
            ("/var/lib/commune-crl/", f"{self.crl.parent}/"),
            ("listener 8883", f"listener {self.port}"),
            ("listener 8884", f"listener {self.cert_port} 127.0.0.1"),
        ):
            assert old in text, old
            text = text.replace(old, new)
        if changed:
            text += "\nmax_inflight_messages 10\nautosave_interval 5\nmax_keepalive 120\n"
        self.conf.write_text(text)

    def remove(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(["mosquitto", "-c", str(self.conf)],
                                            stdout=log, stderr=log)  # fmt: skip
        wait_tcp(self.port, 30)


class VictoriaMetricsProcess(Managed):
    """``address``: where it listens (the soak's host address, for the collector's
    namespace; the loopback to check a finished run again)."""

    name = "victoriametrics"

    def __init__(self, root: Path, address: str = "127.0.0.1") -> None:
        self.data = root / "vm"
        self.port = free_port()
        self.address = address

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["victoria-metrics", f"-storageDataPath={self.data}",
             f"-httpListenAddr={self.address}:{self.port}", "-loggerLevel=ERROR",
             "-retentionPeriod=100y",
             # As deploy/OPERATIONS.md says to run it: a point written twice kept once.
             "-dedup.minScrapeInterval=1ms"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_tcp_at(self.address, self.port, 30)


def wait_tcp_at(host: str, port: int, timeout: float) -> None:
    """Until something listens on ``host:port`` (tests.servers.wait_tcp: the loopback's)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def collector_supports(section: str, key: str) -> bool:
    """Whether this checkout's collector.toml takes ``[section] key`` (a seam of a later
    change may not be here yet)."""
    from collector import config

    for name in dir(config):
        kind = getattr(config, name)
        fields = getattr(kind, "__struct_fields__", ())
        if name.lower() == f"{section}section" and key in fields:
            return True
    return False


class Collector(Managed):
    """``commune-collector run``: its own broker account, the dynsec admin, enrollment over
    HTTPS, the sink to VictoriaMetrics, the store on ``store_dir`` (a small filesystem),
    the agents' signed releases (``releases``: the repository's folder); run with
    ``namespace_prefix`` in a network namespace where it listens on ``address``."""

    name = "collector"

    def __init__(self, root: Path, store_dir: Path, pki: Pki, broker: Broker, sink: str,
                 releases: Path, namespace_prefix: list[str] | None = None,
                 address: str = "127.0.0.1", broker_host: str = "") -> None:  # fmt: skip
        self.root = root / "collector"
        self.root.mkdir(parents=True)
        self.state = store_dir / "state.sqlite"
        self.releases = releases
        self.namespace_prefix = namespace_prefix or []
        self.address = address
        self.api_port = free_port()
        self.config = self.root / "collector.toml"
        self.log_path = self.root / "collector.log"
        self.pki = pki
        (self.root / "admin.password").write_text(ADMIN_PASSWORD)
        (self.root / "collector.password").write_text(COLLECTOR_PASSWORD)
        profiles = self.root / "dong-nai.profiles.toml"
        profiles.write_text(PROFILES)
        from bench.soaknet import BROKER_ADDRESS

        # The broker by the host's address: the one its certificate names beside
        # 127.0.0.1, and reachable from the collector's namespace and the communes'.
        broker_host = broker_host or BROKER_ADDRESS
        url = f"mqtts://{broker_host}:{broker.port}"
        ca = f'ca_file = "{pki.ca}"'
        digests = [hashlib.sha256(t.encode()).hexdigest() for t in (ADMIN_TOKEN, API_TOKEN)]
        ledger = "ledger = true\n" if collector_supports("store", "ledger") else ""
        self.ledger = bool(ledger)
        # Receipts every 10 s, not 5 min: a loss they reveal is made up within the run.
        receipts = ""
        if collector_supports("collector", "receipt_interval"):
            receipts = 'receipt_interval = "10s"\n'
        self.config.write_text(f"""
[mqtt]
url = "{url}"
username = "{COLLECTOR_USER}"
password_file = "{self.root / "collector.password"}"
{ca}
# A cut of the collector's link longer than this and a half drops its session at both
# ends (the shipped 60 s would outlast the short soak's cut).
keepalive = "10s"
[store]
path = "{self.state}"
{ledger}
[collector]
client_id = "collector-soak"
{receipts}
[api]
listen = "{address}:{self.api_port}"
tls_cert_file = "{pki.server_cert}"
tls_key_file = "{pki.server_key}"
[[api.tokens]]
name = "province-admin"
role = "admin"
sha256 = "{digests[0]}"
[[api.tokens]]
name = "ioc"
role = "read"
sha256 = "{digests[1]}"
[dynsec]
url = "{url}"
username = "{ADMIN}"
password_file = "{self.root / "admin.password"}"
{ca}
[enrollment]
broker_url = "mqtts://{broker_host}:{broker.port}"
broker_ca_file = "{pki.ca}"
profiles = ["{profiles}"]
# Every PC of the soak enrolls from this one address, the long soak's 627 of them
# within a minute: more than the 600 an hour a commune office's router may send.
max_per_address = 5000
[sink]
url = "{sink}"
org = "dong-nai"
bucket = "commune"
max_backoff = "2s"
[releases]
path = "{releases}"
""")  # fmt: skip

    @property
    def api(self) -> str:
        host = "localhost" if self.address == "127.0.0.1" else self.address
        return f"https://{host}:{self.api_port}"

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [*self.namespace_prefix, sys.executable, "-m", "collector.cli", "run",
                 "-c", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
            )  # fmt: skip
        wait_tcp_at(self.address, self.api_port, 60)

    def cli(self, *arguments: str) -> str:
        """``commune-collector <arguments> -c <its config>`` on the host, as the release
        manager runs it; its output (RuntimeError saying why when it fails)."""
        done = subprocess.run(
            [sys.executable, "-m", "collector.cli", *arguments, "-c", str(self.config)],
            check=False, capture_output=True, text=True, cwd=REPO, timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"collector {' '.join(arguments[:2])}: {done.stderr[-2000:]}")
        return done.stdout

    def sink_pid(self) -> int | None:
        """The sink's process: the collector's child started by multiprocessing's spawn
        (its other child is multiprocessing's resource tracker)."""
        if not self.alive or self.process is None:
            return None
        for pid in children(self.process.pid):
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
        return None


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


@dataclass
class AgentSpec:
    """One enrolled agent: who it is, the account enrollment made, where it keeps state."""

    province: str
    commune: str
    agent: str
    username: str
    password_file: Path
    broker_url: str
    home: Path
    """Its config, log and password."""
    state_dir: Path
    """Its outbox."""

    @property
    def key(self) -> str:
        return f"{self.province}/{self.commune}/{self.agent}"

    @property
    def outbox(self) -> Path:
        return self.state_dir / "outbox.sqlite"


@dataclass
class ProbedTarget:
    check: str
    kind: str
    target: str
    port: int


@dataclass
class RealAgent(Managed):
    """``commune-agent run`` inside its commune's namespace, probing the commune's targets;
    ``faketime``: a file libfaketime reads the clock's offset from (clock jumps)."""

    spec: AgentSpec
    namespace_prefix: list[str]
    ca_file: Path
    targets: list[ProbedTarget]
    interval: float
    env: dict[str, str] = field(default_factory=dict)
    faketime: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.name = "agent"
        self.config = self.spec.home / "agent.toml"
        self.log_path = self.config.with_suffix(".log")
        checks = ""
        for target in self.targets:
            if target.kind == "link":
                checks += (f'[[checks.link]]\nname = "{target.check}"\nnetwork = "lan"\n'
                           f'method = "tcp"\ntarget = "127.0.0.1"\nport = {target.port}\n'
                           "count = 1\n")  # fmt: skip
            else:
                checks += (f'[[checks.system]]\nname = "{target.check}"\nnetwork = "lan"\n'
                           f'url = "{target.target}"\nkind = "other"\n')  # fmt: skip
        self.config.write_text(
            agent_sections(self.spec, self.interval, self.ca_file) + f"[[checks.host]]\n{checks}"
        )

    def start(self) -> None:
        env = {**os.environ, **self.env}
        if self.faketime is not None:
            env.update(LD_PRELOAD=LIBFAKETIME, FAKETIME_TIMESTAMP_FILE=str(self.faketime),
                       FAKETIME_DONT_FAKE_MONOTONIC="1", FAKETIME_CACHE_DURATION="1")  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.namespace_prefix, sys.executable, "-m", "agent.cli", "run",
                 "--config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env,
            )  # fmt: skip


#: The launcher's timings in the soak (seconds): a version on trial is healthy after 5 s
#: up with its birth acknowledged and every check sampled, a crash-looping one rolled
#: back after 2 exits.
LAUNCHER_TIMINGS = {"max-exits": 2, "trial-timeout": 180, "healthy-after": 5,
                    "restart-delay": 0.5, "grace": 10, "poll": 0.2, "verify-every": 5}  # fmt: skip


@dataclass
class LaunchedAgent(Managed):
    """An agent as ``commune-agent install-launcher`` runs it: the launcher from
    ``<home>/launcher``, in its commune's namespace, running the committed version of
    ``home`` (each version's code in ``<home>/versions``), trying the one the collector's
    signed config orders once it is fetched from ``releases_url`` (TUF) and verified, and
    rolling it back if it fails its trial. Its outbox is in ``spec.state_dir``, outside
    every version's folder: the same file whichever version runs."""

    spec: AgentSpec
    namespace_prefix: list[str]
    ca_file: Path
    home: Path
    releases_url: str
    config_key: Path
    """The collector's config signing key (public): only its signed configs run."""
    interval: float
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.name = "launcher"
        self.config = self.spec.home / "agent.toml"
        self.log_path = self.config.with_suffix(".log")
        self.config.write_text(
            agent_sections(self.spec, self.interval, self.ca_file)
            + f'[remote]\nenabled = true\nconfig_key = "{self.config_key}"\n'
            f'[update]\nurl = "{self.releases_url}"\nca_file = "{self.ca_file}"\n'
            'retry_min = "2s"\nretry_max = "10s"\n'
            "[[checks.host]]\n"
        )

    def start(self) -> None:
        script = self.home / "launcher" / "launcher.py"
        timings = [f"--{name}={value}" for name, value in LAUNCHER_TIMINGS.items()]
        # As the service runs it: the installed copy, no PYTHONPATH (each version's code
        # is the launcher's to put first).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.namespace_prefix, sys.executable, str(script), "--home", str(self.home),
                 "--config", str(self.config), "--python", sys.executable, *timings],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.spec.home, env=env,
                start_new_session=True,
            )  # fmt: skip

    def kill(self) -> None:
        """The launcher and the agent it runs at once (a power cut)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        """Asked to stop, the launcher stops its agent first (its outbox closed)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(60)
        self.kill()


@dataclass
class SimGroup(Managed):
    """A commune of the fleet simulator's agents in one process (bench/soakfleet.py)."""

    spec_file: Path
    namespace_prefix: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.name = "fleet"
        self.log_path = self.spec_file.with_suffix(".log")

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.namespace_prefix, sys.executable, "-m", "bench.soakfleet",
                 str(self.spec_file)],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **self.env},
            )  # fmt: skip

    def stop(self) -> None:
        """Asked to stop, it stops making envelopes and drains its outboxes first."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def peak_rss_kib(pid: int) -> int:
    """VmHWM of a living process (0 when gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def wait_until(predicate: object, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(step)
    return False


def mosquitto_group() -> int:
    return grp.getgrnam("mosquitto").gr_gid if os.geteuid() == 0 else -1


def agent_sections(spec: AgentSpec, interval: float, ca_file: Path | str) -> str:
    """The ``[agent]`` and ``[mqtt]`` sections of a soak agent's config (as a service or
    under the launcher alike)."""
    return (
        f'[agent]\nprovince = "{spec.province}"\ncommune = "{spec.commune}"\n'
        f'id = "{spec.agent}"\ninterval = "{interval}s"\n'
        f'state_dir = "{spec.state_dir}"\n'
        f'[mqtt]\nurl = "{spec.broker_url}"\nusername = "{spec.username}"\n'
        f'password_file = "{spec.password_file}"\nca_file = "{ca_file}"\n'
        'keepalive = "5s"\nreconnect_max = "2s"\n'
    )
