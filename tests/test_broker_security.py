"""The production broker configuration (deploy/mosquitto/) run by a real Mosquitto: TLS, no
anonymous access, accounts made by `commune-collector enroll`, and the ACL under which an agent
writes only its own topics and reads nothing.

The test changes only what the config says it may: /etc/mosquitto/commune/ and
/var/lib/mosquitto/ (to a temporary directory) and the two ports. Run as root (CI), Mosquitto
drops to its own user, `mosquitto`, as Debian's does: the files are laid out as the
operator's guide says (root:mosquitto, keys and the password file 0640, the state directory
the broker's own), so a file the broker cannot read fails here as it would on a server.
"""

from __future__ import annotations

import gc
import grp
import os
import pwd
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from agent import wire
from agent.wire import Envelope, Sample
from collector.cli.main import main
from collector.ingest.ingestor import Ingestor, Message
from collector.rollout.passwordfile import set_password
from collector.state.store import StateStore
from tests.servers import REPO, AgentProcess, free_port, stop_process, wait_tcp
from tests.tls import Pki, make_pki

DEPLOY = REPO / "deploy" / "mosquitto"
COLLECTOR_PASSWORD = "collector-secret-9f2c"


@dataclass
class Broker:
    password_port: int
    cert_port: int
    etc: Path
    pki: Pki
    process: subprocess.Popen[bytes]
    enrolled: Path

    def reload(self) -> None:
        self.process.send_signal(1)  # SIGHUP: Mosquitto rereads its password file and ACL
        time.sleep(0.5)


def production_config(
    etc: Path,
    var: Path,
    password_port: int,
    cert_port: int,
    name: str = "mosquitto.conf",
    crl: Path | None = None,
    deploy: Path = DEPLOY,
) -> str:
    """A shipped broker config (``name`` in ``deploy``, deploy/mosquitto/ by default)
    changed only where it says: its folders and its two ports; ``crl``: the folder of the
    collector's revocation list, for a config that names one."""
    text = (deploy / name).read_text()
    replacements = [
        ("/etc/mosquitto/commune/", f"{etc}/"),
        ("/var/lib/mosquitto/", f"{var}/"),
        ("listener 8883", f"listener {password_port} 127.0.0.1"),
        ("listener 8884", f"listener {cert_port} 127.0.0.1"),
    ]
    if crl is not None:
        replacements.append(("/var/lib/commune-crl/", f"{crl}/"))
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    return text


#: As root, the broker runs as its own user and the files are laid out for it.
AS_BROKER_USER = os.geteuid() == 0
BROKER_GROUP = "mosquitto" if AS_BROKER_USER else ""


def lay_out_for_the_broker(etc: Path, var: Path) -> None:
    """/etc/mosquitto/commune/ as the operator's guide says: root:mosquitto, 0750, keys and
    the password file 0640; the persistence directory the broker's own."""
    if not AS_BROKER_USER:
        return
    gid = grp.getgrnam("mosquitto").gr_gid
    etc.chmod(0o750)
    os.chown(etc, 0, gid)
    for path in etc.iterdir():
        os.chown(path, 0, gid)
        path.chmod(0o640 if path.name.endswith((".key", "passwd")) else 0o644)
    user = pwd.getpwnam("mosquitto")
    os.chown(var, user.pw_uid, user.pw_gid)


def account_password(broker: Broker, account: str) -> str:
    return (broker.enrolled / account.replace("/", "_") / "mqtt-password").read_text().strip()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    # Under pytest's own temporary directory (0700 root) the broker's user could not
    # reach its files: a directory anyone may traverse, as /etc is.
    home = Path(tempfile.mkdtemp(prefix="commune-broker-"))
    home.chmod(0o755)
    etc, var = home / "etc", home / "var"
    var.mkdir(parents=True)
    # The PKI's files are named as the config names them: ca.crt, server.crt, server.key.
    pki = make_pki(etc, client_name="dong-nai/la-nga/pc-02")
    shutil.copy(DEPLOY / "acl", etc / "acl")
    passwd = etc / "passwd"
    enrolled = tmp_path / "enrolled"
    runner = CliRunner()
    for agent in ("pc-01", "pc-03"):
        result = runner.invoke(
            main,
            [
                "enroll",
                "--province",
                "dong-nai",
                "--commune",
                "la-nga",
                "--agent",
                agent,
                "--passwd-file",
                str(passwd),
                "--broker-url",
                "mqtts://localhost:8883",
                "--out",
                str(enrolled),
                "--broker-group",
                BROKER_GROUP,
            ],
        )
        assert result.exit_code == 0, result.output
    set_password(passwd, "commune-collector", COLLECTOR_PASSWORD, BROKER_GROUP)
    lay_out_for_the_broker(etc, var)
    from tests.test_dynsec import crl_folder, empty_crl

    crl = crl_folder(home)
    empty_crl(pki, crl / "client-crl.pem")  # `commune-collector client-crl`, before the start
    password_port, cert_port = free_port(), free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(production_config(etc, var, password_port, cert_port, crl=crl))
    log_path = tmp_path / "mosquitto.log"
    log = log_path.open("wb")
    process = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=log)
    try:
        wait_tcp(password_port, process=process, log=log_path)
        wait_tcp(cert_port, process=process, log=log_path)
        if AS_BROKER_USER:
            status = Path(f"/proc/{process.pid}/status").read_text()
            uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
            assert int(uid) == pwd.getpwnam("mosquitto").pw_uid, "the broker kept root"
        yield Broker(password_port, cert_port, etc, pki, process, enrolled)
    finally:
        while Client.opened:
            Client.opened.pop().close()
        # Clients the broker refused leave sockets paho dropped while retrying: collect
        # them here, where their ResourceWarning is expected.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        stop_process(process)
        log.close()
        shutil.rmtree(home, ignore_errors=True)


class Client:
    """A paho MQTT v5 client over TLS that records what the broker answered.

    ``client_id``: the id it asks for (default: paho's random one); ``persistent``: it asks
    for the session that id has kept (clean start off), as a thief would."""

    opened: list[Client] = []

    def __init__(
        self,
        broker: Broker | Any,
        username: str = "",
        password: str = "",
        cert: tuple[Path, Path] | None = None,
        ca: Path | None = None,
        client_id: str = "",
        persistent: bool = False,
    ) -> None:
        self.connack: ReasonCode | None = None
        self.session_present = False
        self.disconnects: list[ReasonCode] = []
        self.subacks: list[ReasonCode] = []
        self.pubacks: list[ReasonCode] = []
        self.messages: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.answered = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id=client_id
        )
        self.client.on_disconnect = self._on_disconnect
        if username:
            self.client.username_pw_set(username, password)
        certfile, keyfile = cert if cert else (None, None)
        self.client.tls_set(
            ca_certs=str(ca or broker.pki.ca),
            certfile=str(certfile) if certfile else None,
            keyfile=str(keyfile) if keyfile else None,
        )
        Client.opened.append(self)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda _c, _u, _m, codes, _p: self.subacks.extend(codes)
        self.client.on_publish = lambda _c, _u, _m, code, _p: self.pubacks.append(code)
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, m.payload))
        port = broker.cert_port if cert else broker.password_port
        self.error: Exception | None = None
        try:
            self.client.connect("localhost", port, keepalive=10, clean_start=not persistent)
        except (OSError, ssl.SSLError) as exc:
            self.error = exc
            self.answered.set()
            # paho drops the socket of a failed TLS handshake without closing it: collect
            # it here, where its ResourceWarning is expected, not in a later test.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()
            return
        self.client.loop_start()
        self.answered.wait(10)

    def _on_connect(self, _c: object, _u: object, flags: Any, code: ReasonCode, _p: object) -> None:
        self.connack = code
        self.session_present = bool(flags.session_present)
        if code.is_failure:
            self.client.disconnect()  # no reconnect churn: the answer is the point
        else:
            self.connected.set()
        self.answered.set()

    def _on_disconnect(
        self, _c: object, _u: object, _f: object, code: ReasonCode, _p: object
    ) -> None:
        self.disconnects.append(code)
        # Closed before any CONNACK (a certificate the broker refused after TLS 1.3's
        # handshake, as the client saw it, had ended): that is the answer.
        self.answered.set()

    def publish(self, topic: str, payload: bytes = b"{}", retain: bool = False) -> ReasonCode:
        before = len(self.pubacks)
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while len(self.pubacks) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.pubacks[-1]

    def subscribe(self, topic: str) -> ReasonCode:
        before = len(self.subacks)
        self.client.subscribe(topic, qos=1)
        deadline = time.monotonic() + 5
        while len(self.subacks) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.subacks[-1]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        sock = self.client.socket()
        if sock is not None:
            sock.close()


def agent_client(broker: Broker, agent: str) -> Client:
    account = f"dong-nai/la-nga/{agent}"
    return Client(broker, account, account_password(broker, account))


def collector_client(broker: Broker) -> Client:
    client = Client(broker, "commune-collector", COLLECTOR_PASSWORD)
    assert client.connected.is_set(), client.connack
    assert not client.subscribe("commune/#").is_failure
    return client


def test_an_agent_writes_its_own_topics_only(broker: Broker) -> None:
    collector = collector_client(broker)
    pc01 = agent_client(broker, "pc-01")
    assert pc01.connected.is_set(), pc01.connack
    own = pc01.publish("commune/dong-nai/la-nga/pc-01/data", b'{"mine": 1}')
    assert not own.is_failure
    for foreign in (
        "commune/dong-nai/la-nga/pc-03/data",  # another agent of the same commune
        "commune/dong-nai/phu-hoa/pc-01/data",  # same id, another commune
        "commune/dong-nai/la-nga/pc-01/anything",  # its own subtree, not a contract topic
    ):
        refused = pc01.publish(foreign, b'{"spoof": 1}')
        assert refused.is_failure and refused.value == 135, (foreign, refused)  # Not authorized
    time.sleep(0.5)
    assert [topic for topic, _ in collector.messages] == ["commune/dong-nai/la-nga/pc-01/data"]
    pc01.close()
    collector.close()


def test_an_agent_reads_nothing(broker: Broker) -> None:
    """Mosquitto grants the subscription but the ACL lets nothing through: not other
    agents' data, not their retained status, not the agent's own topics."""
    pc03 = agent_client(broker, "pc-03")
    pc03.client.publish("commune/dong-nai/la-nga/pc-03/status", b"{}", qos=1, retain=True)
    pc01 = agent_client(broker, "pc-01")
    for topic in ("commune/#", "commune/dong-nai/la-nga/pc-03/data", "#", "$SYS/#"):
        pc01.subscribe(topic)
    pc03.publish("commune/dong-nai/la-nga/pc-03/data", b"{}")
    pc01.publish("commune/dong-nai/la-nga/pc-01/data", b"{}")
    collector = collector_client(broker)  # the collector does get the retained status
    time.sleep(0.8)
    assert pc01.messages == []
    assert ("commune/dong-nai/la-nga/pc-03/status", b"{}") in collector.messages
    pc01.close()
    pc03.close()
    collector.close()


def test_strangers_cannot_connect(broker: Broker) -> None:
    wrong = Client(broker, "dong-nai/la-nga/pc-01", "not-the-password")
    assert wrong.connack is not None and wrong.connack.is_failure
    nobody = Client(broker)  # anonymous
    assert nobody.connack is not None and nobody.connack.is_failure
    rogue = Client(broker, cert=(broker.pki.rogue_client_cert, broker.pki.rogue_client_key))
    assert not rogue.connected.is_set()  # refused in the TLS handshake
    no_cert = Client(broker, ca=broker.pki.ca, cert=None)
    assert no_cert.connack is not None and no_cert.connack.is_failure
    # An agent that does not trust the broker's certificate does not talk to it either.
    impostor_check = Client(
        broker,
        "dong-nai/la-nga/pc-01",
        account_password(broker, "dong-nai/la-nga/pc-01"),
        ca=broker.pki.rogue_ca,
    )
    assert not impostor_check.connected.is_set() and impostor_check.error is not None


def test_a_client_certificate_is_the_account(broker: Broker) -> None:
    """pc-02 has no password, only a certificate whose Common Name is its account."""
    pc02 = Client(broker, cert=(broker.pki.client_cert, broker.pki.client_key))
    assert pc02.connected.is_set(), pc02.connack
    assert not pc02.publish("commune/dong-nai/la-nga/pc-02/data").is_failure
    assert pc02.publish("commune/dong-nai/la-nga/pc-01/data").value == 135
    pc02.close()


def test_a_spoofed_payload_on_an_allowed_topic_is_still_rejected(
    broker: Broker, tmp_path: Path
) -> None:
    collector = collector_client(broker)
    pc01 = agent_client(broker, "pc-01")
    sample = Sample(ts=time.time(), check="host", name="host", outcome="ok", fields={"up": 1})
    claims_pc03 = Envelope(
        v=1,
        agent="pc-03",
        province="dong-nai",
        commune="la-nga",
        seq=1,
        ts=sample.ts,
        samples=[sample],
    )
    assert not pc01.publish(
        "commune/dong-nai/la-nga/pc-01/data", wire.encode(claims_pc03)
    ).is_failure
    time.sleep(0.5)
    store = StateStore(tmp_path / "state.sqlite")
    ingestor = Ingestor(store, "commune")
    ingestor.process(
        [
            Message(topic, payload, time.time(), lambda: None)
            for topic, payload in collector.messages
        ]
    )
    assert ingestor.stats.rejected == {"identity_mismatch": 1}
    assert store.agents() == []
    pc01.close()
    collector.close()


def test_an_enrolled_agent_runs_with_its_written_config_until_revoked(
    broker: Broker, tmp_path: Path
) -> None:
    written = broker.enrolled / "dong-nai_la-nga_pc-01"
    config = written / "agent.toml"
    assert oct((written / "mqtt-password").stat().st_mode & 0o777) == "0o600"
    passwd = (broker.etc / "passwd").stat()
    assert oct(passwd.st_mode & 0o777) == "0o640"
    if AS_BROKER_USER:  # the broker runs as mosquitto: it reads the file through its group
        assert grp.getgrgid(passwd.st_gid).gr_name == "mosquitto"
    text = config.read_text()
    # Put the files where the written config expects them (here: temporary paths).
    text = text.replace("/etc/commune-agent/mqtt-password", str(written / "mqtt-password"))
    text = text.replace("/etc/commune-agent/ca.crt", str(broker.pki.ca))
    text = text.replace("mqtts://localhost:8883", f"mqtts://localhost:{broker.password_port}")
    text = text.replace("[agent]\n", f'[agent]\ninterval = "1s"\nstate_dir = "{tmp_path}/state"\n')
    config.write_text(text)
    collector = collector_client(broker)
    agent = AgentProcess(config).start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
            t.endswith("/pc-01/data") for t, _ in collector.messages
        ):
            time.sleep(0.2)
        assert any(t == "commune/dong-nai/la-nga/pc-01/status" for t, _ in collector.messages)
        assert any(t == "commune/dong-nai/la-nga/pc-01/data" for t, _ in collector.messages)
    finally:
        agent.stop()
    revoke = ["revoke", "--province", "dong-nai", "--commune", "la-nga", "--agent", "pc-01"]
    revoke += ["--passwd-file", str(broker.etc / "passwd"), "--broker-group", BROKER_GROUP]
    result = CliRunner().invoke(main, revoke)
    assert result.exit_code == 0 and "revoked dong-nai/la-nga/pc-01" in result.output
    broker.reload()
    again = agent_client(broker, "pc-01")
    assert again.connack is not None and again.connack.is_failure
    result = CliRunner().invoke(main, revoke)  # twice: it is gone
    assert result.exit_code == 1 and "is not enrolled" in result.output
    collector.close()


def test_enroll_refuses_what_it_should(tmp_path: Path) -> None:
    runner = CliRunner()
    base = [
        "enroll",
        "--province",
        "dong-nai",
        "--commune",
        "la-nga",
        "--passwd-file",
        str(tmp_path / "passwd"),
        "--out",
        str(tmp_path / "out"),
    ]
    result = runner.invoke(main, [*base, "--agent", "PC 01", "--broker-url", "mqtts://b:8883"])
    assert result.exit_code == 1 and "agent 'PC 01'" in result.output
    result = runner.invoke(main, [*base, "--agent", "pc-01", "--broker-url", "mqtt://b:1883"])
    assert result.exit_code == 1 and "over TLS" in result.output
    assert (
        runner.invoke(main, [*base, "--agent", "pc-01", "--broker-url", "mqtts://b:8883"]).exit_code
        == 0
    )
    result = runner.invoke(main, [*base, "--agent", "pc-01", "--broker-url", "mqtts://b:8883"])
    assert result.exit_code == 1 and "already enrolled" in result.output
    replaced = runner.invoke(
        main, [*base, "--agent", "pc-01", "--broker-url", "mqtts://b:8883", "--replace"]
    )
    assert replaced.exit_code == 0


def test_enroll_writes_no_value_into_the_config_unchecked_and_runs_no_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_commands(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a command was run: {args}")

    # The password must not travel on a command line (mosquitto_passwd -b shows it in /proc).
    monkeypatch.setattr(subprocess, "run", no_commands)
    monkeypatch.setattr(subprocess, "Popen", no_commands)
    runner = CliRunner()
    base = ["enroll", "--province", "dong-nai", "--commune", "la-nga", "--agent", "pc-01"]
    base += ["--passwd-file", str(tmp_path / "passwd"), "--out", str(tmp_path / "out")]
    base += ["--broker-group", ""]
    injected = 'mqtts://b:8883"\n[agent]\nprovince = "ha-noi'
    result = runner.invoke(main, [*base, "--broker-url", injected])
    assert result.exit_code == 1 and "expected mqtts://host[:port]" in result.output
    result = runner.invoke(
        main, [*base, "--broker-url", "mqtts://b:8883", "--tslcd-target", '10.0.0.1"\nx = "1']
    )
    assert result.exit_code == 1 and "tslcd target" in result.output
    result = runner.invoke(
        main, [*base, "--broker-url", "mqtts://b:8883", "--tslcd-target", "portal.dong-nai.vn"]
    )
    assert result.exit_code == 0, result.output
    import tomllib

    written = tomllib.loads((tmp_path / "out" / "dong-nai_la-nga_pc-01" / "agent.toml").read_text())
    assert written["agent"] == {"province": "dong-nai", "commune": "la-nga", "id": "pc-01"}
    assert written["checks"]["link"][0]["target"] == "portal.dong-nai.vn"
    line = (tmp_path / "passwd").read_text()
    assert line.startswith("dong-nai/la-nga/pc-01:$7$101$")  # Mosquitto's PBKDF2-SHA512 form


def test_no_agent_takes_the_collectors_session_by_its_client_id(broker: Broker) -> None:
    """The static config (password file and ACL) names every session after its account
    too: pc-01 asking for the collector's client id, by password or by certificate, gets
    a session of its own and none of the collector's messages; the collector is not
    disconnected."""
    collector = Client(broker, "commune-collector", COLLECTOR_PASSWORD,
                       client_id="commune-collector", persistent=True)  # fmt: skip
    assert collector.connected.is_set(), collector.connack
    assert not collector.subscribe("commune/#").is_failure
    by_password = agent_client_as(broker, "pc-01", "commune-collector")
    by_certificate = Client(broker, cert=(broker.pki.client_cert, broker.pki.client_key),
                            client_id="commune-collector", persistent=True)  # fmt: skip
    for thief in (by_password, by_certificate):
        assert thief.connected.is_set(), thief.connack
        assert thief.session_present is False
        thief.subscribe("commune/#")
        pc03 = agent_client(broker, "pc-03")
        assert not pc03.publish("commune/dong-nai/la-nga/pc-03/data", b'{"n": 1}').is_failure
        deadline = time.monotonic() + 5
        while not collector.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ("commune/dong-nai/la-nga/pc-03/data", b'{"n": 1}') in collector.messages
        assert thief.messages == [] and collector.disconnects == []
        collector.messages.clear()
        thief.close()
        pc03.close()
    collector.close()


def agent_client_as(broker: Broker, agent: str, client_id: str) -> Client:
    account = f"dong-nai/la-nga/{agent}"
    return Client(broker, account, account_password(broker, account), client_id=client_id,
                  persistent=True)  # fmt: skip
