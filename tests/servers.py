"""Real servers for the tests: Mosquitto, snmpsim, snmpd — each on a free loopback port.

Every server is started from a config written to a temporary directory, waited
for until it answers, and stopped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent


_HANDED_OUT: set[tuple[int, int]] = set()
_FIRST_PORT = 10_000


def _ephemeral_ports() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 65_535  # Linux's default, widened to the other systems' range


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port nothing holds now, never handed out before by this process, and
    outside the kernel's ephemeral range. A port the kernel picks for port 0 may be picked
    again at the very next call (`free_port(), free_port()` then names one port twice, and
    the broker exits on its second listener), and one of the ephemeral range may be taken
    meanwhile as the local port of any outgoing connection: either shows as "nothing
    listens"."""
    low, high = _ephemeral_ports()
    sides = (range(_FIRST_PORT, low), range(max(high + 1, _FIRST_PORT), 65_536))
    outside = [side for side in sides if len(side)]
    if not outside:
        raise RuntimeError(f"no port outside the ephemeral range {low}..{high}")
    rng = random.Random()
    for _ in range(1000):
        port = rng.choice(rng.choices(outside, weights=[len(r) for r in outside])[0])
        if (kind, port) in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, kind) as sock:
            try:  # without SO_REUSEADDR, so a port in TIME_WAIT counts as held too
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add((kind, port))
        return port
    raise RuntimeError(f"no free loopback port outside the ephemeral range {low}..{high}")


class AppServer:
    """An ASGI app (the collector's API and console) served on a free loopback port by the
    collector's own server (collector/web/server.py: connection caps, deadlines), in a
    thread: the same server `commune-collector run` uses, without the process."""

    def __init__(
        self,
        app: Any,
        limits: Any = None,
        host: str = "127.0.0.1",
        certfile: str = "",
        keyfile: str = "",
    ) -> None:
        from collector.web.server import ApiServer, ServerLimits

        self.app = app
        self.server = ApiServer(limits or ServerLimits(), host, 0, certfile, keyfile)
        self.port = self.server.port
        self.url = f"{'https' if certfile else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> AppServer:
        self.server.start(self.app)
        return self

    def stop(self) -> None:
        self.server.stop()


def wait_tcp(
    port: int,
    timeout: float = 10.0,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Until something listens on ``port``. With ``process``, the server meant to: its exit
    ends the wait at once, and the error carries the tail of its ``log``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"the server meant to listen on 127.0.0.1:{port} exited ({process.returncode})"
                + _log_tail(log)
            )
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s" + _log_tail(log))


def _log_tail(log: Path | None) -> str:
    if log is None:
        return ""
    try:
        return "; its log ends:\n" + log.read_text(errors="replace")[-2000:]
    except OSError as error:
        return f"; its log cannot be read: {error}"


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


_BROKER_HOMES: list[Path] = []


def _broker_home() -> Path:
    """A directory the broker's own user may use. As root, Mosquitto drops to ``mosquitto``
    (as in production): pytest's temporary directories (0700 root) are out of its reach."""
    import atexit
    import pwd
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="commune-mosquitto-"))
    home.chmod(0o755)
    if os.geteuid() == 0:
        user = pwd.getpwnam("mosquitto")
        os.chown(home, user.pw_uid, user.pw_gid)
    if not _BROKER_HOMES:
        atexit.register(lambda: [shutil.rmtree(h, ignore_errors=True) for h in _BROKER_HOMES])
    _BROKER_HOMES.append(home)
    return home


def broker_readable(*paths: Path) -> list[Path]:
    """Copies of files the broker must read (certificates, keys, a password file), laid out
    as on a server: in a directory of their own, root:mosquitto, 0640."""
    import grp

    home = _broker_home()
    gid = grp.getgrnam("mosquitto").gr_gid if os.geteuid() == 0 else -1
    copies = []
    for path in paths:
        copy = home / path.name
        shutil.copy(path, copy)
        copy.chmod(0o640)
        if gid >= 0:
            os.chown(copy, 0, gid)
        copies.append(copy)
    return copies


class Mosquitto:
    """A Mosquitto broker, run as its own user (``mosquitto``) when the tests run as root;
    ``stop()``/``start()`` keep the port and the persistent sessions, to simulate an outage.
    Files a test hands it (certificates) must be readable by that user."""

    def __init__(
        self,
        workdir: Path,
        extra: str = "",
        port: int | None = None,
        listener_options: str = "",
        preamble: str = "",
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = _broker_home()
        self.port = port or free_port()
        self.conf = self.workdir / "mosquitto.conf"
        self.conf.write_text(
            f"{preamble}\n"
            f"listener {self.port} 127.0.0.1\n{listener_options}"
            # Persistent, so a test subscriber's session and queue outlive a broker restart.
            f"persistence true\npersistence_location {self.workdir}/\n"
            f"log_dest file {self.workdir / 'mosquitto.log'}\n"
            f"log_type error\nlog_type warning\nlog_type notice\n"
            f"{extra if extra else 'allow_anonymous true'}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.dynsec_file: Path | None = None

    @property
    def log(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> Mosquitto:
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_tcp(self.port, process=self.process)
        except (TimeoutError, RuntimeError):
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {self.log[-2000:]}") from None
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            if self.process.stderr:
                self.process.stderr.close()
            self.process = None


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Until the predicate holds; AssertionError naming what did not happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(what)


DYNSEC_PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"


def dynsec_broker(workdir: Path, admin: str, admin_password: str, extra: str = "") -> Mosquitto:
    """A Mosquitto with the dynamic security plugin and nothing but its admin account
    (``mosquitto_ctrl dynsec init``), as a province sets one up; the plugin's file is
    the broker user's, which it rewrites on every change."""
    import pwd

    broker = Mosquitto(workdir, extra="allow_anonymous false\n" + extra)
    state = broker.workdir / "dynamic-security.json"
    subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(state), admin, admin_password],
        check=True,
        capture_output=True,
    )
    if os.geteuid() == 0:
        user = pwd.getpwnam("mosquitto")
        os.chown(state, user.pw_uid, user.pw_gid)
    broker.conf.write_text(
        broker.conf.read_text() + f"plugin {DYNSEC_PLUGIN}\nplugin_opt_config_file {state}\n"
    )
    broker.dynsec_file = state
    return broker


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool


@dataclass
class Subscriber:
    """A paho client collecting every message on a topic filter (QoS 1)."""

    port: int
    topic: str = "#"
    messages: list[Received] = field(default_factory=list)
    username: str = ""
    password: str = ""
    ca_file: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{os.getpid()}-{id(self)}",
            clean_session=False,
        )
        if self.username:
            self.client.username_pw_set(self.username, self.password)
        if self.ca_file:
            self.client.tls_set(ca_certs=self.ca_file)
        self.client.on_connect = lambda c, *_: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(
                Received(message.topic, bytes(message.payload), bool(message.retain))
            )

    def start(self) -> Subscriber:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("subscriber did not subscribe")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def snapshot(self, suffix: str = "") -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def wait_for(
        self, predicate: object, timeout: float = 20.0, suffix: str = ""
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = self.snapshot(suffix)
            if predicate(messages):  # type: ignore[operator]
                return messages
            time.sleep(0.05)
        raise TimeoutError(
            f"condition not met in {timeout}s; {len(self.snapshot(suffix))} messages"
        )


SNMPSIM_LAUNCHER = """
import sys, dbm.dumb, encodings.idna, encodings.ascii, encodings.utf_8, encodings.latin_1
import encodings.hex_codec
import snmpsim.commands.responder as responder
sys.argv = ["snmpsim-command-responder"] + sys.argv[1:]
sys.exit(responder.main())
"""


class SnmpSim:
    """snmpsim serving ``<community>.snmprec`` files (community = file name).

    As root snmpsim drops privileges to nobody, which cannot read this Python's
    standard library: the launcher imports what it needs first (test-infra.md).
    """

    def __init__(self, workdir: Path, records: dict[str, str]) -> None:
        self.workdir = workdir
        self.port = free_port(socket.SOCK_DGRAM)
        self.data = workdir / "data"
        self.cache = workdir / "cache"
        self.data.mkdir(parents=True, exist_ok=True)
        self.cache.mkdir(exist_ok=True)
        for community, text in records.items():
            (self.data / f"{community}.snmprec").write_text(text)
        for path in (workdir, self.data, *self.data.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)
        if os.geteuid() == 0:
            shutil.chown(self.cache, "nobody", "nogroup")
        (workdir / "launch.py").write_text(SNMPSIM_LAUNCHER)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SnmpSim:
        args = [
            sys.executable,
            str(self.workdir / "launch.py"),
            f"--data-dir={self.data}",
            f"--cache-dir={self.cache}",
            f"--agent-udpv4-endpoint=127.0.0.1:{self.port}",
        ]
        if os.geteuid() == 0:
            args += ["--process-user=nobody", "--process-group=nogroup"]
        with (self.workdir / "snmpsim.log").open("wb") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        community = next(p.stem for p in self.data.glob("*.snmprec"))
        try:
            wait_snmp(self.port, community)
        except TimeoutError:
            self.stop()
            log_text = (self.workdir / "snmpsim.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"snmpsim did not answer: {log_text}") from None
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


def wait_snmp(port: int, community: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = subprocess.run(
            [
                "snmpget",
                "-v2c",
                "-c",
                community,
                "-t",
                "0.3",
                "-r",
                "0",
                f"127.0.0.1:{port}",
                "1.3.6.1.2.1.1.3.0",
            ],
            capture_output=True,
            check=False,
        )
        if result.returncode == 0:
            return
        time.sleep(0.2)
    raise TimeoutError(f"no SNMP agent answers on udp 127.0.0.1:{port}")


class Snmpd:
    """net-snmp's snmpd with community ``public`` and the v3 user ``monitor`` (SHA/AES)."""

    USER = "monitor"
    AUTH = "authpass123"
    PRIV = "privpass123"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port(socket.SOCK_DGRAM)
        persist = workdir / "persist"
        persist.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "snmpd.conf"
        self.conf.write_text(
            f"agentAddress udp:127.0.0.1:{self.port}\n"
            "rocommunity public 127.0.0.1\n"
            f'createUser {self.USER} SHA "{self.AUTH}" AES "{self.PRIV}"\n'
            f"rouser {self.USER} priv\n"
            f"[snmp] persistentDir {persist}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Snmpd:
        self.process = subprocess.Popen(
            ["snmpd", "-f", "-Lo", "-C", "-c", str(self.conf), "-p", str(self.workdir / "pid")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_snmp(self.port, "public")
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@contextlib.contextmanager
def running(server: Mosquitto | SnmpSim | Snmpd) -> Iterator[object]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


class AgentProcess:
    """``commune-agent run`` as a real process, with its log kept for assertions."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        """``env``: variables added to this one's environment (STATE_DIRECTORY...)."""
        self.config = config
        self.env = env
        self.log_path = config.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ, **self.env} if self.env else None,
            )
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        stop_process(self.process, sig)
        return self.process.returncode

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)


#: VictoriaMetrics as deploy/OPERATIONS.md runs it: a point written twice kept once.
DEDUP = ("-dedup.minScrapeInterval=1ms",)


class VictoriaMetrics:
    """VictoriaMetrics: an InfluxDB v2 write endpoint we can read back."""

    def __init__(self, workdir: Path, port: int | None = None, flags: tuple[str, ...] = ()) -> None:
        """``flags``: more command-line flags (``-dedup.minScrapeInterval=1ms``...)."""
        self.workdir = workdir
        self.port = port or free_port()
        self.flags = flags
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> VictoriaMetrics:
        self.process = subprocess.Popen(
            [
                "victoria-metrics",
                f"-storageDataPath={self.workdir}",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                "-loggerLevel=ERROR",
                # Tests write fixed dates; the default 1-month retention would drop them.
                "-retentionPeriod=100y",
                *self.flags,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_tcp(self.port, 20)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def export(self, match: str) -> list[dict[str, object]]:
        import json
        import urllib.parse
        import urllib.request

        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10).read()
        query = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as response:
            return [json.loads(line) for line in response.read().splitlines() if line.strip()]


#: The token the test collectors accept (read-only role), and its SHA-256 for their config.
API_TOKEN = "ioc-test-token-0123456789"


class CollectorProcess:
    """``commune-collector run`` as a real process, its API on a free port with a token."""

    def __init__(
        self,
        workdir: Path,
        mqtt_port: int,
        *,
        sink_url: str = "",
        extra: str = "",
        client_id: str = "collector-e2e",
        sections: str = "",
        api: str = "",
        store: str = "",
    ) -> None:
        """``extra``: lines of [collector]; ``api``: lines of [api]; ``store``: lines of
        [store]; ``sections``: more sections, appended."""
        import hashlib

        workdir.mkdir(parents=True, exist_ok=True)
        self.state = workdir / "state.sqlite"
        self.api_port = free_port()
        self.config = workdir / "collector.toml"
        self.log_path = workdir / "collector.log"
        sink = (
            f'[sink]\nurl = "{sink_url}"\norg = "dong-nai"\nbucket = "commune"\n'
            'max_backoff = "2s"\n'
        )
        digest = hashlib.sha256(API_TOKEN.encode()).hexdigest()
        self.config.write_text(
            f'[mqtt]\nurl = "mqtt://127.0.0.1:{mqtt_port}"\nreceive_window = 200\n'
            f'[store]\npath = "{self.state}"\n{store}\n'
            f'[collector]\nclient_id = "{client_id}"\n{extra}\n'
            f'[api]\nlisten = "127.0.0.1:{self.api_port}"\n{api}\n'
            f'[[api.tokens]]\nname = "ioc"\nrole = "read"\nsha256 = "{digest}"\n'
            + (sink if sink_url else "")
            + sections
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> CollectorProcess:
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "collector.cli", "run", "-c", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        # Its read process starts beside it, on the same cores: on a busy machine the
        # API may take a while.
        wait_tcp(self.api_port, 60)
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def get(self, path: str, token: str | None = API_TOKEN) -> tuple[int, object]:
        """(status, decoded JSON or text) of a GET on the collector's API."""
        import json
        import urllib.error
        import urllib.request

        request = urllib.request.Request(f"http://127.0.0.1:{self.api_port}{path}")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, body, kind = response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            status, body, kind = exc.code, exc.read(), exc.headers
        if "json" in kind.get("content-type", ""):
            return status, json.loads(body)
        return status, body.decode()
